"""heartbeat_state updates stay HOT: no index on a column every heartbeat changes, room on
each page for the new row version

A heartbeat rewrites its machine's state row; when no indexed column changes and the page
has room, PostgreSQL makes it a heap-only (HOT) update that is pruned on the page itself,
without VACUUM (autovacuum may be off) and without index growth. last_seen_at changed on
every heartbeat and was indexed, so every update was non-HOT. The offline sweep and the
status filters read it from the small state table instead.

Revision ID: b2d4f6a8c0e2
Revises: a1c3e5f7b9d1
Create Date: 2026-12-01 00:20:00
"""
from alembic import op


revision = 'b2d4f6a8c0e2'
down_revision = 'a1c3e5f7b9d1'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_heartbeat_state_last_seen', table_name='heartbeat_state')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE heartbeat_state SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE heartbeat_state RESET (fillfactor)")
    op.create_index('ix_heartbeat_state_last_seen', 'heartbeat_state', ['last_seen_at'], unique=False)
