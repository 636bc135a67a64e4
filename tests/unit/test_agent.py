"""The desktop agent without a broker or a gateway: the spool's order, caps and drop count,
replay stopping where delivery stops, the state file's permissions, jitter bounds, when a
full inventory is due, the shared inventory hash, answer validation, CLI input errors, and
that the agent stays free of the server's dependencies."""
from __future__ import annotations

import copy
import json
import os
import random
import stat
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import requests

from chamados_agent import cli, collect, transport
from chamados_agent.errors import AgentError, CredentialsRejected, MessageRejected, Unavailable
from chamados_agent.spool import Spool
from chamados_agent.state import (FULL_INVENTORY_EVERY, State, StateStore, full_inventory_due, jittered,
                         next_sent_at, parse_time, utcnow)
from chamados_protocol import inventory as shared
from chamados_protocol.inventory import inventory_hash
from common.config import ROOT
from common.contracts.devices import Heartbeat

HASH = "a" * 64


def make_state(**changes) -> State:
    state = State(gateway="http://127.0.0.1:8000", machine_id="5b7c2d4e-0000-4000-8000-000000000001",
                  token="secret-token", token_expires_at="2030-01-01T00:00:00+00:00",
                  registered_at="2026-01-01T00:00:00+00:00")
    for key, value in changes.items():
        setattr(state, key, value)
    return state


# --- spool ---------------------------------------------------------------------------

def test_the_spool_keeps_insertion_order_and_survives_reopening(tmp_path):
    with Spool(tmp_path / "spool.sqlite3") as spool:
        for index in range(5):
            spool.push(f"m{index}", f"2026-01-01T00:00:0{index}+00:00", b"{}")
    with Spool(tmp_path / "spool.sqlite3") as spool:
        assert [item.message_id for item in spool.pending()] == ["m0", "m1", "m2", "m3", "m4"]
        assert spool.depth() == 5 and spool.oldest_sent_at() == "2026-01-01T00:00:00+00:00"
    if os.name == "posix":
        assert stat.S_IMODE((tmp_path / "spool.sqlite3").stat().st_mode) == 0o600


def test_the_row_cap_drops_the_oldest_and_counts_them(tmp_path):
    with Spool(tmp_path / "s.db", max_rows=3) as spool:
        dropped = [spool.push(f"m{i}", "t", b"x") for i in range(5)]
        assert dropped == [0, 0, 0, 1, 1]
        assert [item.message_id for item in spool.pending()] == ["m2", "m3", "m4"]
    with Spool(tmp_path / "s.db", max_rows=3) as spool:
        assert spool.dropped == 2  # the count is on disk, for `status`


def test_the_byte_cap_drops_the_oldest_until_the_rest_fits(tmp_path):
    with Spool(tmp_path / "s.db", max_bytes=250) as spool:
        for i in range(4):
            spool.push(f"m{i}", "t", b"x" * 100)
        assert [item.message_id for item in spool.pending()] == ["m2", "m3"]
        assert spool.size_bytes() == 200 and spool.dropped == 2


def test_the_age_cap_drops_what_waited_too_long(tmp_path):
    with Spool(tmp_path / "s.db", max_age_seconds=3600) as spool:
        spool.push("old", "t", b"x", now=1000.0)
        spool.push("newer", "t", b"x", now=2000.0)
        assert spool.push("now", "t", b"x", now=1000.0 + 3601) == 1
        assert [item.message_id for item in spool.pending()] == ["newer", "now"]
        assert spool.trim(now=2000.0 + 3601) == 1 and spool.dropped == 2


def test_a_message_id_is_spooled_once(tmp_path):
    import sqlite3

    with Spool(tmp_path / "s.db") as spool:
        spool.push("m", "t", b"x")
        with pytest.raises(sqlite3.IntegrityError):
            spool.push("m", "t", b"y")
        assert spool.depth() == 1


class FakeTransport:
    """Takes messages until `fail_at` (Unavailable), rejects those in `reject`."""

    def __init__(self, fail_at=None, reject=(), answer=None, rejected_token=False):
        self.fail_at, self.reject, self.answer = fail_at, set(reject), answer
        self.rejected_token = rejected_token
        self.sent, self.asked_reply = [], []

    def send(self, message_id, body, token, want_reply):
        if self.rejected_token:
            raise CredentialsRejected("token revoked")
        if message_id == self.fail_at:
            raise Unavailable("broker gone")
        if message_id in self.reject:
            raise MessageRejected("422 validation_failed")
        self.sent.append(message_id)
        if want_reply:
            self.asked_reply.append(message_id)
            return self.answer
        return None


