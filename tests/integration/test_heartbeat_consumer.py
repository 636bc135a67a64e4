"""The heartbeat consumer over AMQP, as agents that speak AMQP use it: change-only inventory
under a realistic load, redelivery absorbed, and every message it cannot take parked in the
dead-letter queue with its reason while the consumer keeps going — except a refused token
(a reset agent's), which is answered, counted and dropped: expected traffic, not a dead letter."""
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import requests
from kombu import Connection, Exchange, Queue
from sqlalchemy import create_engine, text

from common.messaging import PARKED_BODY_MAX_BYTES
from chamados_protocol.inventory import inventory_hash
from tests.harness import Client, backdate_registration, dead_letters, eventually
from tests.support.history import change_records

EXCHANGE = Exchange("devices.heartbeats", type="direct", durable=True)
ROUTING_KEY = "heartbeat"
MACHINES, PER_MACHINE, CHANGED_PER_MACHINE = 10, 100, 2
CHANGED_AT = (37, 71)  # the heartbeats (by index) of each machine that carry a changed inventory


# --- helpers ----------------------------------------------------------------------------

def enrol(client: Client, company: dict, hostname: str) -> dict:
    response = client.post("/api/machines/register", json={
        "provisioning_code": company["provisioning_code"], "hostname": hostname,
        "os": {"name": "Ubuntu 22.04.4 LTS", "version": "22.04", "build": "", "arch": "x86_64"},
        "mac_addresses": ["3c:52:82:" + ":".join(uuid.uuid4().hex[i:i + 2] for i in (0, 2, 4))],
        "serial_numbers": [f"SN{uuid.uuid4().hex[:12].upper()}"],
        "collaborator": {"email": f"{hostname}@example.test", "name": hostname}})
    assert response.status_code == 201, response.text
    return response.json()


def inventory(machine: int, revision: int) -> dict:
    """A machine's inventory; each revision bumps one package's version."""
    packages = [{"name": f"pkg-{index:03d}", "version": "1.0.0", "vendor": "Acme"} for index in range(150)]
    for step in range(revision):
        packages[(step * 7) % len(packages)]["version"] = f"1.0.{step + 1}"
    return {"hostname": f"load-{machine}", "uptime_seconds": 100 + revision,
            "hardware": {"cpu": "Intel i5-8500", "memory_bytes": 8_589_934_592, "machine": machine},
            "software": {"packages": packages},
            "disks": [{"mount": "/", "size_bytes": 256_000_000_000, "free_bytes": 100_000_000_000}]}


def publish_all(amqp_uri: str, messages: list[dict]) -> None:
    """Each message: body (bytes), headers, message_id; persistent, broker-confirmed."""
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        for message in messages:
            producer.publish(message["body"], exchange=EXCHANGE, routing_key=ROUTING_KEY,
                             headers=message["headers"], message_id=message["message_id"],
                             content_type="application/json", content_encoding="utf-8",
                             delivery_mode=2, declare=[EXCHANGE])


def heartbeat_message(token: str | None, body, message_id: str | None = None) -> dict:
    return {"body": body if isinstance(body, bytes) else orjson.dumps(body),
            "headers": {"authorization": token} if token is not None else {},
            "message_id": message_id or str(uuid.uuid4())}


def heartbeat_states(engine, machine_ids) -> dict:
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT machine_id, heartbeats, last_sent_at, last_seen_at, last_message_id, "
            "inventory_hash, need_inventory FROM devices.heartbeat_state "
            "WHERE machine_id = ANY(:ids)"), {"ids": [uuid.UUID(m) for m in machine_ids]}).all()
    return {str(row.machine_id): row for row in rows}


def inventory_versions(engine, machine_ids) -> dict:
    with engine.connect() as connection:
        return {str(row.machine_id): row.version for row in connection.execute(text(
            "SELECT machine_id, version FROM devices.inventories WHERE machine_id = ANY(:ids)"),
            {"ids": [uuid.UUID(m) for m in machine_ids]})}


