"""Bad input on the bus, as a hostile desktop or a broken publisher would send it.

Every desktop holds the agents' broker credentials, so anyone can publish a heartbeat with any
properties. The services must not be made to publish anywhere on the sender's behalf (a
heartbeat's `reply_to` naming a service's queue: a confused deputy), and no message in a
service's own RPC or event queue — undecodable, of a type nobody accepts, without a reply
queue, of the wrong shape — may stop or crash-loop that service: it is dead-lettered with the
reason and the service goes on answering.

A system of this module's own (vhost, database, processes): a regression here crash-loops
services, and must not take the shared system of the other tests down with it.
"""
from __future__ import annotations

import time
import uuid

import orjson
import pika
import pytest
import requests
from kombu import Connection

from common.messaging import subscription_queue_name
from tests.harness import Client, System, dead_letters, eventually, new_tenant, private_system
from tests.integration.test_heartbeat_consumer import enrol, heartbeat_message

pytestmark = pytest.mark.e2e

SERVICE_QUEUES = ("rpc-scheduler", "rpc-accounts", "rpc-tickets", "rpc-devices")
USER_UPDATED_FOR_TICKETS = subscription_queue_name("tickets", "accounts", "user_updated",
                                                   "on_user_updated")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, postgres):
    with private_system(postgres, tmp_path_factory.mktemp("hostile-bus")) as running:
        yield running


