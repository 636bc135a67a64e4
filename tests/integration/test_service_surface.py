"""What every service shows the operators and the other services: /metrics, ping, remote
errors that keep their class across RPC, events on the bus."""
import uuid

import pytest
import requests
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from common.config import SERVICE_NAMES
from common.errors import NotFound, ValidationFailed

BACKENDS = [name for name in SERVICE_NAMES if name != "gateway"]


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_metrics_show_memory_and_database_size(system, service):
    response = requests.get(system.metrics_url(service), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "\nprocess_resident_memory_bytes " in response.text
    if service != "gateway":  # the gateway has no database
        assert f'chamados_database_size_bytes{{service="{service}"}}' in response.text


def test_accounts_metrics_show_its_own_tables(system):
    text = requests.get(system.metrics_url("accounts"), timeout=10).text
    for table in ("users", "companies", "sessions", "tenants", "outbox"):
        assert f'chamados_table_rows{{service="accounts",table="{table}"}}' in text


@pytest.mark.parametrize("service", BACKENDS)
def test_ping(rpc, service):
    assert getattr(rpc, service).ping() == {"service": service, "ok": True}


def test_domain_errors_cross_rpc_as_themselves(rpc, tenant):
    actor = {"user_id": str(uuid.uuid4()), "tenant_id": tenant.id, "role": "admin"}
    with pytest.raises(NotFound) as missing:
        rpc.accounts.get_user(actor, str(uuid.uuid4()))
    assert missing.value.code == "user_not_found"
    with pytest.raises(ValidationFailed) as invalid:
        rpc.accounts.create_company(actor, {"name": "", "apelido": "x", "extra": 1})
    assert set(invalid.value.details["fields"]) == {"name", "extra"}


def test_merge_publishes_user_merged_through_the_outbox(system, rpc, tenant):
    with Connection(system.amqp_uri) as connection:
        queue = Queue(f"test-merge-{uuid.uuid4().hex[:8]}", exchange=get_event_exchange("accounts", {}),
                      routing_key="user_merged", auto_delete=False, durable=False)
        queue(connection.channel()).declare()
        one = tenant.admin.post("/api/admin/users", json={"email": "one@example.com", "name": "One",
                                                          "role": "collaborator"}).json()
        two = tenant.admin.post("/api/admin/users", json={"email": "two@example.com", "name": "Two",
                                                          "role": "collaborator"}).json()
        assert tenant.admin.post("/api/admin/users/merge", json={
            "from_user_id": one["id"], "into_user_id": two["id"]}).status_code == 200
        bodies = []
        with connection.Consumer(queue, callbacks=[lambda body, message: (bodies.append(body), message.ack())]):
            connection.drain_events(timeout=10)
        queue(connection.channel()).delete()
    assert bodies[0]["from_user_id"] == one["id"]
    assert bodies[0]["into_user_id"] == two["id"]
    assert bodies[0]["tenant_id"] == tenant.id
    uuid.UUID(bodies[0]["event_id"])


def test_first_admin_is_created_once(rpc):
    email = f"first-{uuid.uuid4().hex[:8]}@example.com"
    first = rpc.accounts.ensure_admin(email, None)
    again = rpc.accounts.ensure_admin(email, None)
    assert first["created"] and len(first["password"]) >= 12
    assert not again["created"] and "password" not in again
    assert again["user"]["id"] == first["user"]["id"]


def test_operational_gauges_are_exported(system):
    tickets = requests.get(system.metrics_url("tickets"), timeout=10).text
    for status in ("PENDING", "AWAITING_ATTENDANCE", "PAUSED", "RESOLVED"):
        assert f'chamados_tickets{{status="{status}"}}' in tickets
    for service in ("accounts", "tickets", "devices"):
        assert f'chamados_outbox_backlog{{service="{service}"}}' in requests.get(
            system.metrics_url(service), timeout=10).text
    gateway = requests.get(system.metrics_url("gateway"), timeout=10).text
    assert 'chamados_queue_messages{queue="chamados.dead-letter"}' in gateway
    assert 'chamados_queue_messages{queue="devices.heartbeats"}' in gateway
