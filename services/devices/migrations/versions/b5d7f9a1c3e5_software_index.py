"""software_versions and machine_software: the fleet's software index (which machines have
which package at which version), filled from the current inventories

Revision ID: b5d7f9a1c3e5
Revises: a3c5e7f9b1d3
Create Date: 2026-12-04 18:30:00
"""
import orjson
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

from services.devices.software import packages, version_key
from services.devices.storage import inflate_text

revision = 'b5d7f9a1c3e5'
down_revision = 'a3c5e7f9b1d3'
branch_labels = None
depends_on = None

ROWS_PER_STEP = 200  # inventories read at a time


def upgrade() -> None:
    op.create_table(
        'software_versions',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('version', sa.String(length=200), nullable=False),
        sa.Column('version_key', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_software_versions')),
        sa.UniqueConstraint('name', 'version', name='uq_software_versions_name_version'))
    op.create_table(
        'machine_software',
        sa.Column('machine_id', sa.Uuid(), nullable=False),
        sa.Column('version_ids', ARRAY(sa.Integer()).with_variant(sa.JSON(), 'sqlite'), nullable=False),
        sa.ForeignKeyConstraint(['machine_id'], ['machines.id'], name=op.f('fk_machine_software_machine_id_machines')),
        sa.PrimaryKeyConstraint('machine_id', name=op.f('pk_machine_software')))
    op.create_index('ix_machine_software_version_ids', 'machine_software', ['version_ids'],
                    postgresql_using='gin')
    _fill(op.get_bind())


def _fill(bind) -> None:
    versions = sa.table('software_versions', sa.column('id', sa.Integer()), sa.column('name', sa.String()),
                        sa.column('version', sa.String()), sa.column('version_key', sa.LargeBinary()))
    held = sa.table('machine_software', sa.column('machine_id', sa.Uuid()),
                    sa.column('version_ids', ARRAY(sa.Integer()).with_variant(sa.JSON(), 'sqlite')))
    ids: dict = {}
    after = None
    while True:
        query = ("SELECT machine_id, document FROM inventories "
                 + ("WHERE machine_id > :after " if after is not None else "") + "ORDER BY machine_id LIMIT :limit")
        statement = sa.text(query).columns(machine_id=sa.Uuid())
        if after is not None:
            statement = statement.bindparams(sa.bindparam("after", type_=sa.Uuid()))
        rows = bind.execute(statement, {"after": after, "limit": ROWS_PER_STEP}).all()
        if not rows:
            return
        found = {row.machine_id: packages(orjson.loads(inflate_text(row.document))) for row in rows}
        new = sorted(set().union(*found.values()) - ids.keys())
        for start in range(0, len(new), 1000):
            chunk = new[start:start + 1000]
            bind.execute(versions.insert(), [{"name": n, "version": v, "version_key": version_key(v)} for n, v in chunk])
        if new:
            for row in bind.execute(sa.select(versions.c.id, versions.c.name, versions.c.version)):
                ids[(row.name, row.version)] = row.id
        bind.execute(held.insert(), [{"machine_id": machine_id, "version_ids": sorted(ids[pair] for pair in pairs)}
                                     for machine_id, pairs in found.items()])
        after = rows[-1].machine_id


def downgrade() -> None:
    op.drop_index('ix_machine_software_version_ids', table_name='machine_software', postgresql_using='gin')
    op.drop_table('machine_software')
    op.drop_table('software_versions')
