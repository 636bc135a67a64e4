"""unassigned tickets in creation order: a partial index for the dashboard's "recent" (the
unassigned, oldest first) and the list's "sem responsável" filter, which sorted every
unassigned ticket of the tenant on each request

Revision ID: a4c8e2f6b0d9
Revises: f1b7d3e9a5c2
Create Date: 2026-12-05 09:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'a4c8e2f6b0d9'
down_revision = 'f1b7d3e9a5c2'
branch_labels = None
depends_on = None

UNASSIGNED = sa.text("assignee_id IS NULL")


def upgrade() -> None:
    op.create_index("ix_tickets_tenant_unassigned_created", "tickets", ["tenant_id", "created_at", "id"],
                    unique=False, postgresql_where=UNASSIGNED, sqlite_where=UNASSIGNED)


def downgrade() -> None:
    op.drop_index("ix_tickets_tenant_unassigned_created", table_name="tickets")
