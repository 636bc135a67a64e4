"""Heartbeats nobody should trust, and heartbeats out of order: a poison message is parked
once with its reason while ingestion goes on; a late heartbeat counts without rolling the
machine back; a copy is recognised whatever order things arrive in."""
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import requests
from sqlalchemy import create_engine, text

from chamados_protocol.inventory import inventory_hash
from tests.harness import Client, backdate_registration, dead_letters, eventually
from tests.support.history import hourly_metrics
from tests.integration.test_heartbeat_consumer import (enrol, heartbeat_message, heartbeat_states,
                                                        heartbeats_counted, publish_all)


def with_nested_inventory(heartbeat: dict, depth: int, leaf: str) -> bytes:
    """The heartbeat's JSON with an inventory nested `depth` objects deep (written by hand:
    JSON encoders refuse to go that deep themselves)."""
    inventory = b'{"level": ' * depth + orjson.dumps(leaf) + b"}" * depth
    heartbeat = {key: value for key, value in heartbeat.items() if key != "inventory"}
    return orjson.dumps(heartbeat)[:-1] + b', "inventory": ' + inventory + b"}"


def test_poison_headers_properties_and_inventories_are_parked_once_and_ingestion_goes_on(system, tenant):
    client = Client(system.base_url)
    enrolment = enrol(client, tenant.company(), f"poison-{uuid.uuid4().hex[:6]}")
    backdate_registration(system.database_url, [enrolment["machine_id"]])  # its heartbeats start in the past
    token, machine_id = enrolment["token"], enrolment["machine_id"]
    marker = f"marker-{uuid.uuid4().hex}"
    start = datetime.now(timezone.utc) - timedelta(minutes=30)

    def body(minute: int, **extra) -> dict:
        return {"sent_at": (start + timedelta(minutes=minute)).isoformat(), "metrics": {"cpu_percent": 5.0},
                "inventory_hash": "b" * 64, "note": marker, **extra}

    def strict(minute: int, **extra) -> dict:  # schema-valid: the marker rides in the inventory
        heartbeat = body(minute, **extra)
        heartbeat.pop("note")
        heartbeat.setdefault("inventory", {"marker": marker})
        heartbeat.pop("inventory_hash", None)
        return heartbeat

    poison = {
        "integer_authorization": heartbeat_message(None, strict(1)) | {"headers": {"authorization": 12345}},
        "list_authorization": heartbeat_message(None, strict(2)) | {"headers": {"authorization": [token]}},
        "table_authorization": heartbeat_message(None, strict(3)) | {"headers": {"authorization": {"t": token}}},
        "long_message_id": heartbeat_message(token, strict(4), message_id="m" * 200),
        "deep_inventory": heartbeat_message(token, with_nested_inventory(strict(5), 900, marker)),
        "inventory_past_its_bound": heartbeat_message(token, with_nested_inventory(strict(6), 17, marker)),
        "future_sent_at": heartbeat_message(token, strict(0) | {
            "sent_at": (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()}),
    }
    good = [heartbeat_message(token, strict(10 + minute) | {"inventory": {"marker": marker, "n": minute}})
            for minute in range(5)]
    # poison first and between: nothing may hold the good ones back
    publish_all(system.amqp_uri, list(poison.values())[:4] + good[:2] + list(poison.values())[4:] + good[2:])

    engine = create_engine(system.database_url)
    try:
        state = eventually(lambda: (heartbeat_states(engine, [machine_id]).get(machine_id) or None)
                           if heartbeat_states(engine, [machine_id])[machine_id].heartbeats == len(good) else None,
                           timeout=30)
        assert state, heartbeat_states(engine, [machine_id])
        assert state.last_message_id == good[-1]["message_id"]
        assert state.last_sent_at == datetime.fromisoformat(orjson.loads(good[-1]["body"])["sent_at"])
    finally:
        engine.dispose()

    # each parked exactly once (the stall re-published a batch's dead letters over and over)
    parked = dead_letters(system.amqp_uri, marker.encode(), expected=len(poison) + 1, timeout=8)
    by_body = {message["body"]: name for name, message in poison.items()}
    names = sorted(by_body[body_] for body_, _ in parked)
    assert names == sorted(poison), names
    reasons = {by_body[body_]: headers for body_, headers in parked}
    for name in ("integer_authorization", "list_authorization", "table_authorization"):
        assert reasons[name]["x-dead-letter-reason"].startswith("unauthenticated"), reasons[name]
        assert "authorization" not in reasons[name], reasons[name]
        assert len(reasons[name]["authorization-sha256"]) == 64
    assert "message_id" in reasons["long_message_id"]["x-dead-letter-reason"]
    assert "deeper than 16" in reasons["deep_inventory"]["x-dead-letter-reason"]
    assert "deeper than 16" in reasons["inventory_past_its_bound"]["x-dead-letter-reason"]
    assert "future" in reasons["future_sent_at"]["x-dead-letter-reason"]
    assert "lost its connection" not in system.log("devices")[-20000:]


def test_late_heartbeats_count_once_without_rolling_the_machine_back(system, tenant):
    client = Client(system.base_url)
    enrolment = enrol(client, tenant.company(), f"late-{uuid.uuid4().hex[:6]}")
    backdate_registration(system.database_url, [enrolment["machine_id"]])  # its heartbeats start in the past
    token, machine_id = enrolment["token"], enrolment["machine_id"]
    now = datetime.now(timezone.utc)
    current_inventory = {"hardware": {"cpu": "new"}, "software": {"packages": [{"name": "a", "version": "2"}]}}
    older_inventory = {"hardware": {"cpu": "old"}, "software": {"packages": [{"name": "a", "version": "1"}]}}

    def heartbeat(sent_at: datetime, cpu: float, **extra) -> dict:
        return heartbeat_message(token, {"sent_at": sent_at.isoformat(),
                                         "metrics": {"cpu_percent": cpu}, **extra})

    newest = heartbeat(now, 30.0, inventory=current_inventory)
    # measured hours ago (replica reordering, an agent's spool): they arrive after the newest
    late = [heartbeat(now - timedelta(hours=3), 10.0, inventory=older_inventory),
            heartbeat(now - timedelta(hours=3, minutes=-5), 20.0, inventory_hash=inventory_hash(older_inventory))]
    duplicates_before = heartbeats_counted(system, "duplicate")
    publish_all(system.amqp_uri, [newest])

    engine = create_engine(system.database_url)
    try:
        assert eventually(lambda: heartbeat_states(engine, [machine_id])[machine_id].heartbeats == 1, timeout=20)
        publish_all(system.amqp_uri, late)
        assert eventually(lambda: heartbeat_states(engine, [machine_id])[machine_id].heartbeats == 3, timeout=20), \
            heartbeat_states(engine, [machine_id])
        state = heartbeat_states(engine, [machine_id])[machine_id]
        assert state.last_sent_at == now  # the current state stays the newest heartbeat's
        assert state.inventory_hash == inventory_hash(current_inventory)
        assert state.need_inventory is False
        with engine.connect() as connection:
            metrics = connection.execute(text(
                "SELECT last_metrics FROM devices.heartbeat_state WHERE machine_id = :m"), {"m": machine_id}).scalar()
        assert orjson.loads(metrics)["cpu_percent"] == 30.0
        late_hour = (now - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
        hourly = hourly_metrics(engine, machine_id)
        # both late ones fell in their own hour (two hours if the second crossed it)
        assert sum(hour.samples for hour in hourly.values()) == 2, hourly
        assert late_hour in hourly and max(hour.cpu_max for hour in hourly.values()) == 20.0, hourly

        # every copy, in any order, changes nothing
        publish_all(system.amqp_uri, list(reversed(late)) + [newest])
        assert eventually(lambda: heartbeats_counted(system, "duplicate") - duplicates_before == 3, timeout=20)
        assert heartbeat_states(engine, [machine_id])[machine_id].heartbeats == 3
    finally:
        engine.dispose()


def test_the_http_route_refuses_a_heartbeat_from_the_future(system, tenant):
    client = Client(system.base_url)
    enrolment = enrol(client, tenant.company(), f"ahead-{uuid.uuid4().hex[:6]}")
    response = requests.post(f"{system.base_url}/api/machines/heartbeat", timeout=10,
                             headers={"Authorization": f"Bearer {enrolment['token']}"},
                             json={"sent_at": (datetime.now(timezone.utc) + timedelta(days=1)).isoformat(),
                                   "inventory_hash": "c" * 64})
    assert response.status_code == 422, response.text
    assert "future" in response.text


def test_properties_and_header_names_that_are_not_utf8_stall_nothing(system, tenant):
    """AMQP short strings (message_id, reply_to, header names…) are bytes on the wire; a
    client can send any. One that is not UTF-8 must not make every read of the queue fail."""
    import pika

    client = Client(system.base_url)
    enrolment = enrol(client, tenant.company(), f"bytes-{uuid.uuid4().hex[:6]}")
    backdate_registration(system.database_url, [enrolment["machine_id"]])  # its heartbeats start in the past
    token, machine_id = enrolment["token"], enrolment["machine_id"]
    start = datetime.now(timezone.utc) - timedelta(minutes=20)

    def body(minute: int) -> bytes:
        return orjson.dumps({"sent_at": (start + timedelta(minutes=minute)).isoformat(),
                             "inventory_hash": "e" * 64, "metrics": {"cpu_percent": float(minute)}})

    connection = pika.BlockingConnection(pika.URLParameters(system.amqp_uri))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        odd = [pika.BasicProperties(message_id=b"\xff\xfe-not-utf8", headers={"authorization": token},
                                    delivery_mode=2),
               pika.BasicProperties(message_id="fine", headers={b"\xc3\x28": "x", "authorization": token},
                                    delivery_mode=2),
               pika.BasicProperties(message_id="fine-2", correlation_id=b"\x80", reply_to=b"\xfe",
                                    headers={"authorization": token}, delivery_mode=2)]
        for minute, properties in enumerate(odd):
            channel.basic_publish("devices.heartbeats", "heartbeat", body(minute), properties)
        for minute in range(3, 6):
            channel.basic_publish("devices.heartbeats", "heartbeat", body(minute), pika.BasicProperties(
                message_id=str(uuid.uuid4()), headers={"authorization": token}, delivery_mode=2))
    finally:
        connection.close()

    engine = create_engine(system.database_url)
    try:
        # the ordinary ones arrive whatever happens to the odd ones (taken as text, or parked)
        assert eventually(lambda: heartbeat_states(engine, [machine_id])[machine_id].heartbeats >= 3
                          and heartbeat_states(engine, [machine_id])[machine_id].last_sent_at
                          == start + timedelta(minutes=5), timeout=30), heartbeat_states(engine, [machine_id])
    finally:
        engine.dispose()
    assert "consumer failed" not in system.log("devices")[-20000:]