def filled_spool(tmp_path, count=4) -> Spool:
    spool = Spool(tmp_path / "s.db")
    for i in range(count):
        spool.push(f"m{i}", f"t{i}", b"{}")
    return spool


def test_replay_goes_oldest_first_and_only_the_live_heartbeat_asks_for_an_answer(tmp_path):
    with filled_spool(tmp_path) as spool:
        fake = FakeTransport(answer={"need_inventory": True, "usb_policy": None})
        result = transport.flush(spool, fake, "tok", live_message_id="m3")
        assert fake.sent == ["m0", "m1", "m2", "m3"] and fake.asked_reply == ["m3"]
        assert result.delivered == 4 and result.live_delivered and result.answer["need_inventory"]
        assert spool.depth() == 0


def test_replay_stops_at_the_first_message_not_taken_and_keeps_the_rest(tmp_path):
    with filled_spool(tmp_path) as spool:
        result = transport.flush(spool, FakeTransport(fail_at="m2"), "tok", live_message_id="m3")
        assert result.delivered == 2 and not result.live_delivered and result.error is not None
        assert [item.message_id for item in spool.pending()] == ["m2", "m3"]


def test_a_malformed_message_is_dropped_and_counted_not_retried_forever(tmp_path):
    with filled_spool(tmp_path) as spool:
        fake = FakeTransport(reject={"m1"})
        result = transport.flush(spool, fake, "tok", live_message_id="m3")
        assert fake.sent == ["m0", "m2", "m3"] and result.rejected == 1
        assert spool.depth() == 0 and spool.counter("rejected") == 1
        assert result.live_rejected is None


def test_a_rejected_live_heartbeat_is_reported(tmp_path):
    with filled_spool(tmp_path, count=2) as spool:
        result = transport.flush(spool, FakeTransport(reject={"m1"}), "tok", live_message_id="m1")
        assert result.live_rejected and not result.live_delivered and spool.depth() == 0


def test_a_rejected_token_stops_the_replay_without_losing_anything(tmp_path):
    with filled_spool(tmp_path) as spool:
        with pytest.raises(CredentialsRejected):
            transport.flush(spool, FakeTransport(rejected_token=True), "tok", live_message_id="m3")
        assert spool.depth() == 4


# --- state ---------------------------------------------------------------------------

@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_the_state_file_is_owner_only_and_round_trips(tmp_path):
    store = StateStore(tmp_path / "agent")
    store.save(make_state(need_inventory=False, unanswered=2))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert store.load() == make_state(need_inventory=False, unanswered=2)
    assert [p.name for p in store.directory.iterdir()] == ["state.json"]  # no temp file left behind


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_state_file_made_readable_to_others_is_tightened(tmp_path, capsys):
    store = StateStore(tmp_path)
    store.save(make_state())
    os.chmod(store.path, 0o644)
    store.load()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert "reset to 0600" in capsys.readouterr().err


def test_a_damaged_state_file_is_a_clear_error(tmp_path):
    store = StateStore(tmp_path)
    store.path.write_text('{"gateway": "http://x"')
    with pytest.raises(AgentError, match="damaged.*register again"):
        store.load()
    store.path.write_text(json.dumps({"gateway": "http://x", "machine_id": "m", "token": "t",
                                      "token_expires_at": "x", "registered_at": "x", "unanswered": "3"}))
    with pytest.raises(AgentError, match="unanswered is not a int"):
        store.load()


def test_unknown_keys_in_the_state_file_are_ignored(tmp_path):
    """A newer agent's state read by an older one after a downgrade."""
    store = StateStore(tmp_path)
    data = {key: value for key, value in make_state().__dict__.items()}
    store.path.write_text(json.dumps({**data, "added_later": 1}))
    assert store.load() == make_state()


# --- rules ---------------------------------------------------------------------------

