"""RPC replies through common.rpc_replies (serialised once, no publisher confirm, taken
without an ack) on a real broker: an answer, a domain error, a value the bus cannot carry,
and many calls at once from a service (nameko's ReplyListener) each getting its own reply."""
import time
from urllib.parse import quote

import eventlet
import pytest
import requests
from nameko.containers import ServiceContainer
from nameko.exceptions import RemoteError
from nameko.rpc import RpcProxy
from nameko.rpc import rpc as nameko_rpc
from nameko.standalone.rpc import ClusterRpcProxy

from common import rpc_replies
from common.errors import NotFound
from common.service_base import rpc
from tests.harness import MANAGEMENT_API, RABBIT_AUTH, RabbitVhost


class Unwritable:
    pass


class AnsweringService:
    name = "answering"

    @rpc
    def echo(self, value):
        return value

    @rpc
    def missing(self):
        raise NotFound("no such thing")

    @nameko_rpc
    def unwritable(self):
        return {"value": Unwritable()}


class AskingService:
    """Calls the other service as the gateway does: through RpcProxy and its ReplyListener."""
    name = "asking"
    answering = RpcProxy("answering")

    @rpc
    def ask_at_once(self, count):
        pool = eventlet.GreenPool(count)
        return list(pool.imap(self.answering.echo, range(count)))


@pytest.fixture
def answering():
    vhost = RabbitVhost.create()
    containers = [ServiceContainer(cls, {"AMQP_URI": vhost.amqp_uri}) for cls in (AnsweringService, AskingService)]
    for container in containers:
        container.start()
    yield vhost
    for container in containers:
        container.stop()
    vhost.delete()


def consumers_acking(vhost: str) -> dict:
    """{queue: whether its consumer acknowledges}, once the management API lists both sides
    (its statistics lag the broker by a few seconds)."""
    deadline = time.monotonic() + 20
    while True:
        consumers = requests.get(f"{MANAGEMENT_API}/consumers/{quote(vhost, safe='')}",
                                 auth=RABBIT_AUTH, timeout=10).json()
        acks = {consumer["queue"]["name"]: consumer["ack_required"] for consumer in consumers}
        if "rpc-answering" in acks and any(name.startswith("rpc.reply-asking-") for name in acks):
            return acks
        assert time.monotonic() < deadline, f"the management API lists {sorted(acks)}"
        time.sleep(0.5)


def test_replies_carry_answers_errors_and_refusals(answering):
    from nameko import rpc as nameko_rpc_module
    assert nameko_rpc_module.Responder is rpc_replies.Responder
    with ClusterRpcProxy({"AMQP_URI": answering.amqp_uri}, timeout=10) as cluster:
        value = {"text": "ação", "n": 3, "items": [1, None, {"x": True}]}
        assert cluster.answering.echo(value) == value
        with pytest.raises(NotFound, match="no such thing"):  # a domain error comes back as itself
            cluster.answering.missing()
        with pytest.raises(RemoteError) as unwritable:
            cluster.answering.unwritable()
        assert unwritable.value.exc_type == "UnserializableValueError"
        # the service is still answering after the unserialisable result
        assert cluster.answering.echo(1) == 1


def test_calls_at_once_from_a_service_each_get_their_own_reply(answering):
    with ClusterRpcProxy({"AMQP_URI": answering.amqp_uri}, timeout=30) as cluster:
        assert cluster.asking.ask_at_once(200) == list(range(200))
        assert cluster.asking.ask_at_once(50) == list(range(50))  # and again, nothing left over
    acks = consumers_acking(answering.name)
    assert acks["rpc-answering"] is True  # requests are acknowledged once answered
    asking_replies = [name for name in acks if name.startswith("rpc.reply-asking-")]
    assert asking_replies and not any(acks[name] for name in asking_replies)
