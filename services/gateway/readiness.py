"""What an orchestrator and a monitor ask the gateway process: /healthz (alive), /readyz (the
broker, the heartbeat queue, event consumers and every service reachable), /metrics and
the OpenAPI document."""
from __future__ import annotations

import time
from urllib.parse import quote

import eventlet
import requests
from kombu import Connection

from common import outages, rpc
from common.events import SUBSCRIPTIONS
from common.messaging import HEARTBEAT_QUEUE, subscription_queue_name
from common.metrics import metrics_response
from services.gateway import openapi
from services.gateway.http import ROUTES, route
from services.gateway.responses import json_response, liveness
from services.gateway.schemas import Readiness


BACKENDS = ("accounts", "tickets", "devices", "scheduler", "notifications")
READYZ_SECONDS = 0.9  # /readyz answers within a second, whatever is down
PING_SECONDS = 0.7  # a service's ping: its own deadline, inside READYZ_SECONDS


class ReadinessRoutes:
    """The probes: answered without a signed-in person."""

    @route("GET", "/healthz", summary="The gateway process is alive", tag="operations",
           roles=None, raw=True)
    def healthz(self, principal, request):
        return liveness()  # answered before any worker in fact (server.answer_without_a_worker)

    @route("GET", "/readyz", summary="Broker and every service (with its database) reachable",
           tag="operations", roles=None, raw=True, response=Readiness)
    def readyz(self, principal, request):
        # an orchestrator's probe gives up after about a second: every check shares one
        # deadline, and one not done by then says so (a ping's own RPC deadline does not
        # bound its publish while the broker is going away)
        pool = eventlet.GreenPool()
        bus = pool.spawn(self._bus_checks)
        pings = {service: pool.spawn(self._pings, service) for service in BACKENDS}
        checks = {}
        deadline = time.monotonic() + READYZ_SECONDS
        for service, ping in pings.items():
            checks[service] = self._within(ping, deadline, "unknown: no answer in time")
        checks.update(self._within(bus, deadline, {
            "broker": "unknown: no answer in time", "heartbeats": "unknown", "events": "unknown"}))
        ready = all(value == "ok" for value in checks.values())
        return json_response(200 if ready else 503,
                             {"status": "ready" if ready else "not_ready", "checks": checks})

    @staticmethod
    def _within(thread, deadline: float, late):
        """The greenthread's result, or `late` (and the thread killed) past the deadline."""
        try:
            with eventlet.Timeout(max(0.0, deadline - time.monotonic())):
                return thread.wait()
        except eventlet.Timeout:
            thread.kill()
            return late

    def _pings(self, service):
        try:
            self.call(service, "ping", timeout=min(PING_SECONDS, self.settings.rpc_timeout_seconds))
            return "ok"
        except Exception as exc:
            return getattr(exc, "code", exc.__class__.__name__)

    def _bus_checks(self) -> dict:
        """`broker`: reachable; `heartbeats`: ok, or why they are not flowing (see
        `_heartbeat_queue`); `events`: ok, or the subscriptions nobody consumes (a service
        whose consumers are down answers no event, even while its RPCs are answered by
        another replica). One connection answers all three."""
        if rpc.broker_circuit.is_open():  # answer at once while it is known to be down
            return {"broker": "unreachable: known down",
                    "heartbeats": "unknown: the broker is unreachable",
                    "events": "unknown: the broker is unreachable"}
        try:
            with Connection(self.settings.amqp_uri, connect_timeout=0.5) as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.1)
                try:
                    _, waiting, consumers = connection.channel().queue_declare(
                        queue=HEARTBEAT_QUEUE.name, passive=True)
                    heartbeats = self._heartbeat_queue(waiting, consumers)
                except Exception as exc:
                    heartbeats = f"unknown: {exc.__class__.__name__}"
                events = self._event_consumers(connection)
        except Exception as exc:
            if not outages.broker_accepts_connections(self.settings.amqp_uri, timeout=0.3):
                rpc.broker_circuit.trip(self.settings.amqp_uri)
            return {"broker": f"unreachable: {exc.__class__.__name__}",
                    "heartbeats": "unknown: the broker is unreachable",
                    "events": "unknown: the broker is unreachable"}
        return {"broker": "ok", "heartbeats": heartbeats, "events": events}

    @staticmethod
    def _event_consumers(connection) -> str:
        """ok, or `no_consumer: <service.handler>, ...` for subscription queues without one."""
        idle = []
        channel = connection.channel()
        for consumer, source, event_type, method in SUBSCRIPTIONS:
            queue = subscription_queue_name(consumer, source, event_type, method)
            try:
                _, _, consumers = channel.queue_declare(queue=queue, passive=True)
            except Exception:  # not declared (never migrated): nobody consumes it either
                channel, consumers = connection.channel(), 0
            if not consumers:
                idle.append(f"{consumer}.{method}")
        return "ok" if not idle else "no_consumer: " + ", ".join(sorted(set(idle)))

    def _heartbeat_queue(self, waiting: int, consumers: int) -> str:
        """ok, or why heartbeats are not flowing: nobody consumes their queue, or its oldest
        message has waited longer than HEARTBEAT_QUEUE_MAX_AGE_SECONDS (publishers stamp
        `timestamp`; the management API knows the head's)."""
        if not consumers:
            return "no_consumer"
        if not waiting:
            return "ok"
        base, vhost, credentials = self.settings.management_api
        try:
            queue = requests.get(f"{base}/queues/{quote(vhost, safe='')}/{quote(HEARTBEAT_QUEUE.name, safe='')}",
                                 auth=credentials, timeout=2).json()
            head = queue.get("head_message_timestamp")
        except (requests.RequestException, ValueError, AttributeError):
            return "ok"  # without the management API only the consumer can be checked
        age = time.time() - head if isinstance(head, (int, float)) else 0
        limit = self.settings.heartbeat_queue_max_age_seconds
        return "ok" if age <= limit else f"stalled: the oldest heartbeat has waited {age:.0f} s (limit {limit} s)"

    @route("GET", "/metrics", summary="Prometheus metrics of the gateway process",
           tag="operations", roles=None, raw=True)
    def serve_metrics(self, principal, request):
        return metrics_response()

    @route("GET", "/api/openapi.json", summary="This API, as OpenAPI 3", tag="operations",
           roles=None, raw=True)
    def openapi_document(self, principal, request):
        return json_response(200, openapi.document(ROUTES))
