"""Consuming from the bus without losing or repeating work.

nameko's own @event_handler acks and drops a message whose handler raised, and
`requeue_on_error` loops forever (ENGINEERING.md pitfall 6). `subscribe` keeps nameko's
queue naming and reliable delivery, and on failure either retries the message later
(a per-queue retry queue whose TTL dead-letters back into the queue) or, for a permanent
error or after `MAX_ATTEMPTS`, moves it to the dead-letter queue with the reason in its
headers. An outage (database or broker unreachable) is never a reason to park a message: it
is retried with capped back-off for as long as the outage lasts. The original is acked only
after that publish was confirmed.

A redelivered message (SIGTERM or kill -9 mid-handler re-runs it, pitfall 7) is absorbed by
`first_delivery`: the event id is recorded in the `inbox` table in the same transaction as
the handler's work, so the second run does nothing.

`declare_bus` declares every subscription queue before anything is published (an event
nobody has bound a queue for is dropped, pitfall 9); `chamados migrate` calls it.
"""
from __future__ import annotations

import hashlib
import logging
import re
import socket
import time
import traceback
import uuid
from datetime import datetime, timezone

import eventlet
from amqp.exceptions import MessageNacked
from eventlet.event import Event
from kombu import Connection, Exchange, Queue
from kombu import Consumer as KombuConsumer
from nameko.events import EventHandler
from nameko.extensions import Entrypoint
from nameko.standalone.events import get_event_exchange
from prometheus_client import Counter
from sqlalchemy import Column, String, Table, Uuid

from common.contracts import devices as device_contract
from common.db import UTCDateTime, upsert_insert, utcnow
from common.deliveries import Delivery, Verdict
from common.errors import DomainError
from common.events import SUBSCRIPTIONS
from common.nameko_outages import RECONNECT_MAX_SECONDS
from common.outages import is_outage, warn_once

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
                      headers: dict, declare=(), expiration: float | None = None,
                      body: bytes | None = None, properties: dict | None = None) -> None:
    """`message` again (its body, or `body`), persistent, confirmed, routed or refused."""
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        connection.Producer().publish(
            message.body if body is None else body, exchange=exchange, routing_key=routing_key,
            headers=headers, content_type=message.content_type,
            content_encoding=message.content_encoding, delivery_mode=2, declare=list(declare),
            expiration=expiration, retry=True, retry_policy={"max_retries": 5}, mandatory=True,
            **(properties or {}))


# --- untrusted message metadata -------------------------------------------------------------

HEADER_NAME_MAX, HEADER_TEXT_MAX = 128, 1024
PROPERTY_TEXT_MAX = {"message_id": 128, "correlation_id": 128, "reply_to": 255}
# Where a heartbeat's answer may go: a queue only its sender reads — RabbitMQ's direct reply-to
# (what the agent uses; the broker routes it to the publishing channel and nowhere else) or a
# server-named exclusive queue. Never a named queue: that made the services publish, with their
# own account, into any queue an agent named (issue 26: `rpc-scheduler`).
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
AGENT_REPLY_QUEUE = re.compile(r"\A(amq\.gen-[\w-]{1,64}|amq\.rabbitmq\.reply-to\.[\w.+/=-]{1,200})\Z",
                               re.ASCII)


def credential_fingerprint(value) -> str:
    """What identifies a credential without revealing it, whatever type it arrived as."""
    if isinstance(value, str):
        raw = value.encode("utf-8", errors="replace")
    elif isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    else:
        raw = repr(value).encode()
    return hashlib.sha256(raw).hexdigest()


def parking_headers(headers, reason: str, queue_name: str, attempts: int) -> dict:
    """The headers a parked message keeps: its own scalar headers (text shortened), never a
    credential in clear, and why, from where and when it was parked. Headers are untrusted
    input of any AMQP type; nested tables and arrays are dropped (their names are kept), so
    re-publishing them cannot fail."""
    kept, dropped = {}, []
    for key, value in (headers.items() if isinstance(headers, dict) else ()):
        key = str(key)[:HEADER_NAME_MAX]
        if key == "authorization":
            if value not in (None, "", b""):
                kept["authorization-sha256"] = credential_fingerprint(value)
            continue
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", errors="replace")
        if isinstance(value, str):
            kept[key] = value[:HEADER_TEXT_MAX]
        elif value is None or isinstance(value, (bool, float)) or (
                isinstance(value, int) and -2 ** 63 <= value < 2 ** 63):
            kept[key] = value
        else:
            dropped.append(key)
    if dropped:
        kept["x-dropped-headers"] = ",".join(sorted(dropped))[:HEADER_TEXT_MAX]
    kept.update({
        "x-dead-letter-id": uuid.uuid4().hex,  # what `chamados dlq` names it by
        "x-dead-letter-reason": reason[:1000],
        "x-original-queue": queue_name,
        ATTEMPTS_HEADER: attempts,
        "x-dead-lettered-at": datetime.now(timezone.utc).isoformat(),
    })
    return kept


