"""report_exports: the CSV's delimiter, and the maker's claim (made on request, never twice)

Revision ID: d8f2a4c6e1b3
Revises: c5e7a9b1d3f4
Create Date: 2026-12-01 04:00:00
"""
from alembic import op
import sqlalchemy as sa
import common.db


revision = 'd8f2a4c6e1b3'
down_revision = 'c5e7a9b1d3f4'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('report_exports') as batch:
        batch.add_column(sa.Column('delimiter', sa.String(length=1), server_default=',', nullable=False))
        batch.add_column(sa.Column('claimed_by', sa.Uuid(), nullable=True))
        batch.add_column(sa.Column('claimed_at', common.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('report_exports') as batch:
        batch.drop_column('claimed_at')
        batch.drop_column('claimed_by')
        batch.drop_column('delimiter')
