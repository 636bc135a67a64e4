"""Looking into the dead-letter queue, and acting on what is there: list, show, replay, purge.

Messages parked by `common.messaging` (`dead_letter()`, the batched consumer) wait in the
durable queue `chamados.dead-letter` with their reason, original queue, attempt count and
time in their headers. Operators reach them with `chamados dlq …` (chamados/cli.py), tenant
admins with `/api/admin/dead-letters` (services/gateway/deadletters.py); both come here.

How the queue is read without losing anything: messages are taken with `basic_get` WITHOUT
acknowledging them, on one channel, so each is seen once per scan; closing that channel
gives every unacknowledged message back to the queue, in its place. Only what a replay or a
purge settles is acknowledged. The work is bounded: a scan reads at most `scan_limit`
messages (10,000 by default) and says whether it saw the whole queue. While a scan holds
messages, another scan does not see them (nothing consumes this queue otherwise).

Each parked message has a stable id: its `x-dead-letter-id` header (a uuid4 hex, set by
`parking_headers`), or, for a message parked before that header existed, the first 32 hex
digits of the SHA-256 of its body, reason and parking time.

A replay publishes the message to its ORIGINAL queue (default exchange, routing key =
`x-original-queue`, persistent, mandatory, publisher confirm) with its original headers
(the parking headers removed, the attempt count reset), and only after the broker confirmed
it acknowledges the parked copy. A queue that does not exist (checked with a passive
declare), an unroutable or refused publish, fails that message, which stays parked. A
broker lost between the confirm and the acknowledgement leaves the message both replayed and
parked: consumers are idempotent (pitfall 7), so replaying it again later is harmless.

No nameko here: plain kombu/py-amqp, usable from a command line or a gateway worker.
"""
from __future__ import annotations

import base64
import hashlib
import re
import socket
from dataclasses import dataclass, field
from typing import Callable

import amqp
import orjson
from amqp.exceptions import MessageNacked, NotFound
from kombu import Connection

from common.messaging import ATTEMPTS_HEADER, DEAD_LETTER_QUEUE

DEFAULT_SCAN_LIMIT = 10_000
DEFAULT_LIST_LIMIT = 100
BODY_PREVIEW_BYTES = 64 * 1024
CONFIRM_TIMEOUT_SECONDS = 30
CONNECT_TIMEOUT_SECONDS = 5
ID_HEADER = "x-dead-letter-id"
LETTER_ID = re.compile(r"^[0-9a-f]{32}$")
# headers the parking added: none of them goes back with a replayed message
PARKING_HEADERS = ("x-original-queue", "x-dead-lettered-at", "x-dropped-headers", ATTEMPTS_HEADER,
                   "x-body-truncated-from", "x-body-sha256")
# the properties a replayed message keeps (user_id would have to be the replayer's own)
KEPT_PROPERTIES = ("content_type", "content_encoding", "message_id", "correlation_id", "reply_to",
                   "timestamp", "type", "app_id", "priority")


class BrokerUnavailable(Exception):
    """The broker could not be reached, refused us, or went away mid-way."""


class BadSelection(ValueError):
    """A replay or purge that does not say which messages (a purge of everything needs `all`)."""


def normalize_id(letter_id) -> str | None:
    """The id in its canonical form (32 lowercase hex digits), or None if it cannot be one."""
    if not isinstance(letter_id, str):
        return None
    letter_id = letter_id.strip().lower()
    return letter_id if LETTER_ID.match(letter_id) else None


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _json_safe(value):
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