def test_jitter_stays_within_ten_percent_and_actually_spreads():
    rng = random.Random(5)
    samples = [jittered(300, rng) for _ in range(10_000)]
    assert all(270 <= s <= 330 for s in samples)
    assert min(samples) < 275 and max(samples) > 325


def test_when_a_full_inventory_is_due():
    now = utcnow()
    recent = (now - timedelta(hours=1)).isoformat()
    settled = make_state(inventory_hash=HASH, last_full_at=recent, need_inventory=False)
    assert full_inventory_due(settled, HASH, now) is None
    assert full_inventory_due(make_state(), HASH, now) == "first inventory"
    assert full_inventory_due(make_state(inventory_hash=HASH, last_full_at=recent, need_inventory=True),
                              HASH, now) == "the server asked for it"
    assert full_inventory_due(settled, "b" * 64, now) == "the inventory changed"
    day_old = make_state(inventory_hash=HASH, need_inventory=False,
                         last_full_at=(now - FULL_INVENTORY_EVERY).isoformat())
    assert full_inventory_due(day_old, HASH, now) == "24 h since the last full inventory"
    almost = make_state(inventory_hash=HASH, need_inventory=False,
                        last_full_at=(now - FULL_INVENTORY_EVERY + timedelta(minutes=1)).isoformat())
    assert full_inventory_due(almost, HASH, now) is None


def test_sent_at_never_goes_back_even_if_the_clock_does():
    now = utcnow()
    assert next_sent_at(None, now) == now
    assert next_sent_at((now - timedelta(seconds=5)).isoformat(), now) == now
    later = now + timedelta(minutes=3)  # the clock was stepped back by NTP
    assert next_sent_at(later.isoformat(), now) == later + timedelta(milliseconds=1)
    assert parse_time("garbage") is None


# --- inventory: one hash on both sides ---------------------------------------------------

def shuffled(value, rng):
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: shuffled(item, rng) for key, item in items}
    if isinstance(value, list):
        items = [shuffled(item, rng) for item in value]
        rng.shuffle(items)
        return items
    return value


def test_the_agent_hashes_with_the_servers_function():
    assert collect.inventory_hash is shared.inventory_hash
    assert cli.inventory_hash is shared.inventory_hash


def test_the_collected_inventory_hashes_the_same_reordered_and_recollected():
    document = collect.inventory()
    assert document["os"]["name"] and document["hardware"]["memory_bytes"] > 0
    digest = shared.inventory_hash(document)
    assert shared.inventory_hash(shuffled(copy.deepcopy(document), random.Random(3))) == digest
    volatile = copy.deepcopy(document)
    volatile["collected_at"] = "2000-01-01T00:00:00+00:00"
    volatile["hardware"]["uptime_seconds"] = 123  # a volatile key the server ignores too
    assert shared.inventory_hash(volatile) == digest
    assert shared.inventory_hash(collect.inventory()) == digest  # stable from one run to the next
    changed = copy.deepcopy(document)
    changed["hardware"]["memory_bytes"] += 1
    assert shared.inventory_hash(changed) != digest


def test_an_inventory_over_the_size_limit_keeps_the_package_count():
    big = {"os": {"name": "X"}, "software": {"manager": "dpkg", "packages": [
        {"name": f"package-{i}", "version": "1.0" * 20, "arch": "amd64"} for i in range(20_000)]}}
    fitted = collect.fit(big)
    assert fitted["software"]["package_count"] == 20_000 and "packages" not in fitted["software"]
    assert len(orjson.dumps(fitted)) < collect.INVENTORY_BUDGET


def test_heartbeats_fit_the_shared_contract():
    state = make_state()
    full, digest, reason = cli.build_heartbeat(state)
    assert reason == "first inventory" and full["inventory_hash"] == digest
    assert shared.inventory_hash(full["inventory"]) == digest
    Heartbeat().load(orjson.loads(orjson.dumps(full)))
    settled = make_state(inventory_hash=digest, last_full_at=utcnow().isoformat(), need_inventory=False,
                         last_sent_at=full["sent_at"])
    light, _, reason = cli.build_heartbeat(settled)
    assert reason is None and "inventory" not in light and light["sent_at"] > full["sent_at"]
    assert set(light["metrics"]) == {"cpu_percent", "memory_percent", "disks", "uptime_seconds"}


