"""saved_filters: each person's default ticket-list filter (the console's "padrão")

Revision ID: c5e7a9b1d3f4
Revises: 7872696ea505
Create Date: 2026-12-01 02:00:00
"""
from alembic import op
import sqlalchemy as sa
import common.db


revision = 'c5e7a9b1d3f4'
down_revision = '7872696ea505'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('saved_filters',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('filters', sa.Text(), nullable=False),
    sa.Column('updated_at', common.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_saved_filters'))
    )


def downgrade() -> None:
    op.drop_table('saved_filters')