def reason_label(reason: str) -> str:
    return reason.split(":", 1)[0][:60]


# What a parked copy keeps of a message: enough to find it, read it and replay it (an 8 MiB
# body was seen parked whole; the largest body the system takes in is 1 MiB).
PARKED_BODY_MAX_BYTES = 1024 * 1024
PARKED_TEXT_PROPERTIES = ("message_id", "correlation_id", "type", "app_id")


def parked_copy(message, reason: str, queue_name: str, attempts: int) -> tuple[bytes, dict, dict]:
    """(body, properties, headers) of the dead-letter queue's copy of `message`: its body cut
    at PARKED_BODY_MAX_BYTES (the cut said in headers, with the whole body's SHA-256), its
    identifying properties kept when they are well-typed, its headers made safe."""
    body = message.body if isinstance(message.body, (bytes, bytearray)) else str(message.body).encode()
    body = bytes(body)
    headers = parking_headers(message.headers, reason, queue_name, attempts)
    if len(body) > PARKED_BODY_MAX_BYTES:
        headers["x-body-truncated-from"] = len(body)
        headers["x-body-sha256"] = hashlib.sha256(body).hexdigest()
        body = body[:PARKED_BODY_MAX_BYTES]
    properties = {}
    for name in PARKED_TEXT_PROPERTIES:
        value = message.properties.get(name)
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", errors="replace")
        if isinstance(value, str) and value:
            properties[name] = value[:PROPERTY_TEXT_MAX.get(name, 255)]
    timestamp = message.properties.get("timestamp")  # seconds since the epoch, an unsigned 64-bit
    if isinstance(timestamp, int) and not isinstance(timestamp, bool) and 0 <= timestamp < 2 ** 63:
        properties["timestamp"] = timestamp
    return body, properties, headers


