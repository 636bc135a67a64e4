"""RPC with a deadline. nameko's in-service RpcProxy waits forever (pitfall 10)."""
from __future__ import annotations

import logging
import socket

import eventlet
from nameko.exceptions import UnknownService

from common.errors import ServiceTimeout, ServiceUnavailable

log = logging.getLogger(__name__)


def call(proxy, service: str, method: str, *args, timeout: float):
    try:
        with eventlet.Timeout(timeout):
            return getattr(proxy, method).call_async(*args).result()
    except eventlet.Timeout:
        raise ServiceTimeout(f"{service} did not answer within {timeout:g}s",
                             details={"service": service}) from None
    except UnknownService:
        raise ServiceUnavailable(f"{service} is not running", details={"service": service}) from None
    except (socket.error, IOError) as exc:
        log.warning("broker unreachable calling %s.%s: %s", service, method, exc)
        raise ServiceUnavailable("the message broker is unreachable") from None
