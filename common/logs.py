"""One JSON object per log line, with the service, entrypoint and call id of the worker."""
from __future__ import annotations

import logging
import sys
import time

import orjson
from eventlet.corolocal import local
from nameko.rpc import Rpc

from common.errors import (BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge,
                           ServiceUnavailable, TooManyRequests, Unauthorized, ValidationFailed)
from common.outages import is_outage

_context = local()  # per green thread: each nameko worker has its own
_service_name = {"value": None}


def bind_worker_context(entrypoint: str, call_id: str) -> None:
    _context.entrypoint = entrypoint
    _context.call_id = call_id


def clear_worker_context() -> None:
    _context.__dict__.clear()


class JsonFormatter(logging.Formatter):
    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": _service_name["value"],
            "logger": record.name,
            "message": record.getMessage(),
        }
        entrypoint = getattr(_context, "entrypoint", None)
        if entrypoint:
            entry["entrypoint"] = entrypoint
            entry["call_id"] = getattr(_context, "call_id", None)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


# The domain errors that answer a request with a 4xx: the caller's mistake or a rule saying
# no (wrong password, taken email, invalid transition, a sign-in locked after failures),
# not a failure of ours.
CLIENT_ERRORS = (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge,
                 ValidationFailed, TooManyRequests)


class ClientErrorLine(logging.Filter):
    """nameko logs every exception an entrypoint raises with its traceback, the expected
    ones too (`nameko.containers`: "(expected) error handling worker …", WARNING, exc_info):
    a normal session wrote thousands of tracebacks for 401s and 404s. This filter, on that
    logger, turns the record of an RPC refused with a 4xx domain error into one INFO line
    naming the method and the error, without a traceback. Everything else passes untouched:
    unexpected exceptions, the 5xx domain errors (a deadline missed calling another
    service), and event handlers' errors (their message is retried or dead-lettered: a
    failure to look into). An outage (ServiceUnavailable, an unreachable database or
    broker) is one INFO line too, from an RPC or an event handler alike. A filter rather than a container or entrypoint subclass, because
    nameko's container writes the line and every service configures logging here."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not isinstance(record.args, tuple) or not record.args:
            return True
        worker_ctx = record.args[0]
        entrypoint = getattr(worker_ctx, "entrypoint", None)
        if isinstance(exc, CLIENT_ERRORS) and isinstance(entrypoint, Rpc):
            verdict = "refused"
        elif isinstance(exc, ServiceUnavailable) or is_outage(exc):
            # an outage: `common.outages` warned once for all the requests and events it
            # fails, and an event's message is retried until it is over
            verdict = "not done during an outage"
        else:
            return True
        record.msg, record.args = f"%s.%s {verdict}: %s", (
            getattr(worker_ctx, "service_name", "?"), getattr(entrypoint, "method_name", "?"), exc)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return logging.getLogger().isEnabledFor(logging.INFO)  # LOG_LEVEL=WARNING: not shown


def configure_logging(service: str, level: str = "INFO") -> None:
    _service_name["value"] = service
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    containers = logging.getLogger("nameko.containers")
    containers.filters[:] = [f for f in containers.filters if not isinstance(f, ClientErrorLine)]
    containers.addFilter(ClientErrorLine())
    for noisy in ("kombu", "nameko", "eventlet.wsgi.server"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
    # py-amqp warns on every basic.return racing a channel close (an RPC to a service
    # that is not running, which the gateway already reports as 503)
    logging.getLogger("amqp").setLevel(logging.ERROR)
