"""The agents' broker user (common/broker_users.py), made as `chamados migrate` makes it, on a
vhost of the test's own: it can publish heartbeats and take answers by direct reply-to, and is
refused everything else — consuming the heartbeat queue, publishing anywhere else, declaring
any queue (named or server-named, durable or not), reaching another vhost."""
import uuid
from urllib.parse import quote

import pika
import pytest
import requests
from pika.exceptions import ChannelClosedByBroker, ProbableAccessDeniedError

from common.broker_users import ensure_agent_user
from common.config import Settings
from common.contracts.devices import HEARTBEAT_EXCHANGE, HEARTBEAT_QUEUE
from common.messaging import declare_bus
from tests.harness import MANAGEMENT_API, RABBIT_AUTH, RabbitVhost


@pytest.fixture
def agent_access():
    vhost = RabbitVhost.create()
    user, password = f"chamados-agent-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    settings = Settings.from_mapping({"AMQP_URI": vhost.amqp_uri, "RABBIT_MANAGEMENT_URL": MANAGEMENT_API,
                                      "AGENT_AMQP_USER": user, "AGENT_AMQP_PASSWORD": password})
    try:
        declare_bus(vhost.amqp_uri)  # the heartbeat exchange and queue, as the services declare them
        assert ensure_agent_user(settings) == user
        assert ensure_agent_user(settings) == user  # again (every `chamados migrate`): no error
        uri = vhost.amqp_uri.replace("guest:guest@", f"{quote(user)}:{password}@")
        yield uri, vhost
    finally:
        requests.delete(f"{MANAGEMENT_API}/users/{quote(user, safe='')}", auth=RABBIT_AUTH, timeout=10)
        vhost.delete()


def channel(uri: str):
    connection = pika.BlockingConnection(pika.URLParameters(uri))
    opened = connection.channel()
    opened.confirm_delivery()
    return connection, opened


def refused(action) -> int:
    """The AMQP reply code the broker closed the channel with (403: access refused)."""
    with pytest.raises(ChannelClosedByBroker) as closed:
        action()
    return closed.value.reply_code


def test_the_agents_user_may_publish_heartbeats_and_nothing_else(agent_access):
    uri, vhost = agent_access
    connection, ch = channel(uri)
    try:
        # publishing to the heartbeat exchange is allowed (a key nothing is bound to: this test's
        # message is confirmed and dropped, it never reaches a consumer)
        ch.basic_publish(HEARTBEAT_EXCHANGE, "nowhere", b"{}")
        # answers by direct reply-to: no queue of its own
        ch.basic_consume("amq.rabbitmq.reply-to", lambda *args: None, auto_ack=True)
        assert refused(lambda: ch.basic_get(HEARTBEAT_QUEUE)) == 403  # nor read heartbeats
        connection.close()

        for action in (lambda c: c.basic_publish("", HEARTBEAT_QUEUE, b"{}"),  # default exchange
                       lambda c: c.basic_publish("amq.topic", "anything", b"{}"),  # a built-in exchange
                       lambda c: c.queue_declare("agent-owned-queue"),
                       # a server-named queue, durable: one per call, without limit, until refused
                       lambda c: c.queue_declare("", durable=True),
                       lambda c: c.queue_declare("", exclusive=True, auto_delete=True),
                       lambda c: c.exchange_declare("agent-exchange", "fanout"),
                       lambda c: c.queue_purge(HEARTBEAT_QUEUE)):
            connection, ch = channel(uri)
            assert refused(lambda: action(ch)) == 403
            connection.close()
    finally:
        if connection.is_open:
            connection.close()
    other_vhost = uri.rsplit("/", 1)[0] + "/%2F"
    with pytest.raises(ProbableAccessDeniedError):
        pika.BlockingConnection(pika.URLParameters(other_vhost))


def test_the_agents_user_is_made_from_settings_read_from_the_environment(monkeypatch, tmp_path):
    """As a deployment configures it: AGENT_AMQP_USER in the environment, the password as a
    Swarm secret file; `chamados migrate`'s ensure_agent_user then makes a user that can log in."""
    from common.config import settings_from_env

    vhost = RabbitVhost.create()
    user, password = f"chamados-agent-env-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    secret = tmp_path / "agent_amqp_password"
    secret.write_text(password + "\n")
    monkeypatch.delenv("CHAMADOS_CONFIG", raising=False)
    monkeypatch.setenv("AMQP_URI", vhost.amqp_uri)
    monkeypatch.setenv("RABBIT_MANAGEMENT_URL", MANAGEMENT_API)
    monkeypatch.setenv("AGENT_AMQP_USER", user)
    monkeypatch.setenv("AGENT_AMQP_PASSWORD_FILE", str(secret))
    monkeypatch.delenv("AGENT_AMQP_PASSWORD", raising=False)
    agent_uri = vhost.amqp_uri.replace("guest:guest@", f"{quote(user)}:{password}@")
    monkeypatch.setenv("AGENT_AMQP_URI", agent_uri)
    try:
        settings = settings_from_env()
        assert settings.agent_amqp_uri == agent_uri  # what registration answers agents
        declare_bus(vhost.amqp_uri)
        assert ensure_agent_user(settings) == user
        connection = pika.BlockingConnection(pika.URLParameters(agent_uri))
        assert connection.is_open
        connection.close()
    finally:
        requests.delete(f"{MANAGEMENT_API}/users/{quote(user, safe='')}", auth=RABBIT_AUTH, timeout=10)
        vhost.delete()
