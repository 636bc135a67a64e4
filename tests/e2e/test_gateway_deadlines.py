"""Every RPC from the gateway has a deadline (pitfall 10): a service that is stopped but
whose queue exists answers 504; one that was never started answers 503. Never a hang."""
import pytest
from kombu import Connection, Exchange, Queue

from tests.harness import Client, RabbitVhost, System


@pytest.fixture
def lonely_gateway(tmp_path):
    vhost = RabbitVhost.create()
    gateway = System(database_url=None, amqp_uri=vhost.amqp_uri, workdir=tmp_path,
                     services=("gateway",), extra_env={"RPC_TIMEOUT_SECONDS": "1"})
    gateway.start_service("gateway")
    gateway.wait_ready(60)
    yield gateway, vhost
    gateway.stop()
    vhost.delete()


def test_stopped_service_is_504_and_missing_service_is_503(lonely_gateway):
    gateway, vhost = lonely_gateway
    client = Client(gateway.base_url)
    sign_in = {"email": "a@example.com", "password": "whatever-1"}

    missing = client.post("/api/auth/sign-in", json=sign_in)
    assert missing.status_code == 503
    assert missing.json()["error"]["code"] == "service_unavailable"

    # a queue with no consumer: what a crashed or stopped accounts service leaves behind
    with Connection(vhost.amqp_uri) as connection:
        queue = Queue("rpc-accounts", Exchange("nameko-rpc", type="topic", durable=True),
                      routing_key="accounts.*", durable=True)
        queue(connection.channel()).declare()
    slow = client.post("/api/auth/sign-in", json=sign_in)
    assert slow.status_code == 504
    assert slow.json()["error"]["code"] == "service_timeout"
    assert slow.elapsed.total_seconds() < 5

    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"] == "ok"
    assert ready.json()["checks"]["accounts"] == "service_timeout"
