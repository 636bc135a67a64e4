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

import logging
import traceback
import uuid
from datetime import datetime, timezone

from kombu import Connection, Exchange, Queue
from nameko.events import EventHandler
from nameko.standalone.events import get_event_exchange
from prometheus_client import Counter
from sqlalchemy import Column, String, Table, Uuid

from common.db import UTCDateTime, utcnow
from common.errors import DomainError
from common.events import SUBSCRIPTIONS

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
ATTEMPTS_HEADER = "x-chamados-attempts"
DEAD_LETTER_EXCHANGE = Exchange("chamados.dead-letter", type="topic", durable=True)
DEAD_LETTER_QUEUE = Queue("chamados.dead-letter", DEAD_LETTER_EXCHANGE, routing_key="#",
                          durable=True)

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


# --- topology --------------------------------------------------------------------------

def declare_bus(amqp_uri: str) -> list[str]:
    """Every event exchange, subscription queue (with its retry queue) and the dead-letter
    queue, declared durably before the first publish."""
    declared = []
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        DEAD_LETTER_QUEUE(channel).declare()
        declared.append(DEAD_LETTER_QUEUE.name)
        for consumer, source, event_type, method in SUBSCRIPTIONS:
            name = subscription_queue_name(consumer, source, event_type, method)
            queue = Queue(name, exchange=get_event_exchange(source, {}), routing_key=event_type,
                          durable=True, auto_delete=False)
            queue(channel).declare()
            retry_queue(name)(channel).declare()
            declared.append(name)
    return declared

