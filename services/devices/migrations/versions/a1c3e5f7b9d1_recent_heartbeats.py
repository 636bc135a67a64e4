"""heartbeat_state.recent_sent: the last applied heartbeats, to recognise redeliveries

Revision ID: a1c3e5f7b9d1
Revises: 78cd46438952
Create Date: 2026-12-01 00:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'a1c3e5f7b9d1'
down_revision = '78cd46438952'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('heartbeat_state') as batch:
        batch.add_column(sa.Column('recent_sent', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('heartbeat_state') as batch:
        batch.drop_column('recent_sent')
