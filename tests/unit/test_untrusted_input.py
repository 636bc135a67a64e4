"""Untrusted input at the edges, as pure functions: JSON extent and NUL checks that never
recurse, the heartbeat contract's bounds, and what a parked message keeps of its headers."""
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from marshmallow import ValidationError

from common.contracts import JSON_MAX_DEPTH, extent_problem, load, paths_with_nul
from common.contracts import devices as contract
from common.errors import ValidationFailed
from common.messaging import delivery_of, parking_headers


def nested(depth: int, leaf="x"):
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


@pytest.mark.parametrize("depth", [1, 16, 100, 5_000, 50_000])
def test_extent_answers_for_any_depth_without_recursing(depth):
    problem = extent_problem(nested(depth), 16, 10**6)
    assert (problem is None) == (depth <= 16), problem
    if problem:
        assert "deeper than 16" in problem


def test_extent_counts_values():
    # the object, the array and its ten numbers
    assert extent_problem({"a": list(range(10))}, 8, 12) is None
    assert "more than 11 values" in extent_problem({"a": list(range(10))}, 8, 11)


def test_nul_paths_are_found_at_any_depth():
    assert list(paths_with_nul(nested(10_000, "a\x00b")))
    assert list(paths_with_nul({"ok": ["fine", {"bad\x00key": 1}]})) == ["ok.1.bad\x00key"]
    assert list(paths_with_nul({"ok": ["fine", {"x": "y\x00"}]})) == ["ok.1.x"]


def test_load_refuses_a_document_deeper_than_the_bound_as_a_validation_error():
    from common.contracts import StrictSchema
    from marshmallow import fields

    class Anything(StrictSchema):
        value = fields.Raw()

    assert load(Anything, {"value": nested(JSON_MAX_DEPTH - 2)})
    with pytest.raises(ValidationFailed) as refused:
        load(Anything, {"value": nested(900)})
    assert "deeper than" in str(refused.value.details["fields"]["value"])


def heartbeat(**extra) -> dict:
    return {"sent_at": datetime.now(timezone.utc).isoformat(), "inventory_hash": "a" * 64, **extra}


def test_the_heartbeat_contract_bounds_the_inventory():
    contract.Heartbeat().load(heartbeat(inventory={"software": {"packages": [{"name": "a"}] * 100}}))
    with pytest.raises(ValidationError, match="deeper than 16"):
        contract.Heartbeat().load(heartbeat(inventory={"x": nested(16)}))
    contract.Heartbeat().load(heartbeat(inventory={"x": nested(15)}))
    with pytest.raises(ValidationError, match="more than"):
        contract.Heartbeat().load(heartbeat(inventory={"many": list(range(contract.INVENTORY_MAX_VALUES + 1))}))


def test_the_heartbeat_contract_refuses_the_future_but_takes_the_past():
    now = datetime.now(timezone.utc)
    contract.Heartbeat().load(heartbeat(sent_at=(now - timedelta(days=30)).isoformat()))
    contract.Heartbeat().load(heartbeat(sent_at=(now + timedelta(minutes=5)).isoformat()))
    with pytest.raises(ValidationError, match="future"):
        contract.Heartbeat().load(heartbeat(sent_at=(now + timedelta(hours=1)).isoformat()))


@pytest.mark.parametrize("token", [12345, 3.5, True, ["a"], {"t": "x"}, b"\xff\xfe", "plain"])
def test_a_parked_message_never_keeps_a_credential_of_any_type(token):
    headers = parking_headers({"authorization": token}, "why", "devices.heartbeats", 1)
    assert "authorization" not in headers
    assert len(headers["authorization-sha256"]) == 64
    if token == "plain":
        assert headers["authorization-sha256"] == hashlib.sha256(b"plain").hexdigest()


def test_a_parked_message_keeps_scalar_headers_and_names_the_others():
    headers = parking_headers({"a": "x" * 5000, "b": 7, "c": None, "d": [1, 2], "e": {"f": 1},
                               "g": b"bytes", "h": 2 ** 70}, "reason: detail", "q", 3)
    assert len(headers["a"]) == 1024 and headers["b"] == 7 and headers["c"] is None
    assert headers["g"] == "bytes"
    assert headers["x-dropped-headers"] == "d,e,h"
    assert headers["x-dead-letter-reason"] == "reason: detail"
    assert headers["x-original-queue"] == "q" and headers["x-chamados-attempts"] == 3
    assert parking_headers("not a table", "r", "q", 1)["x-original-queue"] == "q"


