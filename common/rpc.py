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


def together(**calls):
    """Run independent calls at once (each is a function of no arguments) and return their
    results by name: a console page or the health snapshot waits for its slowest call, not
    for the sum of them. The first error, if any, is raised once all have finished."""
    pool = eventlet.GreenPool(len(calls) or 1)

    def attempt(call):
        try:
            return call(), None
        except Exception as exc:  # handed back, not raised inside the green thread
            return None, exc

    threads = {name: pool.spawn(attempt, call) for name, call in calls.items()}
    results = {name: thread.wait() for name, thread in threads.items()}
    failed = next((error for _, error in results.values() if error is not None), None)
    if failed is not None:
        raise failed
    return {name: value for name, (value, _) in results.items()}