@dataclass
class Letter:
    """One parked message as read from the queue."""

    id: str
    queue: str | None
    reason: str
    attempts: int | None
    dead_lettered_at: str | None
    tenant_id: str | None
    headers: dict
    properties: dict
    body: bytes
    body_bytes: int = 0

    @classmethod
    def of(cls, message) -> "Letter":
        properties = dict(message.properties or {})
        headers = properties.pop("application_headers", None)
        headers = dict(headers) if isinstance(headers, dict) else {}
        body = message.body
        if isinstance(body, str):  # a channel that decoded it after all
            body = body.encode(properties.get("content_encoding") or "utf-8", errors="surrogateescape")
        body = bytes(body or b"")
        reason = _text(headers.get("x-dead-letter-reason")) or ""
        parked_at = _text(headers.get("x-dead-lettered-at"))
        letter_id = normalize_id(_text(headers.get(ID_HEADER)))
        if letter_id is None:  # parked before the id header existed
            letter_id = hashlib.sha256(body + b"\0" + reason.encode("utf-8", "replace") + b"\0"
                                       + (parked_at or "").encode()).hexdigest()[:32]
        attempts = headers.get(ATTEMPTS_HEADER)
        return cls(id=letter_id, queue=_text(headers.get("x-original-queue")), reason=reason,
                   attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else None,
                   dead_lettered_at=parked_at, tenant_id=tenant_of(body), headers=headers,
                   properties=properties, body=body, body_bytes=len(body))

    def summary(self) -> dict:
        return {"id": self.id, "queue": self.queue, "reason": self.reason, "attempts": self.attempts,
                "dead_lettered_at": self.dead_lettered_at, "tenant_id": self.tenant_id,
                "body_bytes": self.body_bytes, "content_type": _text(self.properties.get("content_type")),
                "message_id": _text(self.properties.get("message_id"))}

    def detail(self, max_body: int = BODY_PREVIEW_BYTES) -> dict:
        """Everything about it: headers, properties, and the body as text when it is UTF-8
        JSON, else base64; either cut at about `max_body` bytes (`body_truncated`)."""
        encoding, text, truncated = "base64", None, False
        try:
            decoded = self.body.decode("utf-8")
            orjson.loads(self.body)
            encoding = "json"
            truncated = len(decoded) > max_body
            text = decoded[:max_body]
        except (UnicodeDecodeError, orjson.JSONDecodeError):
            cut = max_body * 3 // 4
            truncated = len(self.body) > cut
            text = base64.b64encode(self.body[:cut]).decode()
        properties = {key: _json_safe(value) for key, value in self.properties.items()
                      if value is not None}
        return {**self.summary(),
                "headers": {str(key): _json_safe(value) for key, value in self.headers.items()},
                "properties": properties, "body": text, "body_encoding": encoding,
                "body_truncated": truncated}

    def replay_headers(self) -> dict:
        """Its headers as they were before it was parked: the parking's removed (the attempt
        count with them: a replayed message starts again from its first attempt)."""
        return {key: value for key, value in self.headers.items()
                if not str(key).startswith("x-dead-letter-") and key not in PARKING_HEADERS}


def tenant_of(body: bytes) -> str | None:
    """The `tenant_id` of a JSON object body (every event carries one), or None."""
    if b'"tenant_id"' not in body:
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    tenant_id = document.get("tenant_id") if isinstance(document, dict) else None
    return tenant_id.lower() if isinstance(tenant_id, str) and tenant_id else None


@dataclass(frozen=True)
class Selection:
    """Which parked messages an action is about: ids; or a queue and/or reason filter; or
    `everything` — nothing at all is never read as everything."""

    ids: frozenset = frozenset()
    queue: str | None = None
    reason: str | None = None
    everything: bool = False

    @classmethod
    def of(cls, ids=(), queue=None, reason=None, everything=False) -> "Selection":
        ids = list(ids or ())
        normalized = [normalize_id(letter_id) for letter_id in ids]
        bad = [letter_id for letter_id, good in zip(ids, normalized) if good is None]
        if bad:
            raise BadSelection(f"not a dead-letter id: {bad[0]!r} (32 hex digits)")
        queue, reason = queue or None, reason or None
        if normalized and (queue or reason or everything):
            raise BadSelection("give ids, or a queue/reason filter, or all — not together")
        if everything and (queue or reason):
            raise BadSelection("all takes no queue or reason filter")
        if not (normalized or queue or reason or everything):
            raise BadSelection("say which messages: ids, a queue and/or a reason, or all")
        return cls(frozenset(normalized), queue, reason, bool(everything))

    def matches(self, letter: Letter) -> bool:
        if self.ids:
            return letter.id in self.ids
        return matches(letter, self.queue, self.reason)


def matches(letter: Letter, queue: str | None, reason: str | None) -> bool:
    """Original queue exactly; reason as a case-insensitive substring (so a prefix too)."""
    if queue is not None and letter.queue != queue:
        return False
    return reason is None or reason.lower() in letter.reason.lower()


# --- the broker ------------------------------------------------------------------------------

