"""users.version and companies.version: every change other services keep a snapshot of
counts one more, and their events carry it (issue 26: events applied out of order)

Revision ID: b3d5f7a9c1e3
Revises: c7e1a3f5b9d2
Create Date: 2026-12-07 19:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'b3d5f7a9c1e3'
down_revision = 'c7e1a3f5b9d2'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a constant default: PostgreSQL adds the column without rewriting the table
    op.add_column('users', sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False))
    op.add_column('companies', sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('companies') as batch:
        batch.drop_column('version')
    with op.batch_alter_table('users') as batch:
        batch.drop_column('version')
