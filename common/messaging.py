"""Consuming from the bus without losing or repeating work.

nameko's own @event_handler acks and drops a message whose handler raised, and
`requeue_on_error` loops forever (ENGINEERING.md pitfall 6). `subscribe` keeps nameko's
queue naming and reliable delivery, and on failure either retries the message later
(a per-queue retry queue whose TTL dead-letters back into the queue) or, for a permanent
error or after `MAX_ATTEMPTS`, moves it to the dead-letter queue with the reason in its
headers. The original is acked only after that publish was confirmed.

A redelivered message (SIGTERM or kill -9 mid-handler re-runs it, pitfall 7) is absorbed by
`first_delivery`: the event id is recorded in the `inbox` table in the same transaction as
the handler's work, so the second run does nothing.

`declare_bus` declares every subscription queue before anything is published (an event
nobody has bound a queue for is dropped, pitfall 9); `chamados migrate` calls it.
"""
from __future__ import annotations

import hashlib
import logging
import socket
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import eventlet
from eventlet.event import Event
from kombu import Connection, Exchange, Queue
from kombu import Consumer as KombuConsumer
from nameko.events import EventHandler
from nameko.extensions import Entrypoint
from nameko.standalone.events import get_event_exchange
from prometheus_client import Counter
from sqlalchemy import Column, String, Table, Uuid

from common.contracts import devices as device_contract
from common.db import UTCDateTime, utcnow
from common.errors import DomainError
from common.events import SUBSCRIPTIONS

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
ATTEMPTS_HEADER = "x-chamados-attempts"
DEAD_LETTER_EXCHANGE = Exchange("chamados.dead-letter", type="topic", durable=True)
DEAD_LETTER_QUEUE = Queue("chamados.dead-letter", DEAD_LETTER_EXCHANGE, routing_key="#",
                          durable=True)

HEARTBEAT_EXCHANGE = Exchange(device_contract.HEARTBEAT_EXCHANGE, type="direct", durable=True)
HEARTBEAT_QUEUE = Queue(device_contract.HEARTBEAT_QUEUE, HEARTBEAT_EXCHANGE,
                        routing_key=device_contract.HEARTBEAT_ROUTING_KEY, durable=True)

DEAD_LETTERED = Counter("chamados_messages_dead_lettered_total",
                        "Messages moved to the dead-letter queue, by queue and reason",
                        ["service", "queue", "reason"])
RETRIED = Counter("chamados_messages_retried_total", "Messages scheduled for another attempt",
                  ["service", "queue"])


def subscription_queue_name(consumer: str, source: str, event_type: str, method: str) -> str:
    """nameko's name for a SERVICE_POOL event handler queue."""
    return f"evt-{source}-{event_type}--{consumer}.{method}"


def retry_queue(queue_name: str) -> Queue:
    """Where a failed message waits out its backoff, then dead-letters back to its queue."""
    return Queue(f"{queue_name}.retry", exchange=Exchange(""), routing_key=f"{queue_name}.retry",
                 durable=True, queue_arguments={"x-dead-letter-exchange": "",
                                                "x-dead-letter-routing-key": queue_name})


def backoff_ms(attempt: int) -> int:
    return min(500 * 2 ** (attempt - 1), 30_000)


def is_permanent(exc: BaseException) -> bool:
    """A domain error will fail the same way every time: retrying only delays the reason."""
    return isinstance(exc, (DomainError, ValueError, KeyError, TypeError))


def publish_confirmed(amqp_uri: str, message, *, exchange: Exchange, routing_key: str,
                      headers: dict, declare=(), expiration: float | None = None) -> None:
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        connection.Producer().publish(
            message.body, exchange=exchange, routing_key=routing_key, headers=headers,
            content_type=message.content_type, content_encoding=message.content_encoding,
            delivery_mode=2, declare=list(declare), expiration=expiration, retry=True,
            retry_policy={"max_retries": 5})


def dead_letter(amqp_uri: str, service: str, queue_name: str, message, reason: str,
                attempts: int) -> None:
    headers = dict(message.headers or {})
    token = headers.pop("authorization", None)
    if token:  # a credential is never parked in clear: keep only what identifies it
        headers["authorization-sha256"] = hashlib.sha256(
            (token if isinstance(token, str) else token.decode(errors="replace")).encode()).hexdigest()
    headers.update({
        "x-dead-letter-reason": reason[:1000],
        "x-original-queue": queue_name,
        ATTEMPTS_HEADER: attempts,
        "x-dead-lettered-at": datetime.now(timezone.utc).isoformat(),
    })
    publish_confirmed(amqp_uri, message, exchange=DEAD_LETTER_EXCHANGE, routing_key=queue_name,
                      headers=headers, declare=[DEAD_LETTER_QUEUE])
    DEAD_LETTERED.labels(service, queue_name, reason.split(":", 1)[0][:60]).inc()
    log.warning("dead-lettered a message from %s after %d attempt(s): %s", queue_name,
                attempts, reason)