def publish(amqp_uri: str, routing_key: str, body: bytes, exchange: str = "", **properties) -> None:
    """As anyone holding the broker's credentials may: raw bytes, any properties."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    try:
        connection.channel().basic_publish(exchange, routing_key, body,
                                           pika.BasicProperties(delivery_mode=2, **properties))
    finally:
        connection.close()


def every_service_answers(system: System, rpc) -> bool:
    """Each process alive, each answering its RPC, and the gateway ready."""
    for name, process in system.processes.items():
        assert process.poll() is None, f"{name} exited:\n{system.log(name)[-3000:]}"
    for name in ("accounts", "tickets", "devices", "scheduler", "notifications"):
        assert getattr(rpc, name).ping() is not None
    return requests.get(f"{system.base_url}/readyz", timeout=5).status_code == 200


def queue_length(system: System, name: str) -> int:
    with Connection(system.amqp_uri) as connection:
        _, messages, _ = connection.channel().queue_declare(queue=name, passive=True)
    return messages


def test_a_heartbeat_naming_a_service_queue_as_reply_to_is_parked_and_nothing_reaches_it(hostile):
    system, rpc = hostile
    tenant = new_tenant(system, rpc)
    enrolment = enrol(Client(system.base_url), tenant.company(), f"deputy-{uuid.uuid4().hex[:6]}")
    marker = f"deputy-{uuid.uuid4().hex}"
    with Connection(system.amqp_uri) as connection:
        for queue in SERVICE_QUEUES:
            connection.channel().queue_purge(queue)
    for queue in SERVICE_QUEUES + (USER_UPDATED_FOR_TICKETS, "chamados.dead-letter", "nowhere"):
        message = heartbeat_message(enrolment["token"], {
            "sent_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "metrics": {"cpu_percent": 1.0}, "inventory": {"marker": marker, "queue": queue}})
        publish(system.amqp_uri, "heartbeat", message["body"], exchange="devices.heartbeats",
                headers=message["headers"], message_id=message["message_id"],
                content_type="application/json", reply_to=queue, correlation_id=marker)
    parked = dead_letters(system.amqp_uri, marker.encode(), expected=len(SERVICE_QUEUES) + 3, timeout=20)
    assert len(parked) == len(SERVICE_QUEUES) + 3, parked
    for _, headers in parked:
        assert "reply_to" in headers["x-dead-letter-reason"], headers
    time.sleep(1)  # a reply would have been published right after the batch committed
    for queue in SERVICE_QUEUES:
        assert queue_length(system, queue) == 0, queue
    assert eventually(lambda: every_service_answers(system, rpc), timeout=10)


MALFORMED = {
    # the body a heartbeat's answer would have been, without reply_to: nameko replied with a
    # KeyError and the container died
    "an answer, no reply_to": dict(body=b'{"accepted": true, "marker": "%s"}', content_type="application/json"),
    "invalid JSON": dict(body=b'{"args": [%s', content_type="application/json"),
    "a type nobody accepts": dict(body=b"\x80\x04%s.", content_type="application/x-python-serialize"),
    "no content type": dict(body=b'{"args": [], "kwargs": {}, "m": "%s"}'),
    "a list, with a reply queue": dict(body=b'["%s"]', content_type="application/json",
                                       reply_to="amq.gen-nobody-listens"),
    "the right shape, reply_to a service queue": dict(
        body=b'{"args": [], "kwargs": {}, "m": "%s"}', content_type="application/json",
        reply_to="rpc-accounts"),
    # a reply goes to the RPC exchange with reply_to as its routing key: this one is a call
    "the right shape, reply_to a method's routing key": dict(
        body=b'{"args": [], "kwargs": {}, "m": "%s"}', content_type="application/json",
        reply_to="scheduler.ping"),
}


@pytest.mark.parametrize("queue", ["rpc-scheduler", "rpc-accounts", USER_UPDATED_FOR_TICKETS])
def test_a_malformed_message_in_a_service_queue_is_parked_and_the_service_goes_on(hostile, queue):
    system, rpc = hostile
    markers = {}
    for case, message in MALFORMED.items():
        marker = uuid.uuid4().hex
        markers[marker] = case
        publish(system.amqp_uri, queue, message["body"].replace(b"%s", marker.encode()),
                **{key: value for key, value in message.items() if key != "body"})
    found = {}
    deadline = time.monotonic() + 30
    while len(found) < len(markers) and time.monotonic() < deadline:
        for marker, case in markers.items():
            if case not in found:
                parked = dead_letters(system.amqp_uri, marker.encode(), expected=1, timeout=0.5)
                if parked:
                    found[case] = parked[0][1]
    assert sorted(found) == sorted(MALFORMED), (sorted(found), system.log(queue.split("-")[1].split(".")[0]
                                                                             if queue.startswith("rpc-")
                                                                             else "tickets")[-3000:])
    for case, headers in found.items():
        assert headers["x-original-queue"] == queue, (case, headers)
        assert headers["x-dead-letter-reason"], (case, headers)
    assert queue_length(system, "rpc-accounts" if queue != "rpc-accounts" else "rpc-scheduler") == 0
    assert eventually(lambda: every_service_answers(system, rpc), timeout=10)
    # and a second wave after the first: nothing left the service in a state that fails later
    assert every_service_answers(system, rpc)


def test_an_agent_answer_goes_to_its_direct_reply_to(hostile):
    """The agent's own way of asking for an answer still works (RabbitMQ's direct reply-to:
    the broker routes the answer to the publishing channel and nowhere else)."""
    system, rpc = hostile
    tenant = new_tenant(system, rpc)
    enrolment = enrol(Client(system.base_url), tenant.company(), f"direct-{uuid.uuid4().hex[:6]}")
    message = heartbeat_message(enrolment["token"], {
        "sent_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "metrics": {"cpu_percent": 1.0}, "inventory": {"os": "direct"}})
    connection = pika.BlockingConnection(pika.URLParameters(system.amqp_uri))
    try:
        channel = connection.channel()
        answers = []
        channel.basic_consume("amq.rabbitmq.reply-to", lambda *args: answers.append(args), auto_ack=True)
        channel.basic_publish("devices.heartbeats", "heartbeat", message["body"], pika.BasicProperties(
            content_type="application/json", delivery_mode=2, message_id=message["message_id"],
            headers=message["headers"], reply_to="amq.rabbitmq.reply-to", correlation_id="asked"))
        deadline = time.monotonic() + 15
        while not answers and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.5)
    finally:
        connection.close()
    assert answers, "no answer"
    _, _, properties, body = answers[0]
    assert properties.correlation_id == "asked"
    assert "need_inventory" in orjson.loads(body), body

