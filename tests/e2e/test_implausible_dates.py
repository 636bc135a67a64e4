"""Dates from devices are bounded below as well as above (issue 26, item 6): a heartbeat
stamped before its machine was registered, or older than the metrics' retention, is refused
with the reason (HTTP 422, dead-lettered on the bus); and no date already stored, however
extreme, makes a page fail. The health snapshot's retention is the caller's tenant only."""
import uuid
from datetime import date, datetime, timedelta, timezone

import orjson
import pytest
from kombu import Connection, Exchange, Producer
from sqlalchemy import create_engine, text

from chamados_protocol.heartbeat import HEARTBEAT_EXCHANGE, HEARTBEAT_ROUTING_KEY
from services.devices.history import ChangeRecord, HourMetrics, day_start, pack_changes, pack_metrics
from services.gateway.console.web import SESSION_COOKIE
from tests.e2e.test_devices import beat, beat_and_wait, enrol, error
from tests.harness import dead_letters

YEAR_ONE = "0001-01-01T00:00:00+00:00"


def heartbeat(sent_at: str, **extra) -> dict:
    return {"sent_at": sent_at, "inventory_hash": "0" * 64,
            "metrics": {"cpu_percent": 10.0, "memory_percent": 20.0, "disks": []}, **extra}


@pytest.mark.parametrize("sent_at, reason", [
    (YEAR_ONE, "days old"),
    ((datetime.now(timezone.utc) - timedelta(days=91)).isoformat(), "days old"),
    # the machine was registered just now: an hour earlier is a clock set wrong
    ((datetime.now(timezone.utc) - timedelta(hours=1)).isoformat(), "before the machine was registered"),
])
def test_an_implausible_sent_at_is_refused_over_http_with_the_reason(tenant, anonymous, sent_at, reason):
    _, enrolled = enrol(anonymous, tenant.company())
    response = anonymous.post("/api/machines/heartbeat", json=heartbeat(sent_at),
                              headers={"Authorization": f"Bearer {enrolled['token']}"})
    body = error(response, 422)
    assert reason in str(body["details"]["fields"]["sent_at"]), body


@pytest.mark.parametrize("sent_at, reason", [
    (YEAR_ONE, "days old"),
    ((datetime.now(timezone.utc) - timedelta(hours=1)).isoformat(), "before the machine was registered"),
])
def test_an_implausible_sent_at_is_dead_lettered_on_the_bus_with_the_reason(
        system, tenant, anonymous, sent_at, reason):
    _, enrolled = enrol(anonymous, tenant.company())
    marker = uuid.uuid4().hex * 2  # the inventory hash: how our dead letter is told apart
    with Connection(system.amqp_uri) as connection:
        Producer(connection).publish(
            orjson.dumps(heartbeat(sent_at, inventory_hash=marker)),
            exchange=Exchange(HEARTBEAT_EXCHANGE, type="direct", durable=True),
            routing_key=HEARTBEAT_ROUTING_KEY, message_id=str(uuid.uuid4()),
            content_type="application/json", headers={"authorization": enrolled["token"]}, retry=True)
    [(_, headers)] = dead_letters(system.amqp_uri, marker.encode(), expected=1)
    assert reason in headers["x-dead-letter-reason"], headers
    # the machine's state is untouched: it still has never sent a heartbeat
    view = tenant.admin.get(f"/api/admin/machines/{enrolled['machine_id']}").json()
    assert view["last_seen_at"] is None, view


def test_extreme_stored_dates_break_no_page(system, tenant, anonymous):
    """Rows as the landed code stored them for a year-1 first heartbeat (and worse): the
    health snapshot, the device's API views and its console page all still answer."""
    admin = tenant.admin
    _, enrolled = enrol(anonymous, tenant.company())
    machine_id, token = enrolled["machine_id"], enrolled["token"]
    beat_and_wait(anonymous, admin, token, machine_id)
    engine = create_engine(system.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "UPDATE devices.heartbeat_state SET last_sent_at = '0001-01-01 00:00+00', "
                "agg_hour = '0001-01-01 00:00+00', last_seen_at = '0001-01-01 00:00+00' "
                "WHERE machine_id = :m"), {"m": machine_id})
            for day in (date.min, date.max):  # the first and the last day a date can be
                connection.execute(text(
                    "INSERT INTO devices.machine_days (machine_id, day, metrics, changes) "
                    "VALUES (:m, :d, :metrics, :changes)"),
                    {"m": machine_id, "d": day, "metrics": pack_metrics({0: HourMetrics(1, 10.0, 10.0, 20.0, 20.0, 30.0),
                                                                         23: HourMetrics(2, 5.0, 9.0)}),
                     "changes": pack_changes([ChangeRecord(1, day_start(day), {})], day)})
            connection.execute(text(
                "INSERT INTO devices.alerts (id, machine_id, kind, opened_at, closed_at, details) "
                "VALUES (:i, :m, 'disk_full', '0001-01-01 00:00+00', '0001-01-02 00:00+00', '{}')"),
                {"i": uuid.uuid4(), "m": machine_id})
            connection.execute(text(
                "UPDATE devices.machines SET created_at = '0001-01-01 00:00+00' WHERE id = :m"),
                {"m": machine_id})
    finally:
        engine.dispose()
    _, agent = tenant.person("agent")
    snapshot = agent.get("/api/admin/health")
    assert snapshot.status_code == 200, snapshot.text
    assert snapshot.json()["retention"]["metrics_hourly"]["oldest"].startswith("0001-01-01")
    for path in (f"/api/admin/machines/{machine_id}", f"/api/admin/machines/{machine_id}/metrics",
                 f"/api/admin/machines/{machine_id}/inventory/changes",
                 f"/api/admin/machines/{machine_id}/inventory", "/api/admin/machines"):
        response = admin.get(path)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    for path in (f"/admin/dispositivos/{machine_id}", "/admin/dispositivos", "/admin/health"):
        page = admin.http.get(f"{system.base_url}{path}", cookies={SESSION_COOKIE: admin.token},
                              allow_redirects=False, timeout=30)
        assert page.status_code == 200, (path, page.status_code, system.log("gateway")[-3000:])
    # and the agent can still be reset from the device page's action
    reset = admin.post(f"/api/admin/machines/{machine_id}/reset-agent")
    assert reset.status_code in (200, 201), reset.text
    # a heartbeat of now is still taken (sent after the stored registration date)
    beat(anonymous, token, expect=401)  # the reset revoked the token


def test_the_retention_section_is_the_callers_tenant_only(system, tenant, rpc, anonymous):
    """One tenant's old rows show in no other tenant's snapshot."""
    from tests.harness import new_tenant

    other = new_tenant(system, rpc)
    _, enrolled = enrol(anonymous, other.company())
    beat_and_wait(anonymous, other.admin, enrolled["token"], enrolled["machine_id"])
    engine = create_engine(system.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO devices.machine_days (machine_id, day, metrics) VALUES (:m, '2001-01-01', :metrics)"),
                {"m": enrolled["machine_id"], "metrics": pack_metrics({3: HourMetrics(1, 10.0, 10.0)})})
    finally:
        engine.dispose()
    mine = tenant.admin.get("/api/admin/health").json()["retention"]
    theirs = other.admin.get("/api/admin/health").json()["retention"]
    assert theirs["metrics_hourly"]["past_policy"] >= 1
    assert theirs["metrics_hourly"]["oldest"].startswith("2001-01-01")
    assert mine["metrics_hourly"]["past_policy"] == 0 and mine["metrics_hourly"]["oldest"] is None
    assert "sign_in_throttle" not in mine  # rows of no tenant are not a tenant's to see