class ReliableEventHandler(EventHandler):
    def __init__(self, source_service, event_type, **kwargs):
        kwargs.setdefault("expected_exceptions", DomainError)
        super().__init__(source_service, event_type, reliable_delivery=True, **kwargs)

    def handle_message_processed(self, message, result=None, exc_info=None):
        if exc_info is not None:
            try:
                self._retry_or_dead_letter(message, exc_info)
            except Exception:  # broker gone: leave it unacked, it comes back on reconnect
                log.exception("could not park a failed message from %s", self.queue.name)
                self.queue_consumer.requeue_message(message)
                return
        self.queue_consumer.ack_message(message)

    def _retry_or_dead_letter(self, message, exc_info) -> None:
        exc = exc_info[1]
        attempts = int((message.headers or {}).get(ATTEMPTS_HEADER, 0)) + 1
        amqp_uri = self.container.config["AMQP_URI"]
        if is_permanent(exc) or attempts >= MAX_ATTEMPTS:
            reason = f"{exc.__class__.__name__}: {exc}"
            dead_letter(amqp_uri, self.container.service_name, self.queue.name, message,
                        reason, attempts)
            return
        waiting = retry_queue(self.queue.name)
        headers = dict(message.headers or {})
        headers[ATTEMPTS_HEADER] = attempts
        publish_confirmed(amqp_uri, message, exchange=waiting.exchange,
                          routing_key=waiting.routing_key, headers=headers, declare=[waiting],
                          expiration=backoff_ms(attempts) / 1000)
        RETRIED.labels(self.container.service_name, self.queue.name).inc()
        log.warning("attempt %d of a message from %s failed, retrying: %s", attempts,
                    self.queue.name, "".join(traceback.format_exception_only(exc)).strip())


subscribe = ReliableEventHandler.decorator


# --- idempotency ---------------------------------------------------------------------

def inbox_table(metadata) -> Table:
    if "inbox" in metadata.tables:
        return metadata.tables["inbox"]
    return Table("inbox", metadata,
                 Column("event_id", Uuid, primary_key=True),
                 Column("event_type", String(80), nullable=False),
                 Column("processed_at", UTCDateTime, nullable=False))


def first_delivery(uow, table: Table, event: dict, event_type: str) -> bool:
    """Record the event as handled, in the handler's transaction; False if it already was."""
    dialect = uow.session.bind.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    statement = dialect_insert(table).values(
        event_id=uuid.UUID(str(event["event_id"])), event_type=event_type,
        processed_at=utcnow()).on_conflict_do_nothing().returning(table.c.event_id)
    # RETURNING, not rowcount: SQLAlchemy reports -1 for this statement on psycopg
    return uow.session.execute(statement).first() is not None


def queue_depth_families(amqp_uri: str, queues=(DEAD_LETTER_QUEUE, HEARTBEAT_QUEUE)):
    """`chamados_queue_messages{queue}`: what waits in the queues operators watch (the
    dead-letter queue should be empty; the heartbeat queue should stay short)."""
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily("chamados_queue_messages", "Messages waiting in a queue",
                               labels=["queue"])
    with Connection(amqp_uri, connect_timeout=2) as connection:
        channel = connection.channel()
        for queue in queues:
            try:
                _, messages, _ = channel.queue_declare(queue=queue.name, passive=True)
            except Exception:  # not declared yet: nothing waits in it
                channel = connection.channel()
                messages = 0
            family.add_metric([queue.name], messages)
    yield family


# --- topology --------------------------------------------------------------------------

def declare_bus(amqp_uri: str) -> list[str]:
    """Every event exchange, subscription queue (with its retry queue) and the dead-letter
    queue, declared durably before the first publish."""
    declared = []
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        for queue in (DEAD_LETTER_QUEUE, HEARTBEAT_QUEUE):
            queue(channel).declare()
            declared.append(queue.name)
        for consumer, source, event_type, method in SUBSCRIPTIONS:
            name = subscription_queue_name(consumer, source, event_type, method)
            queue = Queue(name, exchange=get_event_exchange(source, {}), routing_key=event_type,
                          durable=True, auto_delete=False)
            queue(channel).declare()
            retry_queue(name)(channel).declare()
            declared.append(name)
    return declared



# --- batched consumption ------------------------------------------------------------------

@dataclass(frozen=True)
class Delivery:
    """One message of a batch, as the handler sees it."""

    index: int
    body: bytes
    headers: dict
    message_id: str | None
    reply_to: str | None
    correlation_id: str | None


@dataclass
class Verdict:
    """What the handler says of one delivery: dead-letter it (with the reason), and/or
    answer its `reply_to` after the batch committed."""

    dead_letter: str | None = None
    reply: dict | None = None


