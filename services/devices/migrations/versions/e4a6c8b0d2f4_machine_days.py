"""machine_days: a machine's history as one row per machine and day (hourly metrics and
inventory changes, packed) instead of a row per machine-hour and a row per change; the
current day's ended hours wait in heartbeat_state.day_metrics until the day ends

A row costs ~60 bytes and an index entry before it holds anything: at 24 metric rows and ~6
change rows a machine-day, that overhead was most of the devices schema's growth (7.5 KB per
machine-day measured by bench/growth.py). The existing rows are carried over, packed as
services/devices/history.py writes them; each machine's change records are numbered in the
order they were written (its inventory's `version` is the last number).

Revision ID: e4a6c8b0d2f4
Revises: d8f2b4a6c0e3
Create Date: 2026-12-04 17:00:00
"""
from collections import defaultdict

import orjson
import sqlalchemy as sa
from alembic import op

from common.db import UTCDateTime
from services.devices.history import (ChangeRecord, HourMetrics, day_of, hour_starts, pack_changes,
                                      pack_metrics, unpack_changes)

revision = 'e4a6c8b0d2f4'
down_revision = 'd8f2b4a6c0e3'
branch_labels = None
depends_on = None

MACHINES_PER_STEP = 200  # the rows of this many machines are packed and written at a time


