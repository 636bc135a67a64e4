"""`Idempotency-Key`: a client that retries a state-changing request (after a 504, say) gets
the first answer instead of doing the work twice (or a 409 for the second transition).

The gateway validates the header and puts the key, with a fingerprint of the request
(method, path and the body's bytes), into its worker context; nameko copies the worker
context into the headers of every RPC the request makes, so the service that does the work
receives them in its own worker context (`IdempotencyContext` reads them). The service
records the answer, because after a timeout the gateway never learns it.

A key is one person's (tenant, user) for one operation. The first request claims it
('running'), does the work, then records the answer ('done'): the result, or the domain
refusal (a 4xx) to raise again. An outage or an unexpected error forgets the claim, so a
retry runs the work. The same key with another request is refused (422
`idempotency_key_reused`); a retry while the first still runs is told to come back (409
`request_in_progress`, Retry-After 1 s). Records go after `RETENTION` (storage maintenance).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import uuid
from datetime import timedelta

import orjson
from nameko.exceptions import get_module_path, registry
from nameko.extensions import DependencyProvider
from sqlalchemy import Column, String, Table, Text, delete, select, update

from common.db import UTCDateTime, upsert_insert, utcnow
from common.errors import (Conflict, DomainError, ServiceTimeout, ServiceUnavailable,
                           TooManyRequests, ValidationFailed)

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
KEY_DATA, REQUEST_DATA = "idempotency_key", "idempotency_request"  # worker context entries
MAX_KEY_LENGTH = 255
RETENTION = timedelta(hours=24)
# a 'running' claim older than this is taken to be abandoned (its process died in the work,
# or the database was down when the claim was to be forgotten): a retry may then run the
# work again rather than wait for the record to expire. Well past any work's duration.
ABANDONED_AFTER = timedelta(seconds=60)
RETRY_AFTER_SECONDS = 1
# refusals that say "not now" rather than "no": never recorded, a retry runs the work
TRANSIENT_ERRORS = (ServiceUnavailable, ServiceTimeout, TooManyRequests)


# --- pure parts -------------------------------------------------------------------------

def valid_key(value) -> bool:
    """1–255 visible ASCII characters (no spaces, no control characters)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_KEY_LENGTH and \
        all("!" <= ch <= "~" for ch in value)


def fresh_key() -> str:
    """The gateway's own key for a state-changing request that came without one: a broker
    outage can redeliver the RPC (nameko re-executes it on reconnect), the client never
    retries it, so one key per HTTP request protects against the redelivery alone."""
    return f"gateway-{uuid.uuid4()}"


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """What a retry must repeat exactly: the method, the path (with its query) and the body."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode("utf-8", "surrogateescape"), body or b""):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def key_hash(tenant_id, user_id, key: str, operation: str) -> str:
    """The record's key: the same client key of another person (or operation) is another."""
    return hashlib.sha256("\n".join((str(tenant_id), str(user_id), operation, key))
                          .encode()).hexdigest()


def error_record(exc: DomainError) -> dict:
    return {"error": {"class": get_module_path(type(exc)), "message": exc.message,
                      "code": exc.code, "details": exc.details}}


def replayed(record: dict):
    """The recorded answer: the result, or the recorded refusal raised again."""
    if "error" in record:
        error = record["error"]
        error_class = registry.get(error["class"])
        if not (isinstance(error_class, type) and issubclass(error_class, DomainError)):
            error_class = Conflict
        raise error_class(error["message"], code=error["code"], details=error["details"])
    return record["result"]


# --- storage ----------------------------------------------------------------------------

def idempotency_table(metadata) -> Table:
    if "idempotency_keys" in metadata.tables:
        return metadata.tables["idempotency_keys"]
    return Table("idempotency_keys", metadata,
                 Column("key_hash", String(64), primary_key=True),
                 Column("request_hash", String(64), nullable=False),
                 Column("state", String(10), nullable=False),  # running | done
                 Column("response", Text, nullable=True),  # JSON: {"result"} or {"error"}
                 Column("created_at", UTCDateTime, nullable=False, index=True))


def purge(session, table: Table, now) -> int:
    """Delete the records past RETENTION (the service's storage maintenance)."""
    return session.execute(delete(table).where(table.c.created_at < now - RETENTION)).rowcount


