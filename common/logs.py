"""One JSON object per log line, with the service, entrypoint and call id of the worker."""
from __future__ import annotations

import logging
import sys
import time

import orjson
from eventlet.corolocal import local

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


def configure_logging(service: str, level: str = "INFO") -> None:
    _service_name["value"] = service
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("kombu", "nameko", "eventlet.wsgi.server"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
    # py-amqp warns on every basic.return racing a channel close (an RPC to a service
    # that is not running, which the gateway already reports as 503)
    logging.getLogger("amqp").setLevel(logging.ERROR)
