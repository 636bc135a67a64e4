"""sign_in_throttle: one row per throttled key (an account or a client address, as a
SHA-256), rewritten in place, never one row per attempt

Revision ID: f4a8c2e6b0d9
Revises: 5e68a76b2984
Create Date: 2026-12-03 21:30:00
"""
from alembic import op
import sqlalchemy as sa
import common.db


revision = 'f4a8c2e6b0d9'
down_revision = '5e68a76b2984'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sign_in_throttle',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_started_at', common.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('locked_until', common.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', common.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', common.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_sign_in_throttle'))
    )


def downgrade() -> None:
    op.drop_table('sign_in_throttle')