class _Scan:
    """Reads the dead-letter queue once, unacknowledged, on a channel of its own."""

    def __init__(self, connection, scan_limit: int):
        self.scan_limit = max(0, int(scan_limit))
        self.scanned, self.exhausted = 0, False
        self.channel = connection.channel()
        self.channel.auto_decode = False  # the body's bytes as they were published
        try:
            _, self.depth, _ = self.channel.queue_declare(queue=DEAD_LETTER_QUEUE.name, passive=True)
        except NotFound:  # never declared in this vhost: nothing was ever parked
            self.channel, self.depth, self.exhausted = None, 0, True

    def __iter__(self):
        while self.channel is not None and self.scanned < self.scan_limit:
            message = self.channel.basic_get(queue=DEAD_LETTER_QUEUE.name, no_ack=False)
            if message is None:
                self.exhausted = True
                return
            self.scanned += 1
            yield message.delivery_tag, Letter.of(message)

    @property
    def complete(self) -> bool:
        """Whether every message that waited when the scan began was seen."""
        return self.exhausted or self.scanned >= self.depth

    def ack(self, delivery_tag) -> None:
        self.channel.basic_ack(delivery_tag)

    def report(self) -> dict:
        return {"scanned": self.scanned, "queue_depth": self.depth, "complete": self.complete}


