"""The heartbeat's fast path loads exactly what the Heartbeat schema loads, and hands
everything else to the schema (so refusals keep the schema's messages)."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from chamados_protocol import heartbeat
from chamados_protocol.heartbeat import HEARTBEAT_SCHEMA, load_heartbeat

NOW = datetime.now(timezone.utc)
anything = st.none() | st.booleans() | st.integers(-5, 200) | st.floats(-1, 101, allow_nan=False) | st.text(max_size=3)
percent = st.integers(0, 100) | st.floats(0, 100) | anything
moments = st.sampled_from([
    (NOW - timedelta(days=2)).isoformat(), NOW.isoformat(), (NOW + timedelta(minutes=3)).isoformat(),
    (NOW + timedelta(days=1)).isoformat(), NOW.replace(tzinfo=None).isoformat(),
    NOW.strftime("%Y-%m-%dT%H:%M:%SZ"), NOW.astimezone(timezone(timedelta(hours=-3))).isoformat(),
    NOW.strftime("%Y-%m-%d %H:%M:%S+00:00"), "2026-13-40T99:00:00Z", "yesterday", "",
    "0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00", (NOW - timedelta(days=91)).isoformat(),
    (NOW - timedelta(days=89)).isoformat()]) | anything
disk = st.fixed_dictionaries({"mount": st.text(max_size=4) | anything, "percent": percent},
                             optional={"extra": anything})
metrics = st.fixed_dictionaries({}, optional={
    "cpu_percent": percent, "memory_percent": percent, "uptime_seconds": st.integers(-2, 10**6) | anything,
    "disks": st.lists(disk, max_size=3) | anything, "bogus": anything}) | anything
inventory = st.dictionaries(st.text(max_size=3), st.recursive(anything, lambda c: st.lists(c, max_size=3)
                                                              | st.dictionaries(st.text(max_size=2), c, max_size=3),
                                                              max_leaves=8), max_size=3) | anything
bodies = st.fixed_dictionaries({}, optional={
    "sent_at": moments, "metrics": metrics, "inventory": inventory,
    "inventory_hash": st.sampled_from(["a" * 64, "A" * 64, "a" * 63, "g" * 64]) | anything,
    "usb_policy_ack": st.sampled_from([{"mode": "BLOCK"}, {"mode": "nope"}, {"mode": "ALLOW", "x": 1}]) | anything,
    "surprise": anything})


def through_schema(body):
    try:
        return HEARTBEAT_SCHEMA.load(body)
    except ValidationError as exc:
        return ("refused", exc.messages)


def through_fast_path(body):
    try:
        return load_heartbeat(body)
    except ValidationError as exc:
        return ("refused", exc.messages)


@settings(max_examples=1000, deadline=None)
@given(bodies)
def test_the_fast_path_and_the_schema_agree_on_any_body(body):
    assert through_fast_path(body) == through_schema(body)


def test_the_usual_heartbeat_takes_the_fast_path():
    body = {"sent_at": NOW.isoformat(), "inventory_hash": "a" * 64,
            "metrics": {"cpu_percent": 3, "disks": [{"mount": "/", "percent": 10}]}}
    assert heartbeat._fast_heartbeat(body) == HEARTBEAT_SCHEMA.load(body)


@pytest.mark.parametrize("body", [{"sent_at": NOW.isoformat()}, {"inventory_hash": "a" * 64}, {}])
def test_refusals_keep_the_schema_messages(body):
    with pytest.raises(ValidationError) as refused:
        load_heartbeat(body)
    assert refused.value.messages == through_schema(body)[1]


good_percent = st.integers(0, 100) | st.floats(0, 100)
good_bodies = st.fixed_dictionaries(
    {"sent_at": st.sampled_from([NOW.isoformat(), NOW.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                                 (NOW - timedelta(days=3)).astimezone(timezone(timedelta(hours=-3))).isoformat()]),
     "inventory_hash": st.just("b" * 64)},
    optional={"metrics": st.fixed_dictionaries({}, optional={
        "cpu_percent": good_percent | st.none(), "memory_percent": good_percent | st.none(),
        "uptime_seconds": st.integers(0, 10**9) | st.none(),
        "disks": st.lists(st.fixed_dictionaries({"mount": st.text(min_size=1, max_size=5),
                                                 "percent": good_percent}), max_size=4)}),
        "inventory": st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3), max_size=4),
        "usb_policy_ack": st.sampled_from([{"mode": "BLOCK"}, {"mode": "READ_ONLY"}, None])})


@settings(max_examples=400, deadline=None)
@given(good_bodies)
def test_well_formed_heartbeats_load_the_same_on_the_fast_path(body):
    assert heartbeat._fast_heartbeat(body) == HEARTBEAT_SCHEMA.load(body)


@pytest.mark.parametrize("moment, problem", [
    (timedelta(days=-89), None),
    (timedelta(minutes=9), None),
    (timedelta(days=-91), "91 days old"),
    (datetime(1, 1, 1, tzinfo=timezone.utc), "days old"),
    (timedelta(minutes=11), "in the future"),
    (datetime(9999, 12, 31, tzinfo=timezone.utc), "in the future"),
])
def test_a_sent_at_is_bounded_above_and_below(moment, problem):
    now = datetime.now(timezone.utc)  # not NOW: the contract below reads the clock again
    sent_at = now + moment if isinstance(moment, timedelta) else moment
    found = heartbeat.sent_at_problem(sent_at, now)
    assert (found is None) if problem is None else (problem in found), found
    if problem:  # and the contract refuses it with that reason, fast path or not
        with pytest.raises(ValidationError, match="sent_at") as refused:
            load_heartbeat({"sent_at": sent_at.isoformat(), "inventory_hash": "a" * 64})
        assert problem in str(refused.value.messages["sent_at"])


def test_a_heartbeat_cannot_predate_its_machine_beyond_the_clock_skew():
    registered = NOW - timedelta(hours=2)
    assert heartbeat.registration_problem(registered - timedelta(minutes=9), registered) is None
    assert heartbeat.registration_problem(registered + timedelta(hours=1), registered) is None
    assert "before the machine was registered" in heartbeat.registration_problem(
        registered - timedelta(minutes=11), registered)