class BatchConsumer(Entrypoint):
    """Consumes a durable queue in batches: up to `batch_size` messages (the prefetch) or
    whatever arrived within `max_wait` seconds go to ONE worker call, which commits one
    transaction and returns a {index: Verdict}; then the dead letters are published (with
    confirms), the replies sent, and the whole batch acked (ENGINEERING.md pitfalls 5-7, 15).

    A batch whose handler raises is retried one message at a time, so a poison message
    cannot hold the others back; a message that fails alone is dead-lettered with the
    exception. When the database itself is unreachable nothing is dead-lettered: the batch
    goes back to the queue and the consumer backs off."""

    def __init__(self, exchange: Exchange, queue: Queue, batch_size: int = 500,
                 max_wait: float = 0.2, transient=(), **kwargs):
        self.exchange, self.queue = exchange, queue
        self.batch_size, self.max_wait = batch_size, max_wait
        self.transient = tuple(transient)
        self._running = False
        self._thread = None
        super().__init__(**kwargs)

    def start(self):
        self._running = True
        self._thread = self.container.spawn_managed_thread(self._consume)

    def stop(self):
        self._running = False
        if self._thread is not None:
            self._thread.wait()

    def kill(self):
        self._running = False
        if self._thread is not None:
            self._thread.kill()

    # the loop ---------------------------------------------------------------------------

    def _consume(self):
        delay = 0.5
        while self._running:
            try:
                with Connection(self.container.config["AMQP_URI"], heartbeat=0) as connection:
                    self._drain(connection)
                delay = 0.5
            except Exception as exc:  # broker gone: reconnect with backoff; unacked come back
                if not self._running:
                    return
                log.warning("%s consumer lost its connection: %s; reconnecting in %.1fs",
                            self.queue.name, exc, delay)
                eventlet.sleep(delay)
                delay = min(delay * 2, 15)

    def _drain(self, connection):
        channel = connection.channel()
        self.exchange(channel).declare()
        self.queue(channel).declare()
        channel.basic_qos(0, self.batch_size, False)
        pending = []
        consumer = KombuConsumer(channel, [self.queue], on_message=pending.append, no_ack=False)
        with consumer:
            while self._running:
                started = time.monotonic()
                while self._running and len(pending) < self.batch_size:
                    left = self.max_wait - (time.monotonic() - started)
                    if pending and left <= 0:
                        break
                    try:
                        connection.drain_events(timeout=left if pending else 1.0)
                    except socket.timeout:
                        if pending:
                            break
                if pending:
                    batch, pending[:] = list(pending), []
                    self._process(connection, batch)

    def _process(self, connection, messages):
        deliveries = [Delivery(index, message.body if isinstance(message.body, bytes)
                               else str(message.body).encode(), dict(message.headers or {}),
                               message.properties.get("message_id"),
                               message.properties.get("reply_to"),
                               message.properties.get("correlation_id"))
                      for index, message in enumerate(messages)]
        try:
            verdicts = self._run_worker(deliveries)
        except self.transient as exc:
            self._give_back(messages, exc)
            return
        except Exception as exc:
            if len(deliveries) == 1:
                verdicts = {0: Verdict(dead_letter=f"handler failed: {exc.__class__.__name__}: {exc}")}
            else:
                log.warning("a batch of %d failed (%s); retrying one by one", len(deliveries), exc)
                for message in messages:
                    self._process(connection, [message])
                return
        self._settle(connection, messages, deliveries, verdicts)

    def _run_worker(self, deliveries):
        done = Event()
        self.container.spawn_worker(
            self, (deliveries,), {},
            handle_result=lambda worker_ctx, result, exc_info: (done.send((result, exc_info)),
                                                                (result, exc_info))[1])
        result, exc_info = done.wait()
        if exc_info is not None:
            raise exc_info[1]
        return result or {}

    def _settle(self, connection, messages, deliveries, verdicts):
        amqp_uri = self.container.config["AMQP_URI"]
        service = self.container.service_name
        for index, verdict in verdicts.items():
            if verdict.dead_letter:
                dead_letter(amqp_uri, service, self.queue.name, messages[index],
                            verdict.dead_letter, 1)
        replies = [(deliveries[i], v.reply) for i, v in verdicts.items() if v.reply and deliveries[i].reply_to]
        if replies:
            producer = connection.Producer()
            for delivery, reply in replies:
                try:
                    producer.publish(reply, exchange="", routing_key=delivery.reply_to,
                                     correlation_id=delivery.correlation_id or delivery.message_id,
                                     serializer="json")
                except Exception as exc:  # a reply is advice; the heartbeat itself is stored
                    log.warning("could not reply to %s: %s", delivery.reply_to, exc)
        for message in messages:
            message.ack()

    def _give_back(self, messages, exc):
        log.warning("%s: storage unavailable (%s); %d messages back to the queue",
                    self.queue.name, exc, len(messages))
        for message in messages:
            message.requeue()
        eventlet.sleep(1.0)


batch_consumer = BatchConsumer.decorator
