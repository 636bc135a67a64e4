"""The outbox: an event is written in the change's transaction and reaches the bus after
commit; a rollback publishes nothing; a broker outage loses nothing."""
import uuid

import pytest
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange
from sqlalchemy import delete, func, select

from common.config import Settings
from common.db import Store
from common.outbox import OutboxRelay
from services.accounts import storage
from services.accounts.storage import AccountsRepository, Tenant


@pytest.fixture
def store(private_database, amqp_uri):
    store = Store(Settings(database_url=private_database, amqp_uri=amqp_uri), "accounts",
                  AccountsRepository, storage.metadata)
    yield store
    store.dispose()


@pytest.fixture
def tenant_events(amqp_uri):
    """A queue bound to accounts.events for tenant_created, drained by the test."""
    with Connection(amqp_uri) as connection:
        queue = Queue(f"test-outbox-{uuid.uuid4().hex[:8]}",
                      exchange=get_event_exchange("accounts", {}), routing_key="tenant_created",
                      auto_delete=False, durable=False)
        queue(connection.channel()).declare()
        yield connection, queue
        queue(connection.channel()).delete()


def received(connection, queue, timeout=5.0):
    messages = []
    with connection.Consumer(queue, callbacks=[lambda body, message: (messages.append(body), message.ack())]):
        try:
            connection.drain_events(timeout=timeout)
            while True:
                connection.drain_events(timeout=0.5)
        except TimeoutError:
            pass
        except OSError:  # socket.timeout is an OSError subclass in some kombu paths
            pass
    return messages


def create_tenant(store, slug, commit=True):
    with store.unit_of_work() as uow:
        tenant = uow.repo.add(Tenant(name=slug, slug=slug))
        uow.emit("tenant_created", {"tenant_id": tenant.id, "name": slug, "slug": slug})
        if commit:
            uow.commit()


def outbox_rows(store):
    with store.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(store.outbox)).scalar()


def test_committed_event_is_published_once_and_leaves_no_row(store, tenant_events, amqp_uri):
    connection, queue = tenant_events
    relay = OutboxRelay(store, {})
    create_tenant(store, f"t-{uuid.uuid4().hex[:8]}")
    assert outbox_rows(store) == 1
    assert relay.publish_pending() == 1
    assert outbox_rows(store) == 0
    assert relay.publish_pending() == 0
    messages = received(connection, queue)
    assert len(messages) == 1 and messages[0]["event_id"]
    relay.stop()


def test_rolled_back_change_publishes_nothing(store, tenant_events):
    create_tenant(store, f"t-{uuid.uuid4().hex[:8]}", commit=False)
    assert outbox_rows(store) == 0


def test_a_change_still_pending_at_emit_commits_or_rolls_back_with_its_event(store):
    """`emit` writes its row on the unit of work's connection without flushing the pending
    changes first: they still land in one transaction with it, or neither does."""
    slugs = {commit: f"t-{uuid.uuid4().hex[:8]}" for commit in (False, True)}
    before, event_ids = outbox_rows(store), []
    for commit, slug in slugs.items():
        with store.unit_of_work() as uow:
            tenant = Tenant(id=uuid.uuid4(), name=slug, slug=slug)
            uow.session.add(tenant)  # not flushed: pending when the event is written
            message = uow.emit("tenant_created", {"tenant_id": tenant.id, "name": slug, "slug": slug})
            event_ids.append(uuid.UUID(message["event_id"]))
            if commit:
                uow.commit()
    with store.engine.begin() as connection:
        kept = connection.execute(select(Tenant.slug).where(Tenant.slug.in_(list(slugs.values())))).scalars().all()
        written = connection.execute(delete(store.outbox).where(store.outbox.c.event_id.in_(event_ids))).rowcount
    assert kept == [slugs[True]]
    assert (written, outbox_rows(store)) == (1, before)  # the committed event's row only (now removed)


def test_broker_outage_keeps_events_until_it_returns(store, tenant_events, private_database, amqp_uri):
    connection, queue = tenant_events
    slugs = [f"t-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for slug in slugs:
        create_tenant(store, slug)
    down = Store(Settings(database_url=private_database, amqp_uri="amqp://guest:guest@127.0.0.1:1/"),
                 "accounts", AccountsRepository, storage.metadata)
    try:
        with pytest.raises(Exception):
            OutboxRelay(down, {}).publish_pending()
    finally:
        down.dispose()
    assert outbox_rows(store) == 3  # nothing lost while the broker was away
    relay = OutboxRelay(store, {})
    assert relay.publish_pending() == 3
    relay.stop()
    assert sorted(m["slug"] for m in received(connection, queue)) == sorted(slugs)
