"""The nameko dependency providers of the gateway: its settings, the worker's data (sent as
RPC headers), the request's arrival time, queue gauges and the heartbeat publisher."""
from __future__ import annotations

import time

from kombu import Connection
from kombu.pools import producers
from nameko.extensions import DependencyProvider
from werkzeug.wrappers import Request

from common import outages, rpc
from common.config import Settings
from common.messaging import HEARTBEAT_EXCHANGE, HEARTBEAT_QUEUE, queue_depth_families
from common.metrics import register_collector
from services.gateway.server import ARRIVED_AT_ENVIRON_KEY


class SettingsProvider(DependencyProvider):
    def setup(self):
        self.settings = Settings.from_mapping(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.settings


class WorkerData(DependencyProvider):
    """The worker context's data: nameko sends it along as the headers of every RPC the
    worker makes (the callee finds it in its own worker context)."""

    def get_dependency(self, worker_ctx):
        return worker_ctx.data


class RequestArrival(DependencyProvider):
    """When the HTTP request this worker answers was read whole (time.monotonic()), or None
    outside a request: its calls share one deadline from then, so the time it waited for a
    free worker counts too (issue 26: answers came 15–27 s late after a broker outage)."""

    def get_dependency(self, worker_ctx):
        request = next((arg for arg in worker_ctx.args if isinstance(arg, Request)), None)
        return None if request is None else request.environ.get(ARRIVED_AT_ENVIRON_KEY)


class BusGauges(DependencyProvider):
    """Queue depths on the gateway's /metrics (the gateway already talks to the broker)."""

    def setup(self):
        amqp_uri = Settings.from_mapping(self.container.config).amqp_uri
        register_collector("bus:queues", lambda: queue_depth_families(amqp_uri))


class HeartbeatPublisher(DependencyProvider):
    """Publishes agents' HTTP heartbeats to the same durable exchange AMQP agents use,
    persistent and confirmed by the broker before the route answers 202."""

    def setup(self):
        self.amqp_uri = Settings.from_mapping(self.container.config).amqp_uri

    def get_dependency(self, worker_ctx):
        return self.publish

    def publish(self, body: bytes, token: str, message_id: str) -> None:
        # known down: fail at once rather than hold a worker through retries (common/rpc.py)
        if rpc.broker_circuit.is_open():
            raise rpc.BROKER_DOWN
        try:
            self._publish(body, token, message_id)
        except Exception:
            if not outages.broker_accepts_connections(self.amqp_uri, timeout=0.5):
                rpc.broker_circuit.trip(self.amqp_uri)
            raise

    def _publish(self, body: bytes, token: str, message_id: str) -> None:
        with Connection(self.amqp_uri, connect_timeout=2,
                        transport_options={"confirm_publish": True}) as connection:
            with producers[connection].acquire(block=True, timeout=5) as producer:
                producer.publish(body, exchange=HEARTBEAT_EXCHANGE, routing_key=HEARTBEAT_QUEUE.routing_key,
                                 content_type="application/json", content_encoding="utf-8",
                                 delivery_mode=2, message_id=message_id,
                                 timestamp=int(time.time()),  # the queue's age: /readyz
                                 headers={"authorization": token}, declare=[HEARTBEAT_QUEUE],
                                 retry=True, retry_policy={"max_retries": 1, "interval_start": 0.2})