@dataclass
class ReceivedMessage:
    body: bytes = b"{}"
    headers: dict | None = None
    properties: dict = field(default_factory=dict)


@pytest.mark.parametrize("properties, refused", [
    ({"message_id": "m" * 128}, None),
    ({"message_id": "m" * 129}, "message_id property is longer than 128"),
    ({"message_id": 42}, "message_id property is not text"),
    ({"correlation_id": ["x"]}, "correlation_id property is not text"),
    ({"reply_to": b"amq.gen-1"}, None),
    ({"reply_to": "amq.gen-JzTY20BRgKO-HjmUJj0wLg"}, None),
    ({"reply_to": "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAyNjk4MDgxMgAAAFIAAAAAaI+Y8w==.Pfw/pOTt9mBhqNFB7ok2hQ=="}, None),
    # named queues a sender does not own: answering there made the services a confused deputy
    ({"reply_to": "rpc-scheduler"}, "reply_to property names no reply queue"),
    ({"reply_to": "rpc-accounts"}, "reply_to property names no reply queue"),
    ({"reply_to": "chamados.dead-letter"}, "reply_to property names no reply queue"),
    ({"reply_to": "amq.rabbitmq.reply-to"}, "reply_to property names no reply queue"),  # not the broker's
    ({"reply_to": "amq.gen-x\nrpc-accounts"}, "reply_to property names no reply queue"),
])
def test_properties_are_checked_before_a_handler_sees_them(properties, refused):
    delivery, reason = delivery_of(3, ReceivedMessage(headers=None, properties=properties))
    if refused:
        assert delivery is None and refused in reason
    else:
        assert reason is None and delivery.index == 3 and delivery.headers == {}


@dataclass
class RpcRequest:
    headers: dict | None = None
    properties: dict = field(default_factory=lambda: {"content_type": "application/json",
                                                      "reply_to": "0b3fd1c4-2a8e-4e8b-9b3c-6d1a9f0e7c21"})
    accept: tuple = ("application/json",)


@pytest.mark.parametrize("body, change, problem", [
    ({"args": [], "kwargs": {}}, {}, None),
    ({"args": [1], "kwargs": {"a": 2}}, {"headers": {"nameko.call_id_stack": ["gateway.x.1"]}}, None),
    ({"args": [], "kwargs": {}}, {"reply_to": None}, "reply_to"),
    ({"args": [], "kwargs": {}}, {"reply_to": "rpc-accounts"}, "reply_to"),
    # a reply is published to the RPC exchange with reply_to as its routing key: this is a call
    ({"args": [], "kwargs": {}}, {"reply_to": "accounts.sign_in"}, "reply_to"),
    ({"args": [], "kwargs": {}}, {"reply_to": 12}, "reply_to"),
    ({"args": [], "kwargs": {}}, {"content_type": None}, "content_type"),
    ({"args": [], "kwargs": {}}, {"content_type": "application/x-python-serialize"}, "content_type"),
    (["args"], {}, "not an object"),
    (b"raw", {}, "not an object"),
    ({"accepted": True}, {}, "`args`"),
    ({"args": {}, "kwargs": {}}, {}, "`args`"),
    ({"args": [], "kwargs": []}, {}, "`args`"),
    ({"args": [], "kwargs": {}}, {"headers": {"nameko.call_id_stack": 5}}, "call_id_stack"),
    ({"args": [], "kwargs": {}}, {"headers": {"nameko.call_id_stack": [None]}}, "call_id_stack"),
])
def test_an_rpc_request_is_answered_only_in_the_shape_callers_send(body, change, problem):
    from common.bus_guard import rpc_request_problem

    request = RpcRequest()
    request.headers = change.pop("headers", None)
    request.properties.update(change)
    found = rpc_request_problem(body, request)
    assert (found is None) if problem is None else (problem in found), found


def test_amqp_short_strings_that_are_not_utf8_are_read_not_raised():
    """py-amqp decoded message_id, reply_to and header names as strict UTF-8: one message
    with other bytes failed every read of its queue (common/amqp_text.py relaxes it)."""
    # common.amqp_text is installed by common.bootstrap (tests/conftest.py)
    from amqp.basic_message import Message
    from amqp.serialization import decode_properties_basic

    encoded = Message(b"", message_id="x", application_headers={"k": "v"})._serialize_properties()
    broken = encoded.replace(b"\x01x", b"\x01\xff").replace(b"\x01k", b"\x01\xfe")
    properties, _ = decode_properties_basic(broken, 0)
    assert properties["message_id"] == "\ufffd"
    assert properties["application_headers"] == {"\ufffd": "v"}
