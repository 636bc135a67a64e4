"""Transactional outbox (ENGINEERING.md pitfall 8) and its relay.

Events are inserted in the same transaction as the change they describe; the relay, a
green thread in each service process, publishes them with publisher confirms and deletes
them once the broker has confirmed. A crash between commit and publish only delays an event;
a crash between publish and delete publishes it twice, which consumers absorb by `event_id`.
Rows are deleted, not flagged: the table stays as small as the backlog.
"""
from __future__ import annotations

import logging
import uuid

import eventlet
import orjson
from eventlet.queue import Empty, LightQueue
from kombu import Connection
from nameko.standalone.events import get_event_exchange
from sqlalchemy import BigInteger, Column, Integer, String, Table, Text, Uuid, delete, select

from common.tables import UTCDateTime, is_sqlite, utcnow
from common.metrics import OUTBOX_PUBLISHED

log = logging.getLogger(__name__)


def outbox_table(metadata) -> Table:
    if "outbox" in metadata.tables:
        return metadata.tables["outbox"]
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        Column("event_id", Uuid, nullable=False, unique=True),
        Column("event_type", String(80), nullable=False),
        Column("payload", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
    )


def outbox_row(event_type: str, message: dict) -> dict:
    return {
        "event_id": uuid.UUID(message["event_id"]),
        "event_type": event_type,
        "payload": orjson.dumps(message).decode(),
        "created_at": utcnow(),
    }


class OutboxRelay:
    batch_size = 200
    idle_seconds = 1.0
    # under a stream of commits a round per commit (SELECT, publish, DELETE, COMMIT) cost the
    # tickets process a fifth of its CPU per create; a round at most every 10 ms shares it
    linger_seconds = 0.01

    def __init__(self, store, nameko_config: dict):
        self.store = store
        self.exchange = get_event_exchange(store.service, nameko_config)
        self.amqp_uri = store.settings.amqp_uri
        self._wakeups = LightQueue(maxsize=1)
        self._running = True
        self._connection = None
        self._kept_producer = None

    def wake(self) -> None:
        if self._wakeups.qsize() == 0:
            self._wakeups.put_nowait(True)

    def stop(self) -> None:
        self._running = False
        self.wake()
        if self._connection is not None:
            self._connection.release()
            self._connection = None

    def run(self) -> None:
        delay = 0.5
        while self._running:
            try:
                published = self.publish_pending()
                delay = 0.5
            except Exception as exc:  # broker or database down: keep the rows, back off
                log.warning("outbox relay for %s failed: %s; retrying in %.1fs",
                            self.store.service, exc, delay)
                self._drop_connection()
                eventlet.sleep(delay)
                delay = min(delay * 2, 15)
                continue
            if published < self.batch_size:
                try:
                    self._wakeups.get(timeout=self.idle_seconds)
                except Empty:
                    continue
                if published:  # events are streaming in: let a few more commits share the round
                    eventlet.sleep(self.linger_seconds)

    def publish_pending(self) -> int:
        """Publish the oldest pending events (a batch), confirmed by the broker, then delete
        them in the same transaction. The rows are written to only after the publishing:
        on SQLite a write lock held across the confirm's wait (a green switch) would stop
        every other writer of the process (its waits are not green), this relay included."""
        table = self.store.outbox
        with self.store.engine.begin() as connection:
            query = select(table.c.id, table.c.event_type, table.c.payload).order_by(
                table.c.id).limit(self.batch_size)
            if not is_sqlite(self.store.engine):
                query = query.with_for_update(skip_locked=True)  # replicas share the work
            rows = connection.execute(query).all()
            if not rows:
                return 0
            producer = self._producer()
            for row in rows:
                producer.publish(
                    row.payload.encode(),  # JSON as validated and stored (outbox_row)
                    content_type="application/json",
                    content_encoding="utf-8",
                    exchange=self.exchange,
                    routing_key=row.event_type,
                    delivery_mode=2,
                    declare=[self.exchange],
                    retry=True,
                    retry_policy={"max_retries": 3},
                )
            connection.execute(delete(table).where(table.c.id.in_([row.id for row in rows])))
        OUTBOX_PUBLISHED.labels(self.store.service).inc(len(rows))
        return len(rows)

    def _producer(self):
        """One confirming connection and producer, kept until a failure drops them."""
        if self._connection is None:
            self._connection = Connection(self.amqp_uri,
                                          transport_options={"confirm_publish": True})
            self._connection.ensure_connection(max_retries=3)
            self._kept_producer = self._connection.Producer()
        return self._kept_producer

    def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:
                pass
            self._connection = None
