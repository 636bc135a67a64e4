"""The inbox (`common.messaging.first_delivery`), on the real database, is what makes a
redelivered event a no-op: the first delivery of an event id in a committed transaction wins;
every other one — later, or at the same moment in another transaction — is told it was
already handled; and a delivery whose handler rolled back leaves the event to the next."""
from __future__ import annotations

import uuid

import eventlet
import pytest
from sqlalchemy import func, select

from common.config import Settings
from common.db import Store
from common.messaging import first_delivery
from services.tickets import storage


@pytest.fixture
def tickets(private_database):
    store = Store(Settings(database_url=private_database), "tickets", storage.TicketsRepository,
                  storage.metadata)
    yield store
    store.engine.dispose()


def an_event() -> dict:
    return {"event_id": str(uuid.uuid4()), "tenant_id": str(uuid.uuid4())}


def deliver(store: Store, event: dict) -> bool:
    """One delivery as a handler makes it: the inbox row in its own committed transaction."""
    with store.unit_of_work() as uow:
        first = first_delivery(uow, storage.inbox, event, "tenant_created")
        uow.commit()
    return first


def recorded(store: Store, event: dict) -> int:
    with store.unit_of_work(read_only=True) as uow:
        return uow.session.execute(select(func.count()).select_from(storage.inbox).where(
            storage.inbox.c.event_id == uuid.UUID(event["event_id"]))).scalar_one()


def test_the_first_delivery_wins_and_a_redelivery_is_told_so(tickets):
    event, other = an_event(), an_event()
    assert deliver(tickets, event) is True
    assert deliver(tickets, event) is False
    assert deliver(tickets, event) is False
    assert deliver(tickets, other) is True  # another event id is another event
    assert recorded(tickets, event) == 1


def test_of_two_deliveries_at_once_only_one_handles_the_event(tickets):
    """Two consumers hold the same event in open transactions: the second waits on the first's
    inbox row and, once the first commits, is told the event was handled."""
    event = an_event()
    with tickets.unit_of_work() as first:
        assert first_delivery(first, storage.inbox, event, "tenant_created") is True
        second = eventlet.spawn(deliver, tickets, event)
        eventlet.sleep(0.5)
        assert not second.dead, "the second delivery did not wait for the first's transaction"
        first.commit()
    assert second.wait() is False
    assert recorded(tickets, event) == 1


def test_a_delivery_whose_handler_rolled_back_leaves_the_event_to_the_next(tickets):
    event = an_event()
    with tickets.unit_of_work() as failed:
        assert first_delivery(failed, storage.inbox, event, "tenant_created") is True
        # the handler raised: the block is left without commit()
    assert recorded(tickets, event) == 0
    assert deliver(tickets, event) is True
