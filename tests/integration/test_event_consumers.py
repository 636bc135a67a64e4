"""Consumers on the bus: a message that cannot be handled is dead-lettered with its reason
(never dropped, never looped); a redelivered event is absorbed by the running service. That
the inbox is what handles it once is shown by tests/integration/test_inbox.py: both rows
counted here are capped by constraints anyway."""
import time
import uuid
from datetime import datetime, timezone

import requests
from kombu import Connection
from nameko.standalone.events import get_event_exchange
from sqlalchemy import create_engine, text

from tests.harness import dead_letters


def publish(amqp_uri, source, event_type, payload):
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        exchange = get_event_exchange(source, {})
        connection.Producer().publish(payload, exchange=exchange, routing_key=event_type,
                                      serializer="json", delivery_mode=2, declare=[exchange])


def test_a_malformed_event_is_dead_lettered_with_its_reason(system):
    marker = str(uuid.uuid4())
    publish(system.amqp_uri, "accounts", "user_updated",
            {"event_id": str(uuid.uuid4()), "tenant_id": str(uuid.uuid4()), "user_id": marker})
    # tickets, devices and notifications all consume user_updated: each parks its own copy
    messages = dead_letters(system.amqp_uri, marker.encode(), expected=3)
    assert sorted(headers["x-original-queue"] for _, headers in messages) == [
        "evt-accounts-user_updated--devices.on_user_updated",
        "evt-accounts-user_updated--notifications.on_user_updated",
        "evt-accounts-user_updated--tickets.on_user_updated"]
    assert all("KeyError" in headers["x-dead-letter-reason"] for _, headers in messages)
    metrics = requests.get(system.metrics_url("tickets"), timeout=10).text
    assert 'chamados_messages_dead_lettered_total{queue="evt-accounts-user_updated--tickets.on_user_updated"' in metrics


def test_a_redelivered_event_is_absorbed_without_a_dead_letter(system):
    tenant_id, event_id = uuid.uuid4(), uuid.uuid4()
    event = {"event_id": str(event_id), "occurred_at": datetime.now(timezone.utc).isoformat(),
             "tenant_id": str(tenant_id), "name": "Redelivered", "slug": f"r-{tenant_id.hex[:8]}"}
    publish(system.amqp_uri, "accounts", "tenant_created", event)
    publish(system.amqp_uri, "accounts", "tenant_created", event)
    engine = create_engine(system.database_url)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                queues = connection.execute(text(
                    "SELECT count(*) FROM tickets.queues WHERE tenant_id = :t"), {"t": tenant_id}).scalar()
                handled = connection.execute(text(
                    "SELECT count(*) FROM tickets.inbox WHERE event_id = :e"), {"e": event_id}).scalar()
            if queues and handled:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # give the second copy every chance to be (wrongly) handled
        with engine.connect() as connection:
            queues = connection.execute(text(
                "SELECT count(*) FROM tickets.queues WHERE tenant_id = :t"), {"t": tenant_id}).scalar()
            handled = connection.execute(text(
                "SELECT count(*) FROM tickets.inbox WHERE event_id = :e"), {"e": event_id}).scalar()
    finally:
        engine.dispose()
    assert (queues, handled) == (1, 1)
    assert not dead_letters(system.amqp_uri, str(tenant_id).encode(), expected=1, timeout=1.0)
