"""RPC with a deadline. nameko's in-service RpcProxy waits forever (pitfall 10)."""
from __future__ import annotations

import logging

import eventlet
from nameko.exceptions import UnknownService

from common.errors import ServiceTimeout, ServiceUnavailable
from common.outages import BROKER_ERRORS, broker_accepts_connections, unavailable

log = logging.getLogger(__name__)


class BrokerCircuit:
    """"The broker is down", shared by every call of a process: set by a call that found it
    unreachable, cleared by a background probe once its port accepts connections again.
    While it is set a call fails at once (503) instead of holding a worker for its whole
    deadline: under load those waits used every worker and answers came 37 s late."""

    PROBE_EVERY_SECONDS = 0.5

    def __init__(self):
        self.down_uri: str | None = None
        self.probe = None

    def is_open(self) -> bool:
        return self.down_uri is not None

    def trip(self, broker_uri: str) -> None:
        self.down_uri = broker_uri
        if self.probe is None:
            self.probe = eventlet.spawn(self._probe_until_back)

    def _probe_until_back(self) -> None:
        try:
            while self.down_uri is not None:
                eventlet.sleep(self.PROBE_EVERY_SECONDS)
                uri = self.down_uri
                if uri is None or broker_accepts_connections(uri, timeout=0.5):
                    self.down_uri = None
        finally:
            self.probe = None

    def reset(self) -> None:  # tests
        self.down_uri = None


broker_circuit = BrokerCircuit()
BROKER_DOWN = ConnectionRefusedError("no answer on its port")


def call(proxy, service: str, method: str, *args, timeout: float, broker_uri: str | None = None):
    """`proxy.method(*args)` answered within `timeout` seconds, or ServiceTimeout; with
    `broker_uri`, a call that timed out because the broker is down is ServiceUnavailable,
    and so is every call at once while `broker_circuit` says it is still down."""
    if broker_uri and broker_circuit.is_open():
        raise unavailable("the message broker", BROKER_DOWN, log)
    try:
        with eventlet.Timeout(timeout):
            return getattr(proxy, method).call_async(*args).result()
    except eventlet.Timeout:
        if broker_uri and not broker_accepts_connections(broker_uri, timeout=0.5):
            broker_circuit.trip(broker_uri)
            raise unavailable("the message broker", BROKER_DOWN, log) from None
        raise ServiceTimeout(f"{service} did not answer within {timeout:g}s",
                             details={"service": service}) from None
    except UnknownService:
        raise ServiceUnavailable(f"{service} is not running", details={"service": service}) from None
    except BROKER_ERRORS as exc:  # kombu's OperationalError included: a 503, never a 500
        if broker_uri:
            broker_circuit.trip(broker_uri)
        raise unavailable("the message broker", exc, log) from None


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