class Request:
    """The key and fingerprint of the request this worker serves (or none)."""

    def __init__(self, key: str, fingerprint: str):
        self.key, self.fingerprint = key, fingerprint

    def run(self, store, table: Table, actor: dict, operation: str, work):
        """`work()` once per key: the first call's answer for every retry."""
        record = key_hash(actor["tenant_id"], actor["user_id"], self.key, operation)
        recorded = self._claim(store, table, record)
        if recorded is not None:
            return replayed(recorded)
        try:
            result = work()
        except DomainError as exc:
            if isinstance(exc, TRANSIENT_ERRORS):
                self._forget(store, table, record)
            else:
                self._finish(store, table, record, error_record(exc))
            raise
        except BaseException:
            self._forget(store, table, record)
            raise
        self._finish(store, table, record, {"result": result})
        return result

    def _claim(self, store, table: Table, record: str) -> dict | None:
        """Claim the key (None: run the work), or the recorded answer to replay."""
        now = utcnow()
        with store.unit_of_work() as uow:
            session = uow.session
            claimed = session.execute(upsert_insert(session, table).values(
                key_hash=record, request_hash=self.fingerprint, state="running", response=None,
                created_at=now).on_conflict_do_nothing().returning(table.c.key_hash)).first()
            if claimed is None:
                row = session.execute(select(table).where(table.c.key_hash == record)).one()
                if row.request_hash != self.fingerprint:
                    raise ValidationFailed(
                        "this Idempotency-Key was used for another request: use a new key",
                        code="idempotency_key_reused")
                if row.state == "done":
                    return orjson.loads(row.response)
                # running: another worker does it now, unless its claim was abandoned
                taken = session.execute(
                    update(table).where(table.c.key_hash == record, table.c.state == "running",
                                        table.c.created_at < now - ABANDONED_AFTER)
                    .values(created_at=now).returning(table.c.key_hash)).first()
                if taken is None:
                    raise Conflict("the first request with this Idempotency-Key is still running",
                                   code="request_in_progress",
                                   details={"retry_after_seconds": RETRY_AFTER_SECONDS})
            uow.commit()
        return None

    @staticmethod
    def _finish(store, table: Table, record: str, answer: dict) -> None:
        """Record the answer. A transaction of its own, right after the work's committed: a
        crash in between leaves a 'running' claim that a retry takes over after
        ABANDONED_AFTER (and runs the work again); a failure here loses only the replay."""
        try:
            with store.unit_of_work() as uow:
                uow.session.execute(update(table).where(table.c.key_hash == record).values(
                    state="done", response=orjson.dumps(answer, default=str).decode()))
                uow.commit()
        except Exception as exc:  # the work is done: answer it all the same
            log.warning("could not record the answer to an Idempotency-Key: %s",
                        exc.__class__.__name__)

    @staticmethod
    def _forget(store, table: Table, record: str) -> None:
        try:
            with store.unit_of_work() as uow:
                uow.session.execute(delete(table).where(table.c.key_hash == record,
                                                        table.c.state == "running"))
                uow.commit()
        except Exception as exc:  # the claim is taken over after ABANDONED_AFTER
            log.warning("could not forget an Idempotency-Key claim: %s", exc.__class__.__name__)


def request_from(data: dict) -> Request | None:
    """From a worker context's data (AMQP headers arrive as any type: check them)."""
    key, fingerprint = data.get(KEY_DATA), data.get(REQUEST_DATA)
    if not valid_key(key) or not isinstance(fingerprint, str) or not fingerprint:
        return None
    return Request(key, fingerprint[:64])


class IdempotencyContext(DependencyProvider):
    """`self.idempotency`: the Request of this worker's caller, or None without a key."""

    def get_dependency(self, worker_ctx):
        return request_from(worker_ctx.data)


def idempotent(table: Table, operation: str | None = None):
    """For a state-changing RPC `method(self, actor, ...)` of a service with `db` (Database)
    and `idempotency` (IdempotencyContext): with a key, its answer is recorded and replayed.
    Goes under @rpc."""
    def decorate(method):
        name = operation or method.__name__

        @functools.wraps(method)
        def once(self, actor, *args, **kwargs):
            request = self.idempotency
            if request is None:
                return method(self, actor, *args, **kwargs)
            return request.run(self.db, table, actor, name,
                               lambda: method(self, actor, *args, **kwargs))

        return once

    return decorate
