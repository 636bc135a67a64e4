"""inventories.document stored deflated (bytea, zlib) instead of as text

A fleet's current inventories are most of the devices schema (16.6 of 20.7 MB for 1,000
machines of ~92 KB each, by PostgreSQL's own pglz TOAST compression); zlib keeps one in
~10 KB. PostgreSQL is told not to try compressing the value again (STORAGE EXTERNAL).

Revision ID: f6b8d0e2a4c6
Revises: e4a6c8b0d2f4
Create Date: 2026-12-04 17:30:00
"""
import sqlalchemy as sa
from alembic import op

from services.devices.storage import deflate_text, inflate_text

revision = 'f6b8d0e2a4c6'
down_revision = 'e4a6c8b0d2f4'
branch_labels = None
depends_on = None

ROWS_PER_STEP = 200  # inventories rewritten at a time: a fleet's documents never sit in memory at once


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        op.execute("ALTER TABLE inventories ALTER COLUMN document TYPE bytea USING convert_to(document, 'UTF8')")
        op.execute("ALTER TABLE inventories ALTER COLUMN document SET STORAGE EXTERNAL")
    else:
        with op.batch_alter_table('inventories') as batch:
            batch.alter_column('document', type_=sa.LargeBinary(), existing_type=sa.Text(), existing_nullable=False)
    _rewrite(bind, lambda stored: deflate_text(inflate_text(stored)))


def downgrade() -> None:
    bind = op.get_bind()
    _rewrite(bind, lambda stored: inflate_text(stored).encode())
    if bind.dialect.name == 'postgresql':
        op.execute("ALTER TABLE inventories ALTER COLUMN document SET STORAGE EXTENDED")
        op.execute("ALTER TABLE inventories ALTER COLUMN document TYPE text USING convert_from(document, 'UTF8')")
    else:
        _rewrite(bind, lambda stored: inflate_text(stored))  # SQLite: text values again
        with op.batch_alter_table('inventories') as batch:
            batch.alter_column('document', type_=sa.Text(), existing_type=sa.LargeBinary(), existing_nullable=False)


def _rewrite(bind, convert) -> None:
    """Every document through `convert`, a step of machines at a time."""
    select = sa.text("SELECT machine_id, document FROM inventories WHERE machine_id > :after "
                     "ORDER BY machine_id LIMIT :limit").bindparams(sa.bindparam("after", type_=sa.Uuid()))
    select = select.columns(machine_id=sa.Uuid())
    update = sa.text("UPDATE inventories SET document = :document WHERE machine_id = :machine_id").bindparams(
        sa.bindparam("machine_id", type_=sa.Uuid()))
    after = None
    while True:
        query = select if after is not None else sa.text(
            "SELECT machine_id, document FROM inventories ORDER BY machine_id LIMIT :limit").columns(
            machine_id=sa.Uuid())
        rows = bind.execute(query, {"after": after, "limit": ROWS_PER_STEP} if after is not None
                            else {"limit": ROWS_PER_STEP}).all()
        if not rows:
            return
        bind.execute(update, [{"machine_id": row.machine_id, "document": convert(row.document)} for row in rows])
        after = rows[-1].machine_id