# --- answers from the server -------------------------------------------------------------

def test_heartbeat_answers_are_validated():
    assert transport.load_answer({"need_inventory": False, "usb_policy": None, "added_later": 1}) == {
        "need_inventory": False, "usb_policy": None}
    for bad in ([], {"need_inventory": "perhaps", "usb_policy": None}, {"usb_policy": None},
                {"need_inventory": True, "usb_policy": "MELT"}):
        with pytest.raises(ValueError):
            transport.load_answer(bad)


def fake_response(status: int, body) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = orjson.dumps(body) if not isinstance(body, bytes) else body
    response.headers["Content-Type"] = "application/json"
    return response


def error(code, message="m", details=None):
    return {"error": {"code": code, "message": message, "details": details or {}}}


@pytest.mark.parametrize("status, body, raised", [
    (401, error("invalid_token"), CredentialsRejected),
    (422, error("validation_failed"), MessageRejected),
    (413, error("payload_too_large"), MessageRejected),
    (503, error("service_unavailable"), Unavailable),
    (502, b"<html>bad gateway</html>", Unavailable),
])
def test_http_heartbeat_failures_map_to_what_the_agent_does(monkeypatch, status, body, raised):
    monkeypatch.setattr(requests.Session, "post", lambda self, *a, **k: fake_response(status, body))
    with pytest.raises(raised):
        transport.HttpTransport("http://gw").send("m", b"{}", "tok", want_reply=True)


def test_an_unusable_202_answer_still_counts_as_delivered(monkeypatch):
    monkeypatch.setattr(requests.Session, "post", lambda self, *a, **k: fake_response(202, {"need_inventory": 3}))
    assert transport.HttpTransport("http://gw").send("m", b"{}", "tok", want_reply=True) is None


def test_registration_answers(monkeypatch):
    def answer_with(status, body):
        monkeypatch.setattr(requests, "post", lambda *a, **k: fake_response(status, body))

    answer_with(401, error("invalid_provisioning_code"))
    with pytest.raises(CredentialsRejected, match="invalid_provisioning_code"):
        transport.register("http://gw", {})
    answer_with(422, error("validation_failed", details={"fields": {"mac_addresses": ["no physical MAC"],
                                                                     "serial_numbers": ["no real serial"]}}))
    with pytest.raises(transport.NoHardwareIdentifier):
        transport.register("http://gw", {})
    answer_with(422, error("validation_failed", details={"fields": {"hostname": ["too long"]}}))
    with pytest.raises(AgentError, match="hostname: .*too long"):
        transport.register("http://gw", {})
    answer_with(201, {"machine_id": "not-a-uuid", "token": "t", "expires_at": "2030-01-01T00:00:00Z",
                      "reused": False})
    with pytest.raises(AgentError, match="not valid"):
        transport.register("http://gw", {})
    answer_with(201, {"machine_id": "5b7c2d4e-0000-4000-8000-000000000001", "token": "bad token",
                      "expires_at": "2030-01-01T00:00:00Z", "reused": False})
    with pytest.raises(AgentError, match="unusable machine token"):
        transport.register("http://gw", {})
    good = {"machine_id": "5b7c2d4e-0000-4000-8000-000000000001", "token": "t0ken",
            "expires_at": "2030-01-01T00:00:00Z", "reused": False}
    answer_with(201, {**good, "amqp_uri": "amqp://chamados-agent:pw@broker:5672/", "inventory_hash": "x"})
    assert {key: transport.register("http://gw", {})[key] for key in ("amqp_uri", "inventory_hash")} == {
        "amqp_uri": "amqp://chamados-agent:pw@broker:5672/", "inventory_hash": None}  # not a SHA-256
    answer_with(201, {**good, "amqp_uri": "http://not-a-broker/"})
    assert transport.register("http://gw", {})["amqp_uri"] is None


def test_uris_are_shown_without_their_password():
    assert transport.mask("amqp://user:s3cret@broker:5671/vh") == "amqp://user:***@broker:5671/vh"
    assert transport.mask("amqp://broker/") == "amqp://broker/"


