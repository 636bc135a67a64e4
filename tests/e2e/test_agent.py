"""The real desktop agent, run as a subprocess against the running system: registration,
full-then-hash-only heartbeats, the server's need_inventory, the HTTP route, a revoked
token, a wrong provisioning code, and heartbeats spooled while the broker is unreachable and
replayed once it is back (each exactly once, original message ids, in order).

What arrived is checked twice: in PostgreSQL (devices.heartbeat_state, machine_days)
and on a "tap" queue bound to the heartbeat exchange, which receives a copy of every message
the broker took (a direct exchange delivers to every queue bound with the key)."""
from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
import uuid

import orjson
import pika
import pytest
from sqlalchemy import create_engine, text

from common.config import ROOT
from common.contracts.devices import HEARTBEAT_EXCHANGE, HEARTBEAT_ROUTING_KEY
from tests.support.history import change_records

pytestmark = pytest.mark.e2e

CLOSED_BROKER = "amqp://guest:guest@127.0.0.1:1/"
TRACEBACK = "Traceback (most recent call last)"
PATIENT = ("--reply-timeout", "20")  # the answer normally comes in well under a second


def agent(state_dir, *args, timeout=60) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("AMQP_URI", "DATABASE_URL")}
    done = subprocess.run([sys.executable, "-m", "chamados_agent.cli", *args, "--state-dir", str(state_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert TRACEBACK not in done.stderr, done.stderr  # expected conditions never show one
    return done


def register(system, company, state_dir, amqp=None) -> dict:
    done = agent(state_dir, "register", "--gateway", system.base_url,
                 "--code", company["provisioning_code"], "--email", f"{uuid.uuid4().hex[:8]}@desk.test",
                 "--name", "Desk User", "--amqp", amqp or system.amqp_uri)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((state_dir / "state.json").read_text())


class Tap:
    """A copy of every heartbeat the broker routes, for checking what was published."""

    def __init__(self, amqp_uri: str):
        self.connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
        self.channel = self.connection.channel()
        self.queue = f"test.agent-tap.{uuid.uuid4().hex[:8]}"
        self.channel.queue_declare(self.queue, durable=False, arguments={"x-expires": 300_000})
        self.channel.queue_bind(self.queue, HEARTBEAT_EXCHANGE, HEARTBEAT_ROUTING_KEY)

    def messages(self, token: str) -> list[tuple[pika.BasicProperties, dict]]:
        found = []
        while True:
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return found
            if (properties.headers or {}).get("authorization") == token:
                found.append((properties, orjson.loads(body)))

    def close(self):
        try:
            self.channel.queue_delete(self.queue)
        finally:
            self.connection.close()


@pytest.fixture
def tap(system):
    opened = Tap(system.amqp_uri)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def engine(system):
    created = create_engine(system.database_url)
    yield created
    created.dispose()


def server_view(engine, machine_id: str) -> tuple[int, str | None, list]:
    with engine.connect() as connection:
        row = connection.execute(text(
            "SELECT heartbeats, inventory_hash FROM devices.heartbeat_state WHERE machine_id = :m"),
            {"m": machine_id}).one()
    return row[0], row[1], change_records(engine, [machine_id])[machine_id]


def wait_for_heartbeats(engine, machine_id: str, count: int, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        view = server_view(engine, machine_id)
        if view[0] >= count or time.monotonic() > deadline:
            return view
        time.sleep(0.2)


def test_register_heartbeats_need_inventory_http_and_revocation(system, tenant, tap, engine, tmp_path):
    state_dir, company = tmp_path / "agent", tenant.company()
    state = register(system, company, state_dir)
    assert stat.S_IMODE((state_dir / "state.json").stat().st_mode) == 0o600
    machine_id, token = state["machine_id"], state["token"]
    uuid.UUID(machine_id)

    outputs = [agent(state_dir, "heartbeat", *PATIENT) for _ in range(3)]
    assert [o.returncode for o in outputs] == [0, 0, 0], [o.stdout + o.stderr for o in outputs]
    assert "full inventory (first inventory)" in outputs[0].stdout
    assert all("with the inventory hash" in o.stdout for o in outputs[1:])
    assert all("the server has this inventory" in o.stdout for o in outputs), [o.stdout for o in outputs]

    heartbeats, stored_hash, changes = wait_for_heartbeats(engine, machine_id, 3)
    assert heartbeats == 3 and [(record.version, record.initial) for record in changes] == [(1, True)]
    published = tap.messages(token)
    assert len(published) == 3
    assert "inventory" in published[0][1] and all("inventory" not in body for _, body in published[1:])
    assert {body["inventory_hash"] for _, body in published} == {stored_hash}
    assert all(p.delivery_mode == 2 and p.message_id for p, _ in published)
    assert len({p.message_id for p, _ in published}) == 3

    # the server loses track of the inventory: the next hash-only heartbeat is answered
    # need_inventory, and the one after carries the full inventory again
    with engine.begin() as connection:
        connection.execute(text("UPDATE devices.heartbeat_state SET inventory_hash = :h WHERE machine_id = :m"),
                           {"h": "0" * 64, "m": machine_id})
    asked = agent(state_dir, "heartbeat", *PATIENT)
    assert asked.returncode == 0 and "asked for the full inventory" in asked.stdout, asked.stdout + asked.stderr
    resent = agent(state_dir, "heartbeat", *PATIENT)
    assert resent.returncode == 0 and "full inventory (the server asked for it)" in resent.stdout, resent.stdout
    heartbeats, stored_hash, changes = wait_for_heartbeats(engine, machine_id, 5)
    # the same document again: a new version with nothing added, removed or changed
    assert heartbeats == 5 and [record.version for record in changes] == [1, 2]
    assert not changes[1].initial and not any(changes[1].changes.values())
    published = tap.messages(token)
    assert ["inventory" in body for _, body in published] == [False, True]

    # the HTTP fallback route, hash-only
    over_http = agent(state_dir, "heartbeat", "--http")
    assert over_http.returncode == 0 and "sent over http with the inventory hash" in over_http.stdout, \
        over_http.stdout + over_http.stderr
    assert wait_for_heartbeats(engine, machine_id, 6)[0] == 6

    status = agent(state_dir, "status", "--json")
    report = json.loads(status.stdout)
    assert status.returncode == 0 and report["registered"] and report["machine_id"] == machine_id
    assert report["last_success_via"] == "http" and report["spool"]["depth"] == 0
    assert "token" not in report and token not in status.stdout

    # an administrator resets the agent: the token is revoked. Over AMQP the server answers
    # invalid_token and drops the heartbeat (counted, not dead-lettered); the agent tells the user to re-register and
    # keeps the heartbeat in its spool
    reset = tenant.admin.post(f"/api/admin/machines/{machine_id}/reset-agent", json={})
    assert reset.status_code == 200, reset.text
    refused = agent(state_dir, "heartbeat", *PATIENT)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "register again" in refused.stderr and "invalid_token" in refused.stderr
    revoked = agent(state_dir, "heartbeat", "--http")
    assert revoked.returncode == 4, revoked.stdout + revoked.stderr
    assert "register again" in revoked.stderr and "invalid_token" in revoked.stderr
    status = agent(state_dir, "status")
    assert status.returncode == 4 and "REJECTED" in status.stdout and "register again" in status.stdout
    assert server_view(engine, machine_id)[0] == 6

    # registering again gets the same machine back and heartbeats flow again; the two the
    # gateway refused waited in the spool and go first
    again = register(system, company, state_dir)
    assert again["machine_id"] == machine_id and again["token"] != token
    back = agent(state_dir, "heartbeat")
    assert back.returncode == 0, back.stdout + back.stderr
    assert "after 2 spooled heartbeat(s)" in back.stdout
    assert wait_for_heartbeats(engine, machine_id, 9)[0] == 9
    # the server still held this machine's inventory: registering again did not make the
    # agent send all of it again
    live = tap.messages(again["token"])[-1][1]
    assert "inventory" not in live and live["inventory_hash"] == server_view(engine, machine_id)[1], live


def test_wrong_provisioning_code_is_a_clear_error(system, tmp_path):
    done = agent(tmp_path / "agent", "register", "--gateway", system.base_url, "--code", "not-a-real-code",
                 "--email", "someone@desk.test", "--name", "Someone", "--amqp", system.amqp_uri)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "invalid_provisioning_code" in done.stderr
    assert not (tmp_path / "agent" / "state.json").exists()


def test_heartbeats_spooled_while_the_broker_is_unreachable_arrive_once_in_order(
        system, tenant, tap, engine, tmp_path):
    state_dir = tmp_path / "agent"
    state = register(system, tenant.company(), state_dir)
    machine_id, token = state["machine_id"], state["token"]

    # `run` against a closed port: three heartbeats, all spooled, none lost
    offline = agent(state_dir, "run", "--interval", "1", "--debug-interval", "--count", "3", "--amqp", CLOSED_BROKER)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert "broker unreachable at amqp://guest:***@127.0.0.1:1/" in offline.stderr
    assert "heartbeat spooled — 3 waiting" in offline.stderr
    one_more = agent(state_dir, "heartbeat", "--amqp", CLOSED_BROKER)
    assert one_more.returncode == 5 and "heartbeat spooled — 4 waiting" in one_more.stderr, one_more.stderr
    status = agent(state_dir, "status", "--json")
    assert json.loads(status.stdout)["spool"]["depth"] == 4
    assert "spool: 4 heartbeat(s) waiting" in agent(state_dir, "status").stdout
    with sqlite3.connect(state_dir / "spool.sqlite3") as spool:
        spooled = spool.execute("SELECT message_id, sent_at FROM spool ORDER BY seq").fetchall()
    assert len(spooled) == 4
    assert server_view(engine, machine_id)[0] == 0 and tap.messages(token) == []

    # the stored (real) broker again: the spool is replayed first, then the live heartbeat
    online = agent(state_dir, "heartbeat")
    assert online.returncode == 0 and "after 4 spooled heartbeat(s)" in online.stdout, online.stdout + online.stderr
    heartbeats, _, changes = wait_for_heartbeats(engine, machine_id, 5)
    assert heartbeats == 5 and len(changes) == 1
    published = tap.messages(token)
    ids = [properties.message_id for properties, _ in published]
    assert len(ids) == 5 and len(set(ids)) == 5
    assert [(p.message_id, body["sent_at"]) for p, body in published[:4]] == spooled
    sent_at = [body["sent_at"] for _, body in published]
    assert sent_at == sorted(sent_at)
    assert "inventory" in published[0][1] and all("inventory" not in b for _, b in published[1:])
    report = json.loads(agent(state_dir, "status", "--json").stdout)
    assert report["spool"]["depth"] == 0 and report["last_success_via"] == "amqp"
