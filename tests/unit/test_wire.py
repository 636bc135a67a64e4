"""The bus's orjson codec (common/wire.py) reads what kombu's json writes and writes what
kombu's json reads back to the same values — UUIDs excepted, which arrive as text."""
from __future__ import annotations

import uuid
from datetime import date, datetime, time, timezone
from decimal import Decimal

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings
from kombu.serialization import dumps, loads
from kombu.utils import json as kombu_json

from common import wire

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 63 - 1) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_plain_values_cross_both_ways(value):
    assert kombu_json.loads(wire.encode(value)) == value
    assert wire.decode(kombu_json.dumps(value)) == value
    assert wire.decode(wire.encode(value)) == value


@pytest.mark.parametrize("value", [
    datetime(2026, 12, 4, 13, 5, 7, 123456, tzinfo=timezone.utc),
    datetime(2026, 12, 4, 13, 5, 7),
    date(2026, 12, 4),
    time(13, 5, 7),
    Decimal("12.50"),
    b"bytes",
], ids=["aware datetime", "naive datetime", "date", "time", "decimal", "bytes"])
def test_typed_values_keep_kombus_envelopes(value):
    message = {"at": value, "nested": [{"at": value}]}
    assert kombu_json.loads(wire.encode(message)) == message
    assert wire.decode(wire.encode(message)) == message
    assert wire.decode(kombu_json.dumps(message)) == message


def test_a_uuid_arrives_as_text_from_us_and_as_a_uuid_from_kombu():
    ticket = uuid.uuid4()
    assert wire.decode(wire.encode({"id": ticket})) == {"id": str(ticket)}
    assert wire.decode(kombu_json.dumps({"id": ticket})) == {"id": ticket}


def test_what_orjson_refuses_is_left_to_kombus_json():
    big = {"n": 2 ** 70, 3: "int key"}
    assert wire.decode(wire.encode(big)) == {"n": 2 ** 70, "3": "int key"}
    with pytest.raises(TypeError):
        wire.encode({"thing": object()})


def test_what_orjson_cannot_read_is_left_to_kombus_json():
    import json
    import math
    assert math.isnan(wire.decode(kombu_json.dumps({"cpu": float("nan")}))["cpu"])
    assert wire.decode(wire.encode({"cpu": float("nan")})) == {"cpu": None}  # valid JSON: null
    deep = json.dumps(json.loads("[" * 600 + "]" * 600))
    assert wire.decode(deep) == json.loads(deep)
    with pytest.raises(ValueError):
        wire.decode(b"{not json")


def test_kombu_uses_it_for_json():
    content_type, encoding, body = dumps({"a": [1, 2]}, serializer="json")
    assert (content_type, encoding) == ("application/json", "utf-8")
    assert isinstance(body, bytes)  # orjson's bytes, not the stdlib's text
    assert loads(body, content_type, encoding) == {"a": [1, 2]}
