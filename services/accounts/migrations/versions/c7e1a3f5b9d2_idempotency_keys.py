"""idempotency_keys: the recorded answers to requests sent with an Idempotency-Key

Revision ID: c7e1a3f5b9d2
Revises: f4a8c2e6b0d9
Create Date: 2026-12-03 21:30:00
"""
from alembic import op
import sqlalchemy as sa
import common.db


revision = 'c7e1a3f5b9d2'
down_revision = 'f4a8c2e6b0d9'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('idempotency_keys',
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('response', sa.Text(), nullable=True),
    sa.Column('created_at', common.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key_hash', name=op.f('pk_idempotency_keys'))
    )
    op.create_index(op.f('ix_idempotency_keys_created_at'), 'idempotency_keys', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_idempotency_keys_created_at'), table_name='idempotency_keys')
    op.drop_table('idempotency_keys')