def heartbeats_counted(system, outcome: str) -> float:
    metrics = requests.get(system.metrics_url("devices"), timeout=10).text
    found = re.search(r'^chamados_heartbeats_total\{[^}]*outcome="%s"[^}]*\} ([0-9.e+]+)$' % outcome,
                      metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def heartbeats_refused(system, reason: str) -> float:
    metrics = requests.get(system.metrics_url("devices"), timeout=10).text
    found = re.search(r'^chamados_heartbeats_refused_total\{[^}]*reason="%s"[^}]*\} ([0-9.e+]+)$' % reason,
                      metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


# --- the load -------------------------------------------------------------------------------

def test_a_thousand_heartbeats_write_only_what_changed_and_redelivery_changes_nothing(system, tenant):
    client = Client(system.base_url)
    company = tenant.company()
    run = uuid.uuid4().hex[:6]
    enrolled = [enrol(client, company, f"load-{run}-{m}") for m in range(MACHINES)]
    sentinel = enrol(client, company, f"load-{run}-sentinel")
    machine_ids = [e["machine_id"] for e in enrolled]
    backdate_registration(system.database_url, machine_ids)  # the heartbeats start an hour ago

    # 100 heartbeats per machine, machines interleaved; sent_at strictly increasing per machine
    base = datetime.now(timezone.utc) - timedelta(hours=1)
    messages, revisions, full_initial, full_changed = [], [0] * MACHINES, 0, 0
    for index in range(PER_MACHINE):
        for machine, enrolment in enumerate(enrolled):
            body = {"sent_at": (base + timedelta(seconds=index, microseconds=machine)).isoformat(),
                    "metrics": {"cpu_percent": float(index % 100), "memory_percent": 40.0,
                                "uptime_seconds": index, "disks": [{"mount": "/", "percent": 50.0}]}}
            if index == 0:
                body["inventory"] = inventory(machine, 0)
                full_initial += 1
            elif index in CHANGED_AT:
                revisions[machine] += 1
                body["inventory"] = inventory(machine, revisions[machine])
                full_changed += 1
            else:
                body["inventory_hash"] = inventory_hash(inventory(machine, revisions[machine]))
            messages.append(heartbeat_message(enrolment["token"], body))
    assert (len(messages), full_initial, full_changed) == (1000, 10, 20)
    final_hashes = {e["machine_id"]: inventory_hash(inventory(m, revisions[m])) for m, e in enumerate(enrolled)}
    last_sent = {e["machine_id"]: base + timedelta(seconds=PER_MACHINE - 1, microseconds=m)
                 for m, e in enumerate(enrolled)}

    engine = create_engine(system.database_url)
    try:
        duplicates_before = heartbeats_counted(system, "duplicate")
        started = time.monotonic()
        publish_all(system.amqp_uri, messages)

        def all_reflected():
            states = heartbeat_states(engine, machine_ids)
            return states if len(states) == MACHINES and all(
                s.heartbeats == PER_MACHINE and s.last_sent_at == last_sent[m] for m, s in states.items()) else None
        states = eventually(all_reflected, timeout=30)
        assert states, {m: (s.heartbeats, s.last_sent_at) for m, s in heartbeat_states(engine, machine_ids).items()}
        elapsed = time.monotonic() - started

        for machine_id, state in states.items():
            assert state.heartbeats == PER_MACHINE
            assert state.inventory_hash == final_hashes[machine_id]
            assert state.need_inventory is False
        changes = change_records(engine, machine_ids)
        versions = inventory_versions(engine, machine_ids)
        for machine_id in machine_ids:
            chain = changes[machine_id]
            # one initial record, then one per change, numbered without gaps
            assert [record.version for record in chain] == list(range(1, 2 + CHANGED_PER_MACHINE)), chain
            assert chain[0].initial and chain[0].changes == {} and not any(r.initial for r in chain[1:])
            assert versions[machine_id] == len(chain)
            assert all(len(orjson.dumps(r.changes)) < 1024 for r in chain[1:]), chain  # a one-package change is small
        print(f"1000 heartbeats applied in {elapsed:.1f}s")

        # the broker redelivers everything: same bodies, same message ids
        publish_all(system.amqp_uri, messages)
        publish_all(system.amqp_uri, [heartbeat_message(sentinel["token"], {
            "sent_at": datetime.now(timezone.utc).isoformat(), "inventory_hash": "a" * 64})])
        # one consumer, one FIFO queue: once the sentinel is in, every copy before it was handled
        assert eventually(lambda: heartbeat_states(engine, [sentinel["machine_id"]]).get(
            sentinel["machine_id"]) and heartbeat_states(engine, [sentinel["machine_id"]])[
            sentinel["machine_id"]].heartbeats == 1, timeout=30)

        assert heartbeat_states(engine, machine_ids) == states  # not even last_seen_at moved
        assert change_records(engine, machine_ids) == changes
        assert heartbeats_counted(system, "duplicate") - duplicates_before == len(messages)
    finally:
        engine.dispose()


# --- what the consumer cannot take --------------------------------------------------------

def test_unusable_heartbeats_are_dead_lettered_with_their_reason_and_the_consumer_goes_on(system, tenant):
    client = Client(system.base_url)
    enrolment = enrol(client, tenant.company(), f"dlq-{uuid.uuid4().hex[:6]}")
    token, machine_id = enrolment["token"], enrolment["machine_id"]
    marker = f"marker-{uuid.uuid4().hex}"

    def valid(**extra) -> dict:
        return {"sent_at": datetime.now(timezone.utc).isoformat(),
                "metrics": {"cpu_percent": 5.0}, "inventory": {"marker": marker}, **extra}

    too_large = valid()
    too_large["inventory"]["blob"] = "x" * (1024 * 1024 + 10)
    bad = {
        "too_large": heartbeat_message(token, too_large),
        "malformed_json": heartbeat_message(token, b'{"sent_at": "2024-01-01T00:00:00Z", "' + marker.encode() + b'": '),
        "no_header": heartbeat_message(None, valid()),
        "invalid": heartbeat_message(token, {"metrics": {}, "inventory": {"marker": marker}}),
    }
    assert len(bad["too_large"]["body"]) > 1024 * 1024
    # a token the server does not know (a reset agent's): answered, counted, dropped
    unknown_token = heartbeat_message(f"unknown-{uuid.uuid4().hex}", valid())
    refused_before = heartbeats_refused(system, "unknown_token")
    # a reply queue named by the server (amq.gen-…): answers go to no named queue
    with Connection(system.amqp_uri, transport_options={"confirm_publish": True}) as connection:
        server_named = connection.channel().queue_declare(queue="", durable=False, auto_delete=False)
        replies = Queue(server_named.queue, durable=False, auto_delete=False)
        connection.Producer().publish(unknown_token["body"], exchange=EXCHANGE, routing_key=ROUTING_KEY,
                                      headers=unknown_token["headers"], message_id=unknown_token["message_id"],
                                      reply_to=replies.name, content_type="application/json",
                                      delivery_mode=2, declare=[EXCHANGE])
    good_body = valid()
    good_body["inventory"]["after"] = "the dead letters"
    good = heartbeat_message(token, good_body)
    publish_all(system.amqp_uri, list(bad.values()) + [good])

    engine = create_engine(system.database_url)
    try:
        assert eventually(lambda: (heartbeat_states(engine, [machine_id]).get(machine_id) or None)
                        and heartbeat_states(engine, [machine_id])[machine_id].heartbeats == 1, timeout=20), \
            heartbeat_states(engine, [machine_id])
        state = heartbeat_states(engine, [machine_id])[machine_id]
        assert state.last_message_id == good["message_id"]
        assert state.inventory_hash == inventory_hash(good_body["inventory"])
    finally:
        engine.dispose()

    # the agent waiting for an answer is told, as before (sent once the message was settled)
    with Connection(system.amqp_uri) as connection:
        reply_queue = replies(connection.channel())
        reply = eventually(lambda: reply_queue.get(no_ack=True), timeout=20)
        assert reply is not None, "no reply to the refused heartbeat"
        assert orjson.loads(reply.body)["error"] == "invalid_token", reply.body
        assert reply.properties.get("correlation_id") == unknown_token["message_id"]
        reply_queue.delete()
    assert heartbeats_refused(system, "unknown_token") == refused_before + 1
    assert "heartbeat refused (unknown token), dropped" in system.log("devices")

    parked = dead_letters(system.amqp_uri, marker.encode(), expected=len(bad) + 1, timeout=5)
    assert len(parked) == len(bad), [headers.get("x-dead-letter-reason") for _, headers in parked]
    # a parked body is cut at the parking bound (the cut said in its headers)
    by_body = {message["body"][:PARKED_BODY_MAX_BYTES]: name for name, message in bad.items()}
    reasons = {}
    for body, headers in parked:
        assert body in by_body, body[:200]
        if len(bad[by_body[body]]["body"]) > PARKED_BODY_MAX_BYTES:
            assert headers["x-body-truncated-from"] == len(bad[by_body[body]]["body"]), headers
        assert headers["x-original-queue"] == "devices.heartbeats", headers
        assert "authorization" not in headers, "a machine token was parked in clear"
        reasons[by_body[body]] = headers["x-dead-letter-reason"]
    assert set(reasons) == set(bad), reasons
    assert reasons["too_large"].startswith("too_large"), reasons
    assert reasons["malformed_json"].startswith("malformed_json"), reasons
    assert reasons["no_header"].startswith("unauthenticated"), reasons  # malformed, still parked
    assert reasons["invalid"].startswith("invalid") and "sent_at" in reasons["invalid"], reasons

    metrics = requests.get(system.metrics_url("devices"), timeout=10).text
    for reason in ("too_large", "malformed_json", "unauthenticated", "invalid"):
        assert re.search(r'chamados_messages_dead_lettered_total\{[^}]*queue="devices\.heartbeats"[^}]*'
                         r'reason="%s"' % reason, metrics), reason


def test_heartbeat_state_updates_stay_hot(system, tenant):
    """A heartbeat rewrites its machine's state row in place: heap-only updates, pruned on
    their page without VACUUM, so the table does not grow with heartbeats."""
    client = Client(system.base_url)
    enrolment = enrol(client, tenant.company(), f"hot-{uuid.uuid4().hex[:6]}")
    backdate_registration(system.database_url, [enrolment["machine_id"]])  # its heartbeats start in the past
    base = datetime.now(timezone.utc) - timedelta(hours=1)
    engine = create_engine(system.database_url)

    def update_counts():
        with engine.connect() as connection:
            return connection.execute(text(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                "WHERE schemaname = 'devices' AND relname = 'heartbeat_state'")).one()

    try:
        before = update_counts()
        publish_all(system.amqp_uri, [heartbeat_message(enrolment["token"], {
            "sent_at": (base + timedelta(seconds=index)).isoformat(), "inventory_hash": "d" * 64,
            "metrics": {"cpu_percent": 1.0}}) for index in range(300)])
        assert eventually(lambda: heartbeat_states(engine, [enrolment["machine_id"]])[
            enrolment["machine_id"]].heartbeats == 300, timeout=30)
        # statistics reach the view shortly after the transactions end
        after = eventually(lambda: (lambda now: now if now.n_tup_upd > before.n_tup_upd else None)(update_counts()),
                           timeout=15, interval=0.5)
        assert after, update_counts()
        updates, hot = after.n_tup_upd - before.n_tup_upd, after.n_tup_hot_upd - before.n_tup_hot_upd
        # under load the batches grow and the updates are few: one page split is allowed
        assert updates - hot <= max(1, updates // 10), (updates, hot)
    finally:
        engine.dispose()