# --- the command line ----------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["register", "--gateway", "ftp://x", "--code", "c", "--email", "a@b.co", "--name", "n"], "http:// or https://"),
    (["register", "--gateway", "http://gw?x=1", "--code", "c", "--email", "a@b.co", "--name", "n"], "base URL"),
    (["register", "--gateway", "http://gw", "--code", "c", "--email", "a@b.co", "--name", "n",
      "--amqp", "http://broker"], "amqp:// or amqps://"),
    (["run", "--interval", "0"], "between 1 and 86400"),
    (["run", "--interval", "soon"], "not a number"),
    (["run", "--count", "0"], "1 or more"),
    (["heartbeat", "--http", "--amqp", "amqp://b/"], "not allowed with"),
    (["heartbeat", "--reply-timeout", "-1"], "between 0 and 60"),
])
def test_bad_arguments_exit_2_with_the_reason(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--state-dir", str(tmp_path)])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_bad_registration_fields_name_the_flag(tmp_path, capsys):
    code = cli.main(["register", "--gateway", "http://127.0.0.1:9", "--code", "c", "--email", "not-an-email",
                     "--name", "n", "--state-dir", str(tmp_path)])
    assert code == 2 and "--email: Not a valid email address" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["heartbeat"], ["run"], ["status"]])
def test_an_unregistered_agent_says_so(command, tmp_path, capsys):
    assert cli.main([*command, "--state-dir", str(tmp_path / "none")]) == 3
    captured = capsys.readouterr()
    assert "register" in captured.out + captured.err and "Traceback" not in captured.err


def test_state_dir_is_accepted_before_the_command(tmp_path, capsys):
    assert cli.main(["--state-dir", str(tmp_path / "x"), "status", "--json"]) == 3
    assert json.loads(capsys.readouterr().out)["state_dir"] == str(tmp_path / "x")


