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

    # the console, with a session cookie it cannot check: a readable page, not a 500
    page = client.get("/chamados", cookies={"chamados_sessao": "x" * 43})
    assert page.status_code == 503, page.text[:300]
    assert page.headers["Content-Type"].startswith("text/html")
    assert "Um serviço não respondeu" in page.text and "Traceback" not in page.text

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


def test_readiness_says_when_heartbeats_are_not_flowing(lonely_gateway):
    """No consumer on the heartbeat queue, then one that takes a message and never settles
    it while older ones wait behind: both are 'not ready', with the reason."""
    import time
    from common.messaging import HEARTBEAT_EXCHANGE, HEARTBEAT_QUEUE
    from tests.harness import eventually

    gateway, vhost = lonely_gateway
    client = Client(gateway.base_url)
    with Connection(vhost.amqp_uri) as connection:
        HEARTBEAT_QUEUE(connection.channel()).declare()
        assert client.get("/readyz").json()["checks"]["heartbeats"] == "no_consumer"

        producer = connection.Producer()
        an_hour_ago = int(time.time()) - 3600
        for number in range(3):
            producer.publish(b"{}", exchange=HEARTBEAT_EXCHANGE, routing_key=HEARTBEAT_QUEUE.routing_key,
                             timestamp=an_hour_ago, message_id=f"stuck-{number}", delivery_mode=2)
        stuck_channel = connection.channel()
        stuck_channel.basic_qos(0, 1, False)
        held = []
        with connection.Consumer([HEARTBEAT_QUEUE], channel=stuck_channel, on_message=held.append, no_ack=False):
            deadline = time.monotonic() + 5
            while not held and time.monotonic() < deadline:
                try:
                    connection.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
            assert held
            # the management API refreshes queue statistics every few seconds
            def stalled():
                response = client.get("/readyz")
                check = response.json()["checks"]["heartbeats"]
                return check if response.status_code == 503 and check.startswith("stalled") else None

            verdict = eventually(stalled, timeout=20, interval=1)
            assert verdict, client.get("/readyz").json()["checks"]["heartbeats"]
            assert "limit 120 s" in verdict


def test_readiness_names_the_event_subscriptions_nobody_consumes(lonely_gateway):
    """A service whose consumers are down answers no event: not ready, with who is missing;
    a subscription with a consumer is not named."""
    from nameko.standalone.events import get_event_exchange

    from common.events import SUBSCRIPTIONS
    from common.messaging import subscription_queue_name

    gateway, vhost = lonely_gateway
    client = Client(gateway.base_url)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    check = ready.json()["checks"]["events"]
    assert check.startswith("no_consumer: ") and "tickets.on_user_updated" in check

    consumer, source, event_type, method = SUBSCRIPTIONS[0]
    queue = Queue(subscription_queue_name(consumer, source, event_type, method),
                  get_event_exchange(source, {}), routing_key=event_type, durable=True)
    with Connection(vhost.amqp_uri) as connection:
        with connection.Consumer([queue], on_message=lambda message: None):
            listening = client.get("/readyz").json()["checks"]["events"]
    assert f"{consumer}.{method}," not in listening + "," and "tickets.on_user_updated" in listening
