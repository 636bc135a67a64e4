"""An unreachable broker or database is an outage, not a bug: callers get
`ServiceUnavailable` (503 with Retry-After at the gateway) and the log gets one WARNING per
dependency and interval instead of an ERROR traceback per request.

`is_database_outage` and `is_broker_outage` are the one place that decides which driver
errors mean "the dependency is not reachable right now" (worth retrying later) as opposed to
a bug or a refusal (worth a traceback, or a dead letter).
"""
from __future__ import annotations

import logging
import socket
import threading
import time

from amqp.exceptions import ConnectionError as AmqpConnectionError
from amqp.exceptions import RecoverableConnectionError
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from common.errors import ServiceUnavailable

log = logging.getLogger(__name__)

WARN_EVERY_SECONDS = 30.0
# what a client is told to wait (Retry-After) while a dependency is down
RETRY_AFTER_SECONDS = 5

BROKER_ERRORS = (KombuOperationalError, AmqpConnectionError, RecoverableConnectionError,
                 ConnectionError, socket.error, IOError)


def broker_accepts_connections(amqp_uri: str, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at the broker's address (no AMQP login:
    cheap enough to ask after every timed-out call)."""
    from kombu import Connection

    connection = Connection(amqp_uri)
    try:
        socket.create_connection((connection.hostname or "localhost", connection.port or 5672),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def is_database_outage(exc: BaseException) -> bool:
    """The database cannot be reached or dropped the connection (not: a constraint, a bad
    statement, a serialisation failure — those are answers about the work itself)."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def is_broker_outage(exc: BaseException) -> bool:
    return isinstance(exc, BROKER_ERRORS)


def is_outage(exc: BaseException) -> bool:
    return is_database_outage(exc) or is_broker_outage(exc)


class _Throttle:
    """At most one WARNING per key and interval; the lines in between are counted and
    reported with the next one."""

    def __init__(self, every: float = WARN_EVERY_SECONDS):
        self.every = every
        self.lock = threading.Lock()
        self.last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def warn(self, logger: logging.Logger, key: str, message: str, *args) -> None:
        now = time.monotonic()
        with self.lock:
            if now - self.last.get(key, -self.every) < self.every:
                self.suppressed[key] = self.suppressed.get(key, 0) + 1
                return
            self.last[key] = now
            repeated = self.suppressed.pop(key, 0)
        if repeated:
            message += " (%d more like it in the last %.0f s)"
            args += (repeated, self.every)
        logger.warning(message, *args)


throttle = _Throttle()


def warn_once(logger: logging.Logger, key: str, message: str, *args) -> None:
    """`logger.warning`, at most once per WARN_EVERY_SECONDS for this key."""
    throttle.warn(logger, key, message, *args)


def describe(exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{exc.__class__.__name__}: {first_line}" if first_line else exc.__class__.__name__


def unavailable(what: str, exc: BaseException, logger: logging.Logger = log) -> ServiceUnavailable:
    """The ServiceUnavailable to raise for this outage, warning once per interval."""
    warn_once(logger, what, "%s unreachable, answering 503 until it is back: %s", what, describe(exc))
    return ServiceUnavailable(f"{what} is unreachable; try again shortly",
                              details={"dependency": what, "retry_after_seconds": RETRY_AFTER_SECONDS})