def dead_letter(amqp_uri: str, service: str, queue_name: str, message, reason: str,
                attempts: int) -> None:
    body, properties, headers = parked_copy(message, reason, queue_name, attempts)
    publish_confirmed(amqp_uri, message, exchange=DEAD_LETTER_EXCHANGE, routing_key=queue_name,
                      headers=headers, declare=[DEAD_LETTER_QUEUE], body=body, properties=properties)
    DEAD_LETTERED.labels(service, queue_name, reason_label(reason)).inc()
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
        # an outage (database or broker unreachable) says nothing about the message: it
        # waits, with capped back-off, for as long as the outage lasts (issue 12)
        if not is_outage(exc) and (is_permanent(exc) or attempts >= MAX_ATTEMPTS):
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
        problem = "".join(traceback.format_exception_only(exc)).strip()
        if is_outage(exc):  # one line per queue and interval, however many messages wait
            warn_once(log, f"{self.queue.name}-outage", "messages from %s wait for an outage to "
                      "end (attempt %d of this one): %s", self.queue.name, attempts, problem)
        else:
            log.warning("attempt %d of a message from %s failed, retrying: %s", attempts,
                        self.queue.name, problem)


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
    statement = upsert_insert(uow.session, table).values(
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

CONNECTION_HEARTBEAT_SECONDS = 30


def delivery_of(index: int, message) -> tuple[Delivery | None, str | None]:
    """(delivery, None), or (None, why the message is refused before any handler sees it):
    properties are untrusted input, checked for type and size like a body."""
    properties = {}
    for name, limit in PROPERTY_TEXT_MAX.items():
        value = message.properties.get(name)
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", errors="replace")
        if value is not None and not isinstance(value, str):
            return None, f"invalid: the {name} property is not text"
        if value is not None and len(value) > limit:
            return None, f"invalid: the {name} property is longer than {limit} characters"
        properties[name] = value or None
    if properties["reply_to"] is not None and not AGENT_REPLY_QUEUE.match(properties["reply_to"]):
        return None, ("invalid: the reply_to property names no reply queue of the sender's own "
                      f"({DIRECT_REPLY_TO} or a server-named amq.gen- queue)")
    body = message.body
    if not isinstance(body, (bytes, bytearray)):
        body = str(body).encode()
    headers = message.headers if isinstance(message.headers, dict) else {}
    return Delivery(index, bytes(body), dict(headers), properties["message_id"],
                    properties["reply_to"], properties["correlation_id"]), None


class BatchConsumer(Entrypoint):
    """Consumes a durable queue in batches: up to `batch_size` messages or `max_batch_bytes`
    of bodies (whichever comes first), or whatever arrived within `max_wait` seconds, go to
    ONE worker call, which commits one transaction and returns a {index: Verdict}; then the
    dead letters are published (with confirms), the replies sent, and the whole batch acked
    (ENGINEERING.md pitfalls 5-7, 15, 18).

    A batch whose handler raises is retried one message at a time, so a poison message
    cannot hold the others back; a message that fails alone is dead-lettered with the
    exception. When the database itself is unreachable (`transient`) nothing is
    dead-lettered: the batch goes back to the queue and the consumer backs off.

    Only a broker error is taken for a lost connection: whatever else goes wrong while a
    message is settled parks that message with the reason, and the consumer moves on.
    Memory is bounded by bytes: reading stops while `max_batch_bytes` wait unprocessed
    (the next batch is read while one is processed), and the connection is serviced (AMQP
    heartbeats, deliveries) while the worker runs, so the broker never drops a slow batch."""

    def __init__(self, exchange: Exchange, queue: Queue, batch_size: int = 500,
                 max_wait: float = 0.2, max_batch_bytes: int = 4 * 1024 * 1024, transient=(),
                 on_parked=None, **kwargs):
        self.exchange, self.queue = exchange, queue
        self.batch_size, self.max_wait, self.max_batch_bytes = batch_size, max_wait, max_batch_bytes
        self.transient = tuple(transient)
        self.on_parked = on_parked
        self._running = False
        self._thread = None
        self._pending: list = []
        self._pending_bytes = 0
        self._broker_errors: tuple = (OSError,)
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
                with Connection(self.container.config["AMQP_URI"],
                                heartbeat=CONNECTION_HEARTBEAT_SECONDS) as connection:
                    self._broker_errors = (connection.connection_errors + connection.channel_errors
                                           + (MessageNacked,))
                    self._drain(connection)
                delay = 0.5
            except Exception as exc:  # unacked messages come back to the queue on reconnect
                if not self._running:
                    return
                if isinstance(exc, self._broker_errors):
                    warn_once(log, f"{self.queue.name}-connection", "%s consumer lost its "
                              "connection: %s; reconnecting every %.1f s or less",
                              self.queue.name, exc, RECONNECT_MAX_SECONDS)
                else:  # a defect of ours, not of a message: say so loudly
                    log.exception("%s consumer failed; reconnecting in %.1fs", self.queue.name, delay)
                eventlet.sleep(delay)
                # consuming again within seconds of the broker's return (issue 12)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    def _drain(self, connection):
        channel = connection.channel()
        self.exchange(channel).declare()
        self.queue(channel).declare()
        # twice the batch: the next batch arrives while one is processed (bytes bound it)
        channel.basic_qos(0, 2 * self.batch_size, False)
        parking = connection.channel()  # dead letters, each confirmed before its ack
        DEAD_LETTER_EXCHANGE(parking).declare()
        DEAD_LETTER_QUEUE(parking).declare()
        self._pending, self._pending_bytes = [], 0
        consumer = KombuConsumer(channel, [self.queue], on_message=self._received, no_ack=False)
        with consumer:
            while self._running:
                batch = self._next_batch(connection)
                if batch:
                    self._process(connection, parking, batch)

    def _received(self, message):
        self._pending.append(message)
        self._pending_bytes += len(message.body or b"")

    def _can_read(self) -> bool:
        return len(self._pending) < self.batch_size and self._pending_bytes < self.max_batch_bytes

    def _next_batch(self, connection) -> list:
        started = time.monotonic()
        while self._running and self._can_read():
            left = self.max_wait - (time.monotonic() - started)
            if self._pending and left <= 0:
                break
            try:
                connection.drain_events(timeout=left if self._pending else 1.0)
            except socket.timeout:
                if self._pending:
                    break
            finally:
                connection.heartbeat_check()
        taken, size = 0, 0
        for message in self._pending:
            if taken and (taken >= self.batch_size or size + len(message.body or b"") > self.max_batch_bytes):
                break
            taken, size = taken + 1, size + len(message.body or b"")
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        self._pending_bytes -= size
        return batch

    def _process(self, connection, parking, messages) -> bool:
        """Settle the messages; False when storage was unavailable and they went back."""
        verdicts, deliveries = {}, []
        for index, message in enumerate(messages):
            delivery, refused = delivery_of(index, message)
            if refused:
                verdicts[index] = Verdict(dead_letter=refused)
            else:
                deliveries.append(delivery)
        if deliveries:
            try:
                verdicts.update(self._run_worker(connection, deliveries))
            except self.transient as exc:
                self._give_back(messages, exc)
                return False
            except self._broker_errors:
                raise
            except Exception as exc:
                if len(messages) == 1:
                    verdicts[0] = Verdict(dead_letter=f"handler failed: {exc.__class__.__name__}: {exc}")
                else:
                    log.warning("a batch of %d failed (%s); retrying one by one", len(messages), exc)
                    for position, message in enumerate(messages):
                        if not self._process(connection, parking, [message]):
                            self._give_back(messages[position + 1:], None)
                            return False
                    return True
        self._settle(connection, parking, messages, {d.index: d for d in deliveries}, verdicts)
        return True

    def _run_worker(self, connection, deliveries):
        """The worker's verdicts; meanwhile the connection is serviced (heartbeats, and the
        next deliveries while the byte budget allows)."""
        done = Event()
        self.container.spawn_worker(
            self, (deliveries,), {},
            handle_result=lambda worker_ctx, result, exc_info: (done.send((result, exc_info)),
                                                                (result, exc_info))[1])
        try:
            while not done.ready():
                if self._can_read():
                    try:
                        connection.drain_events(timeout=0.25)
                    except socket.timeout:
                        pass
                else:
                    done.wait(timeout=0.25)
                connection.heartbeat_check()
        except BaseException:
            done.wait()  # the worker commits or not; a redelivery is recognised either way
            raise
        result, exc_info = done.wait()
        if exc_info is not None:
            raise exc_info[1]
        return result or {}

    def _settle(self, connection, parking, messages, deliveries, verdicts):
        for index, message in enumerate(messages):
            verdict = verdicts.get(index)
            if verdict is not None and verdict.dead_letter:
                self._park(parking, message, verdict.dead_letter)
        replies = [(deliveries[i], v.reply) for i, v in verdicts.items()
                   if v.reply and i in deliveries and deliveries[i].reply_to]
        if replies:
            producer = connection.Producer(on_return=self._reply_returned)
            for delivery, reply in replies:
                try:
                    # mandatory, so an answer to a queue that is gone comes back instead of
                    # vanishing; RabbitMQ takes a direct reply-to as "not routed" under mandatory
                    producer.publish(reply, exchange="", routing_key=delivery.reply_to,
                                     correlation_id=delivery.correlation_id or delivery.message_id,
                                     serializer="json",
                                     mandatory=not delivery.reply_to.startswith(DIRECT_REPLY_TO))
                except self._broker_errors:
                    raise
                except Exception as exc:  # a reply is advice; the heartbeat itself is stored
                    log.warning("could not reply to %s: %s", delivery.reply_to, exc)
        # one ack for the batch: every earlier delivery on the channel is settled already
        messages[-1].channel.basic_ack(messages[-1].delivery_tag, multiple=True)

    def _reply_returned(self, exc, exchange, routing_key, message):
        log.info("an answer to %s came back unrouted (its sender stopped waiting): %s",
                 routing_key, exc)

    def _park(self, parking, message, reason: str) -> None:
        """Publish to the dead-letter queue, confirmed; only a broker error escapes."""
        try:
            self._publish_parked(parking, message, reason)
        except self._broker_errors:
            raise
        except Exception as exc:  # its own headers would not go: park it with ours only
            log.error("could not park a message from %s with its headers (%s); parking without them",
                      self.queue.name, exc)
            self._publish_parked(parking, message, f"{reason} (its headers could not be kept)",
                                 own_headers=False)
        DEAD_LETTERED.labels(self.container.service_name, self.queue.name, reason_label(reason)).inc()
        if self.on_parked is not None:
            self.on_parked(reason)
        log.warning("dead-lettered a message from %s: %s", self.queue.name, reason)

    def _publish_parked(self, parking, message, reason: str, own_headers: bool = True) -> None:
        body, properties, headers = parked_copy(message, reason, self.queue.name, 1)
        if not own_headers:
            kept = parking_headers({}, reason, self.queue.name, 1)
            headers = {**kept, **{key: headers[key] for key in ("x-body-truncated-from", "x-body-sha256")
                                  if key in headers}}
        content_type = message.properties.get("content_type")
        content_encoding = message.properties.get("content_encoding")
        parked = parking.prepare_message(
            body, content_type=content_type if isinstance(content_type, str) else None,
            content_encoding=content_encoding if isinstance(content_encoding, str) else None,
            headers=headers, properties={"delivery_mode": 2, **properties})
        parking.basic_publish_confirm(parked, exchange=DEAD_LETTER_EXCHANGE.name,
                                      routing_key=self.queue.name, confirm_timeout=30)

    def _give_back(self, messages, exc):
        if exc is not None:
            log.warning("%s: storage unavailable (%s); %d messages back to the queue",
                        self.queue.name, exc, len(messages))
            eventlet.sleep(1.0)
        for message in messages:
            message.requeue()


batch_consumer = BatchConsumer.decorator
