"""Devices migrations that move data, on PostgreSQL and on SQLite, there and back: the one
to `machine_days` carries a fleet's existing history over (every machine-hour of metrics and
every inventory change record, numbered in the order they were written); the next stores
the current inventories deflated."""
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from alembic import command
from sqlalchemy import text

from common.config import Settings
from common.db import create_service_engine
from common.migrate import alembic_config, ensure_schema
from services.devices.history import HourMetrics, day_start, unpack_changes, unpack_metrics
from services.devices.storage import deflate_text, inflate_text

BEFORE, MIGRATION, DEFLATED = "d8f2b4a6c0e3", "e4a6c8b0d2f4", "f6b8d0e2a4c6"
NOON = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)


def migrate(settings: Settings, revision: str, downgrade: bool = False) -> None:
    engine = create_service_engine(settings, "devices")
    try:
        with engine.begin() as connection:
            (command.downgrade if downgrade else command.upgrade)(alembic_config("devices", connection), revision)
    finally:
        engine.dispose()


def rows(settings: Settings, statement: str, **params) -> list:
    engine = create_service_engine(settings, "devices")
    try:
        with engine.begin() as connection:
            result = connection.execute(text(statement), params)
            return result.all() if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path):
    if request.param == "sqlite":
        yield Settings(var_dir=tmp_path)
        return
    postgres = request.getfixturevalue("postgres")
    name, url = postgres.create_database()
    yield Settings(database_url=url)
    postgres.drop_database(name)


def add_machine(settings: Settings) -> str:
    machine = uuid.uuid4()
    key = machine.hex if settings.is_sqlite else str(machine)  # how each stores a Uuid column
    rows(settings, "INSERT INTO machines (id, tenant_id, company_id, hostname, os_name, os_version, os_build, "
                   "os_arch, persona, machine_user_id, created_at, updated_at) VALUES (:id, :t, :c, 'ws-1', "
                   "'Ubuntu', '', '', '', 'collaborator', :u, :now, :now)",
         id=key, t=key, c=key, u=key, now=NOON)
    return key


def test_metrics_and_changes_are_carried_over_and_back(settings):
    ensure_schema(settings, "devices")
    migrate(settings, BEFORE)
    key = add_machine(settings)
    rows(settings, "INSERT INTO inventories (machine_id, hash, document, updated_at) VALUES (:m, :h, '{}', :now)",
         m=key, h="c" * 64, now=NOON)
    hours = [NOON - timedelta(hours=13), NOON - timedelta(hours=1), NOON]  # two days, two hours on one
    for index, hour in enumerate(hours):
        rows(settings, "INSERT INTO metrics_hourly (machine_id, hour, samples, cpu_avg, cpu_max, memory_avg, "
                       "memory_max, disk_max) VALUES (:m, :hour, :samples, 10.5, 20.0, NULL, NULL, 71.2)",
             m=key, hour=hour, samples=index + 1)
    upgrade_record = {"added": {}, "removed": {}, "changed": {"software/packages[name=curl]/version": ["7", "8"]}}
    for moment, changes in ((NOON - timedelta(days=1), {"initial": True}), (NOON, upgrade_record),
                            (NOON + timedelta(minutes=5), upgrade_record)):
        record = orjson.dumps(changes).decode()
        rows(settings, "INSERT INTO inventory_changes (machine_id, from_hash, to_hash, changes, size_bytes, "
                       "created_at) VALUES (:m, NULL, :h, :c, :size, :at)",
             m=key, h="c" * 64, c=record, size=len(record), at=moment)

    migrate(settings, MIGRATION)
    days = {row.day if not isinstance(row.day, str) else datetime.fromisoformat(row.day).date(): row
            for row in rows(settings, "SELECT day, metrics, changes FROM machine_days")}
    metrics = {day_start(day) + timedelta(hours=hour): value
               for day, row in days.items() for hour, value in unpack_metrics(row.metrics).items()}
    assert metrics == {hour: HourMetrics(index + 1, 10.5, 20.0, None, None, 71.2)
                       for index, hour in enumerate(hours)}
    records = [record for day in sorted(days) for record in unpack_changes(days[day].changes, day)]
    assert [(record.version, record.changed_at, record.changes) for record in records] == [
        (1, NOON - timedelta(days=1), {}), (2, NOON, upgrade_record), (3, NOON + timedelta(minutes=5), upgrade_record)]
    assert [row.version for row in rows(settings, "SELECT version FROM inventories")] == [3]

    migrate(settings, BEFORE, downgrade=True)
    assert len(rows(settings, "SELECT hour FROM metrics_hourly")) == 3
    assert [orjson.loads(row.changes) for row in rows(
        settings, "SELECT changes FROM inventory_changes ORDER BY created_at")] == \
        [{"initial": True}, upgrade_record, upgrade_record]


def test_current_inventories_are_deflated_and_back(settings):
    ensure_schema(settings, "devices")
    migrate(settings, MIGRATION)
    documents = {}
    for size in (0, 3, 600):
        document = orjson.dumps({"software": {"packages": [{"name": f"p{n}", "version": "1.0"} for n in range(size)]},
                                 "hostname": "ws-ç"}).decode()
        key = add_machine(settings)
        rows(settings, "INSERT INTO inventories (machine_id, hash, document, updated_at, version) "
                       "VALUES (:m, :h, :d, :now, 1)", m=key, h="c" * 64, d=document, now=NOON)
        documents[document] = key

    migrate(settings, DEFLATED)
    stored = [bytes(row.document) for row in rows(settings, "SELECT document FROM inventories")]
    assert len(stored) == 3 and all(value[:1] == b"\x01" for value in stored)
    assert sorted(inflate_text(value) for value in stored) == sorted(documents)
    big = max(stored, key=len)
    assert len(big) < len(max(documents, key=len)) / 4, len(big)  # 600 packages: mostly repetition

    migrate(settings, MIGRATION, downgrade=True)
    assert sorted(row.document for row in rows(settings, "SELECT document FROM inventories")) == sorted(documents)


def test_the_software_index_is_filled_from_the_current_inventories(settings):
    ensure_schema(settings, "devices")
    migrate(settings, "a3c5e7f9b1d3")  # the current inventories, deflated, before the index
    key = add_machine(settings)
    document = orjson.dumps({"software": {"packages": [{"name": "curl", "version": "8.5.0"},
                                                       {"name": "vim", "version": "2:9.1"}]}}).decode()
    rows(settings, "INSERT INTO inventories (machine_id, hash, document, updated_at, version) "
                   "VALUES (:m, :h, :d, :now, 1)", m=key, h="c" * 64, d=deflate_text(document), now=NOON)
    migrate(settings, "b5d7f9a1c3e5")
    names = {row.id: (row.name, row.version) for row in rows(settings, "SELECT id, name, version FROM software_versions")}
    (held,) = rows(settings, "SELECT version_ids FROM machine_software")
    ids = held.version_ids if isinstance(held.version_ids, list) else orjson.loads(held.version_ids)
    assert sorted(names[i] for i in ids) == [("curl", "8.5.0"), ("vim", "2:9.1")]
    migrate(settings, "a3c5e7f9b1d3", downgrade=True)