def _with_broker(amqp_uri: str, work):
    """`work(connection)`, with every way the broker can fail as BrokerUnavailable; on the
    way out the connection closes, which gives back whatever was read and not settled."""
    connection = Connection(amqp_uri, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    failures = connection.connection_errors + connection.channel_errors + (OSError, socket.timeout)
    try:
        try:
            connection.connect()
        except Exception as exc:
            raise BrokerUnavailable(f"the message broker is unreachable: {exc.__class__.__name__}: {exc}") from None
        try:
            return work(connection)
        except BrokerUnavailable:
            raise
        except failures as exc:
            raise BrokerUnavailable(f"the message broker failed: {exc.__class__.__name__}: {exc}") from None
    finally:
        try:
            connection.release()
        except Exception:  # already gone: the broker gives the messages back itself
            pass


Visible = Callable[[Letter], bool]


def _visible(letter: Letter, visible: Visible | None) -> bool:
    return visible is None or visible(letter)


@dataclass
class Listing:
    items: list
    matched: int
    scanned: int
    queue_depth: int
    complete: bool

    def as_dict(self) -> dict:
        return {"items": [letter.summary() for letter in self.items], "matched": self.matched,
                "scanned": self.scanned, "queue_depth": self.queue_depth, "complete": self.complete}


def list_letters(amqp_uri: str, *, queue: str | None = None, reason: str | None = None,
                 limit: int = DEFAULT_LIST_LIMIT, visible: Visible | None = None,
                 scan_limit: int = DEFAULT_SCAN_LIMIT) -> Listing:
    """The first `limit` matching messages, oldest first, and how many matched in all;
    every message stays where it was."""
    def work(connection):
        scan, items, matched = _Scan(connection, scan_limit), [], 0
        for _, letter in scan:
            if _visible(letter, visible) and matches(letter, queue, reason):
                matched += 1
                if len(items) < limit:
                    letter.body = b""  # a list shows its size only: memory stays bounded
                    items.append(letter)
        return Listing(items, matched, **scan.report())

    return _with_broker(amqp_uri, work)


def get_letter(amqp_uri: str, letter_id: str, *, visible: Visible | None = None,
               scan_limit: int = DEFAULT_SCAN_LIMIT) -> Letter | None:
    """The message with that id (None if it is not there, or not visible); it stays parked."""
    wanted = normalize_id(letter_id)
    if wanted is None:
        return None

    def work(connection):
        for _, letter in _Scan(connection, scan_limit):
            if letter.id == wanted and _visible(letter, visible):
                return letter
        return None

    return _with_broker(amqp_uri, work)


@dataclass
class Outcome:
    """What a replay or purge did: settled ids, failed ones (still parked) with why, ids
    asked for that were not found, and how much of the queue was read."""

    action: str
    done: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    not_found: list = field(default_factory=list)
    scanned: int = 0
    queue_depth: int = 0
    complete: bool = True

    def as_dict(self) -> dict:
        return {"action": self.action, "matched": len(self.done) + len(self.failed),
                self.action: self.done, "failed": self.failed, "not_found": self.not_found,
                "scanned": self.scanned, "queue_depth": self.queue_depth, "complete": self.complete}


class _Replayer:
    """Publishes to original queues on a confirming channel; checks each queue exists first."""

    def __init__(self, connection):
        self.connection = connection
        self.publishing = connection.channel()
        self.publishing.events["basic_return"].add(self._returned)
        self.returned = None
        self.checking = None
        self.queues: dict[str, str | None] = {}  # queue -> None (exists) or why not

    def _returned(self, exc, exchange, routing_key, message):
        self.returned = f"the broker returned it as unroutable ({exc})"

    def queue_problem(self, queue: str) -> str | None:
        if queue not in self.queues:
            if self.checking is None:
                self.checking = self.connection.channel()
            try:
                self.checking.queue_declare(queue=queue, passive=True)
                self.queues[queue] = None
            except NotFound:  # the broker closed that channel: the next check opens another
                self.checking = None
                self.queues[queue] = (f"queue {queue!r} does not exist: declare it first "
                                      "(`chamados migrate` declares every consumer's queue)")
        return self.queues[queue]

    def replay(self, letter: Letter) -> str | None:
        """None once the broker confirmed the message on its original queue, else why not."""
        if not letter.queue:
            return "it has no x-original-queue header: nowhere to send it back"
        if letter.queue == DEAD_LETTER_QUEUE.name:
            return "its original queue is the dead-letter queue itself"
        if "x-body-truncated-from" in letter.headers:
            return (f"its body was cut when it was parked ({letter.headers['x-body-truncated-from']} "
                    "bytes, over the parking bound): only its first part was kept")
        if "authorization-sha256" in letter.headers:
            return ("its credential was not kept (only its SHA-256): it cannot be authenticated "
                    "again; the sender must send it anew")
        problem = self.queue_problem(letter.queue)
        if problem:
            return problem
        properties = {key: letter.properties[key] for key in KEPT_PROPERTIES
                      if letter.properties.get(key) is not None}
        message = amqp.Message(letter.body, application_headers=letter.replay_headers(),
                               delivery_mode=2, **properties)
        self.returned = None
        try:
            self.publishing.basic_publish_confirm(message, exchange="", routing_key=letter.queue,
                                                  mandatory=True,
                                                  confirm_timeout=CONFIRM_TIMEOUT_SECONDS)
        except MessageNacked:
            return "the broker refused it (nack)"
        return self.returned


def _settle(amqp_uri: str, selection: Selection, action: str, *, visible: Visible | None,
            scan_limit: int) -> Outcome:
    def work(connection):
        scan = _Scan(connection, scan_limit)
        replayer = _Replayer(connection) if action == "replayed" else None
        outcome, found = Outcome(action), set()
        for delivery_tag, letter in scan:
            if not (_visible(letter, visible) and selection.matches(letter)):
                continue
            found.add(letter.id)
            problem = replayer.replay(letter) if replayer is not None else None
            if problem:
                outcome.failed.append({"id": letter.id, "queue": letter.queue, "error": problem})
            else:
                scan.ack(delivery_tag)  # only now: the replayed copy is confirmed
                outcome.done.append(letter.id)
            if selection.ids and found >= selection.ids:
                break
        outcome.not_found = sorted(selection.ids - found)
        report = scan.report()
        outcome.scanned, outcome.queue_depth = report["scanned"], report["queue_depth"]
        outcome.complete = report["complete"] or bool(selection.ids and found >= selection.ids)
        return outcome

    return _with_broker(amqp_uri, work)


def replay(amqp_uri: str, selection: Selection, *, visible: Visible | None = None,
           scan_limit: int = DEFAULT_SCAN_LIMIT) -> Outcome:
    """Put the selected messages back on their original queues (see the module's notes)."""
    return _settle(amqp_uri, selection, "replayed", visible=visible, scan_limit=scan_limit)


def purge(amqp_uri: str, selection: Selection, *, visible: Visible | None = None,
          scan_limit: int = DEFAULT_SCAN_LIMIT) -> Outcome:
    """Acknowledge (drop for good) the selected messages."""
    return _settle(amqp_uri, selection, "purged", visible=visible, scan_limit=scan_limit)