def upgrade() -> None:
    op.create_table(
        'machine_days',
        sa.Column('machine_id', sa.Uuid(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('metrics', sa.LargeBinary(), nullable=True),
        sa.Column('changes', sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(['machine_id'], ['machines.id'], name=op.f('fk_machine_days_machine_id_machines')),
        sa.PrimaryKeyConstraint('machine_id', 'day', name=op.f('pk_machine_days')))
    with op.batch_alter_table('inventories') as batch:
        batch.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='1'))
    with op.batch_alter_table('heartbeat_state') as batch:
        batch.add_column(sa.Column('day_metrics', sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        # the values are compressed already: TOAST need not try again
        op.execute("ALTER TABLE machine_days ALTER COLUMN metrics SET STORAGE EXTERNAL, "
                   "ALTER COLUMN changes SET STORAGE EXTERNAL")
    _carry_over(bind)
    op.drop_table('inventory_changes')
    op.drop_table('metrics_hourly')


def _carry_over(bind) -> None:
    """A few hundred machines at a time: a fleet's 90 days of hourly rows never sit in
    memory at once."""
    machine_ids = bind.execute(sa.text("SELECT id FROM machines ORDER BY id").columns(id=sa.Uuid())).scalars().all()
    for start in range(0, len(machine_ids), MACHINES_PER_STEP):
        _carry_over_machines(bind, machine_ids[start:start + MACHINES_PER_STEP])


def _carry_over_machines(bind, machine_ids) -> None:
    days = defaultdict(lambda: ({}, []))  # (machine, day) -> (hours, change records)
    versions = defaultdict(int)
    machines = sa.bindparam("machines", machine_ids, expanding=True, type_=sa.Uuid())
    for row in bind.execute(sa.text(
            "SELECT machine_id, hour, samples, cpu_avg, cpu_max, memory_avg, memory_max, disk_max "
            "FROM metrics_hourly WHERE machine_id IN :machines").bindparams(machines)
            .columns(machine_id=sa.Uuid(), hour=UTCDateTime())):
        days[(row.machine_id, day_of(row.hour))][0][row.hour.hour] = HourMetrics(
            row.samples, row.cpu_avg, row.cpu_max, row.memory_avg, row.memory_max, row.disk_max)
    for row in bind.execute(sa.text(
            "SELECT machine_id, created_at, changes FROM inventory_changes WHERE machine_id IN :machines "
            "ORDER BY machine_id, id").bindparams(machines)
            .columns(machine_id=sa.Uuid(), created_at=UTCDateTime())):
        versions[row.machine_id] += 1
        changes = orjson.loads(row.changes)
        moment = row.created_at.replace(microsecond=0)
        days[(row.machine_id, day_of(moment))][1].append(
            ChangeRecord(versions[row.machine_id], moment, {} if changes.get("initial") else changes))
    rows = [{"machine_id": machine_id, "day": day, "metrics": pack_metrics(hours),
             "changes": pack_changes(records, day)} for (machine_id, day), (hours, records) in days.items()]
    if rows:
        bind.execute(sa.table('machine_days', sa.column('machine_id', sa.Uuid()), sa.column('day', sa.Date()),
                              sa.column('metrics', sa.LargeBinary()),
                              sa.column('changes', sa.LargeBinary())).insert(), rows)
    for machine_id, version in versions.items():
        bind.execute(sa.text("UPDATE inventories SET version = :version WHERE machine_id = :machine_id")
                     .bindparams(sa.bindparam("machine_id", type_=sa.Uuid())),
                     {"version": version, "machine_id": machine_id})


def downgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        'metrics_hourly',
        sa.Column('machine_id', sa.Uuid(), nullable=False),
        sa.Column('hour', UTCDateTime(timezone=True), nullable=False),
        sa.Column('samples', sa.Integer(), nullable=False),
        sa.Column('cpu_avg', sa.Float(), nullable=True),
        sa.Column('cpu_max', sa.Float(), nullable=True),
        sa.Column('memory_avg', sa.Float(), nullable=True),
        sa.Column('memory_max', sa.Float(), nullable=True),
        sa.Column('disk_max', sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(['machine_id'], ['machines.id'], name=op.f('fk_metrics_hourly_machine_id_machines')),
        sa.PrimaryKeyConstraint('machine_id', 'hour', name=op.f('pk_metrics_hourly')))
    op.create_table(
        'inventory_changes',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('machine_id', sa.Uuid(), nullable=False),
        sa.Column('from_hash', sa.String(length=64), nullable=True),
        sa.Column('to_hash', sa.String(length=64), nullable=False),
        sa.Column('changes', sa.Text(), nullable=False),
        sa.Column('size_bytes', sa.Integer(), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['machine_id'], ['machines.id'], name=op.f('fk_inventory_changes_machine_id_machines')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_inventory_changes')))
    op.create_index(op.f('ix_inventory_changes_created_at'), 'inventory_changes', ['created_at'], unique=False)
    op.create_index('ix_inventory_changes_machine', 'inventory_changes', ['machine_id', 'id'], unique=False)
    hourly, changes = [], []
    for row in bind.execute(sa.text(
            "SELECT d.machine_id, d.day, d.metrics, d.changes, i.hash FROM machine_days d "
            "LEFT JOIN inventories i ON i.machine_id = d.machine_id ORDER BY d.machine_id, d.day")
            .columns(machine_id=sa.Uuid(), day=sa.Date())):
        for hour, metrics in hour_starts(row.day, row.metrics).items():
            hourly.append({"machine_id": row.machine_id, "hour": hour, **metrics.__dict__})
        for record in unpack_changes(row.changes, row.day):
            # the versions' own hashes were not kept: only the current one is known
            record_changes = record.changes or {"initial": True}
            text = orjson.dumps(record_changes).decode()
            changes.append({"machine_id": row.machine_id, "to_hash": row.hash or "", "changes": text,
                            "size_bytes": len(text), "created_at": record.changed_at})
    for row in bind.execute(sa.text(  # the current day's ended hours, kept in the state row
            "SELECT machine_id, agg_hour, day_metrics FROM heartbeat_state WHERE day_metrics IS NOT NULL")
            .columns(machine_id=sa.Uuid(), agg_hour=UTCDateTime())):
        for hour, metrics in hour_starts(day_of(row.agg_hour), row.day_metrics).items():
            hourly.append({"machine_id": row.machine_id, "hour": hour, **metrics.__dict__})
    if hourly:
        bind.execute(sa.table('metrics_hourly', *(sa.column(name, kind) for name, kind in (
            ('machine_id', sa.Uuid()), ('hour', UTCDateTime()), ('samples', sa.Integer()),
            ('cpu_avg', sa.Float()), ('cpu_max', sa.Float()), ('memory_avg', sa.Float()),
            ('memory_max', sa.Float()), ('disk_max', sa.Float())))).insert(), hourly)
    if changes:
        bind.execute(sa.table('inventory_changes', *(sa.column(name, kind) for name, kind in (
            ('machine_id', sa.Uuid()), ('to_hash', sa.String()), ('changes', sa.Text()),
            ('size_bytes', sa.Integer()), ('created_at', UTCDateTime())))).insert(), changes)
    with op.batch_alter_table('inventories') as batch:
        batch.drop_column('version')
    with op.batch_alter_table('heartbeat_state') as batch:
        batch.drop_column('day_metrics')
    op.drop_table('machine_days')
