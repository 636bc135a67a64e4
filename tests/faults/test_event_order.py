"""An event retried during a database outage must not overwrite a newer one (issue 26: seen
once unprovoked, reproduced 2 of 2). The older change meets the outage first, so it has
waited through more retries — with a longer back-off — than the newer one when the
database comes back: the newer is applied first, the older comes after it. The consumer
keeps the newer: its version is higher. Short (~30 s), so it runs in `make test`'s subset.

On the fault suite's pipeline (the devices service on the private broker node and
PostgreSQL cluster), which consumes `user_updated` for its machines' assigned users."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import pytest
from kombu import Connection
from nameko.standalone.events import get_event_exchange
from sqlalchemy import text

from tests.faults.helpers import wait_for

pytestmark = [pytest.mark.faults]


def publish_user_updated(amqp_uri: str, event: dict) -> None:
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        exchange = get_event_exchange("accounts", {})
        connection.Producer().publish(event, exchange=exchange, routing_key="user_updated",
                                      serializer="json", delivery_mode=2, declare=[exchange],
                                      retry=True)


def test_an_older_change_retried_through_a_database_outage_does_not_overwrite_a_newer(pipeline):
    machine = pipeline.machines(1)[0]
    user_id, tenant_id = uuid.uuid4(), uuid.uuid4()
    with pipeline.engine.begin() as connection:
        connection.execute(text(
            "UPDATE devices.machines SET assigned_user_id = :u, assigned_user_name = 'Nome de cadastro', "
            "assigned_user_email = 'maria@example.test', tenant_id = :t "
            "WHERE id = :m"), {"u": user_id, "t": tenant_id, "m": machine["id"]})

    def user_updated(name: str, version: int) -> dict:
        return {"event_id": str(uuid.uuid4()), "occurred_at": datetime.now(timezone.utc).isoformat(),
                "tenant_id": str(tenant_id), "user_id": str(user_id), "email": "maria@example.test",
                "name": name, "role": "collaborator", "company_id": None, "version": version}

    older, newer = user_updated("Nome antigo", 2), user_updated("Nome novo", 3)
    pipeline.postgres.stop("fast")
    try:
        publish_user_updated(pipeline.rabbit.amqp_uri, older)
        time.sleep(8)  # the older one's retries back off: 0.5, 1, 2, 4 s, then 8 s
        publish_user_updated(pipeline.rabbit.amqp_uri, newer)
        time.sleep(1)  # the newer one fails once, and waits 0.5 s then 1 s
    finally:
        pipeline.postgres.start()

    def handled() -> bool:
        try:
            with pipeline.engine.connect() as connection:
                return connection.execute(text(
                    "SELECT count(*) FROM devices.inbox WHERE event_id = ANY(:ids)"),
                    {"ids": [uuid.UUID(older["event_id"]), uuid.UUID(newer["event_id"])]}).scalar() == 2
        except Exception:  # the database still starting
            return False

    wait_for(handled, timeout=45, what="both user_updated events handled after the outage")
    with pipeline.engine.connect() as connection:
        name = connection.execute(text("SELECT assigned_user_name FROM devices.machines WHERE id = :m"),
                                  {"m": machine["id"]}).scalar()
    assert name == "Nome novo"
