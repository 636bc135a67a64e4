"""The heartbeat route's token check (Service.machine_hint): devices is asked with what the
body says of the inventory and answers need_inventory; a refused token is answered before
any problem of the body."""
from datetime import datetime, timezone

import orjson
import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

import services.gateway.service  # noqa: F401  (declares the routes)
from common.config import Settings
from common.errors import Unauthorized, ValidationFailed
from services.gateway.http import OPERATIONS
from services.gateway.service import Service

SPEC = OPERATIONS["machine_heartbeat"][0]


class Gateway:
    """The Service's machine_hint over a fake `call` (no broker)."""
    machine_hint = Service.machine_hint

    def __init__(self, refuse=False):
        self.settings, self.asked, self.refuse = Settings.from_mapping({}), [], refuse

    def call(self, service, method, *args):
        self.asked.append((service, method, *args))
        if self.refuse:
            raise Unauthorized("unknown, revoked or expired machine token", code="invalid_token")
        return {"need_inventory": True, "usb_policy": None}


def request(body, token="machine-token"):
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Request(EnvironBuilder(method="POST", data=raw, headers=headers,
                                  content_type="application/json").get_environ())


def test_devices_is_asked_with_the_hash_and_whether_the_inventory_came():
    gateway = Gateway()
    sent = {"sent_at": datetime.now(timezone.utc).isoformat(), "inventory_hash": "a" * 64,
            "metrics": {"cpu_percent": 3, "disks": [{"mount": "/", "percent": 10}]}}
    hint, body = gateway.machine_hint(SPEC, request(sent))
    assert hint["need_inventory"] is True and body == sent
    assert gateway.asked == [("devices", "heartbeat_hint", "machine-token", "a" * 64, False, sent["sent_at"])]


def test_a_refused_token_is_answered_before_a_malformed_body():
    gateway = Gateway(refuse=True)
    with pytest.raises(Unauthorized):
        gateway.machine_hint(SPEC, request(b"{not json"))
    assert gateway.asked == [("devices", "heartbeat_hint", "machine-token", None, False, None)]


def test_a_valid_token_with_an_invalid_body_gets_the_bodys_problem():
    gateway = Gateway()
    with pytest.raises(ValidationFailed):
        gateway.machine_hint(SPEC, request({"unknown_field": 1}))


def test_no_token_is_refused_without_asking_devices():
    gateway = Gateway()
    with pytest.raises(Unauthorized):
        gateway.machine_hint(SPEC, request({}, token=None))
    assert gateway.asked == []