def test_the_agent_does_not_load_the_server_side():
    """It ships to desktops: nameko, SQLAlchemy, kombu, eventlet or any server package would
    be dead weight there, and a sign the dependency rule was broken (the agent shares only
    chamados_protocol with the server; tests/e2e/test_agent_wheel.py installs it alone)."""
    probe = ("import sys, chamados_agent.cli, chamados_agent.transport, chamados_agent.collect; "
             "print('\\n'.join(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "chamados_protocol.heartbeat" in loaded  # the probe saw the agent's imports
    forbidden = {name for name in loaded if name.split(".")[0] in
                 {"nameko", "sqlalchemy", "kombu", "eventlet", "psycopg", "werkzeug", "amqp",
                  "chamados", "common", "services"}}
    assert not forbidden


# --- the run loop ----------------------------------------------------------------------

def test_need_inventory_brings_the_next_heartbeat_forward():
    asked = {"answer": {"need_inventory": True, "usb_policy": None}, "full_inventory": None}
    assert all(9 <= cli.next_wait(300, asked) <= 11 for _ in range(200))
    fine = {"answer": {"need_inventory": False, "usb_policy": None}, "full_inventory": None}
    assert all(270 <= cli.next_wait(300, fine) <= 330 for _ in range(200))
    assert 270 <= cli.next_wait(300, None) <= 330  # spooled: the normal interval
    # asked again right after a full one: no loop of immediate resends
    assert cli.next_wait(300, {**asked, "full_inventory": "the server asked for it"}) >= 270


class RecordingEvent:
    waits: list = []

    def __init__(self):
        self.flag = False

    def is_set(self):
        return self.flag

    def set(self):
        self.flag = True

    def wait(self, seconds):
        RecordingEvent.waits.append(seconds)


def test_run_keeps_going_while_spooling_and_stops_on_a_rejected_token(tmp_path, monkeypatch, capsys):
    StateStore(tmp_path).save(make_state())
    outcomes = iter([Unavailable("broker unreachable; heartbeat spooled — 1 waiting"),
                     {"via": "amqp", "full_inventory": None, "replayed": 1, "rejected": 0,
                      "answer": {"need_inventory": False, "usb_policy": None}},
                     CredentialsRejected("token revoked — register again")])

    def fake_send(args, store, force_full=False):
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(cli, "send_heartbeat", fake_send)
    monkeypatch.setattr(cli.threading, "Event", RecordingEvent)
    RecordingEvent.waits = []
    handler = __import__("signal").getsignal(__import__("signal").SIGTERM)
    assert cli.main(["run", "--interval", "60", "--state-dir", str(tmp_path)]) == 4
    assert len(RecordingEvent.waits) == 2 and all(54 <= w <= 66 for w in RecordingEvent.waits)
    err = capsys.readouterr().err
    assert "spooled — 1 waiting" in err and "register again" in err and "Traceback" not in err
    assert __import__("signal").getsignal(__import__("signal").SIGTERM) == handler  # restored


def test_run_refuses_an_interval_under_a_minute_unless_asked_for_debugging(tmp_path, capsys):
    assert cli.main(["run", "--interval", "10", "--state-dir", str(tmp_path)]) == 2
    assert "--debug-interval" in capsys.readouterr().err
    # allowed with the flag: it goes on to the next check (nothing registered here)
    assert cli.main(["run", "--interval", "10", "--debug-interval", "--state-dir", str(tmp_path)]) == 3


def test_status_into_a_pipe_closed_early_ends_quietly(tmp_path):
    """`chamados-agent status | head`: the reader may be gone before the agent writes."""
    StateStore(tmp_path).save(make_state())
    process = subprocess.Popen([sys.executable, "-m", "chamados_agent.cli", "status", "--state-dir", str(tmp_path)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader leaves before the first line
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0 and b"Traceback" not in err, err.decode()


def test_re_registration_of_a_known_machine_keeps_the_servers_inventory_hash(monkeypatch, tmp_path):
    held = inventory_hash(collect.inventory())
    monkeypatch.setattr(cli, "register", lambda gateway, payload: {
        "machine_id": str(uuid.uuid4()), "token": "t0ken", "expires_at": "2027-01-01T00:00:00+00:00",
        "reused": True, "inventory_hash": held, "amqp_uri": "amqp://chamados-agent:pw@broker.example:5672/"})
    assert cli.main(["register", "--gateway", "http://127.0.0.1:1", "--code", "c", "--email", "a@b.co",
                     "--name", "Ana", "--state-dir", str(tmp_path)]) == 0
    state = StateStore(tmp_path).load()
    assert (state.inventory_hash, state.need_inventory) == (held, False)
    assert state.amqp_uri == "amqp://chamados-agent:pw@broker.example:5672/"  # the broker the server names
    # what the next heartbeat decides: the hash only, as long as the inventory is the same
    assert full_inventory_due(state, held, datetime.now(timezone.utc)) is None
    assert full_inventory_due(state, "f" * 64, datetime.now(timezone.utc)) == "the inventory changed"


# --- as a systemd service ----------------------------------------------------------------

def test_install_service_under_a_root_writes_the_unit_and_changes_nothing_else(tmp_path, capsys):
    root = tmp_path / "image"
    assert cli.main(["install-service", "--root", str(root)]) == 3  # nothing registered there yet
    assert "register first" in capsys.readouterr().err
    StateStore(root / "var/lib/chamados-agent").save(make_state())
    assert cli.main(["install-service", "--root", str(root), "--http", "--interval", "600"]) == 0
    unit = (root / "etc/systemd/system/chamados-agent.service").read_text()
    assert "User=chamados-agent\n" in unit and "Restart=on-failure\n" in unit
    assert "StateDirectory=chamados-agent\n" in unit and "StateDirectoryMode=0700\n" in unit
    assert "NoNewPrivileges=true\n" in unit and "WantedBy=multi-user.target\n" in unit
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.split("=", 1)[1].startswith("/")  # never found through a PATH
    assert exec_start.endswith("run --state-dir /var/lib/chamados-agent --interval 600 --http")
    printed = capsys.readouterr().out
    assert "would run: useradd --system" in printed and "would run: systemctl enable --now" in printed

    assert cli.main(["uninstall-service", "--root", str(root), "--purge"]) == 0
    assert not (root / "etc/systemd/system/chamados-agent.service").exists()
    assert "would run: userdel chamados-agent" in capsys.readouterr().out


def test_install_service_refuses_a_test_interval_and_a_non_root_user(tmp_path, capsys):
    assert cli.main(["install-service", "--root", str(tmp_path), "--interval", "10"]) == 2
    assert "under 60 seconds" in capsys.readouterr().err
    if os.geteuid() != 0:
        assert cli.main(["install-service"]) == 2
        assert "as root" in capsys.readouterr().err
