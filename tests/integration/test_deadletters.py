"""Dead-letter tooling (common/deadletters.py, `chamados dlq`) against the real broker, in a
vhost of this module's own: listing leaves every message in place and in order, a replay
puts a message back on its original queue with its own headers and the attempt count reset
(and only then drops the parked copy), a missing queue fails clearly, a purge drops only what
was selected."""
import os
import hashlib
import subprocess
import sys
import uuid
from types import SimpleNamespace

import orjson
import pytest
from kombu import Connection, Queue

from common import deadletters
from common.config import ROOT
from common.messaging import ATTEMPTS_HEADER, DEAD_LETTER_QUEUE, PARKED_BODY_MAX_BYTES, dead_letter
from tests.harness import RabbitVhost


@pytest.fixture(scope="module")
def vhost():
    created = RabbitVhost.create()
    yield created
    created.delete()


@pytest.fixture
def amqp_uri(vhost):
    """A clean dead-letter queue for each test."""
    with Connection(vhost.amqp_uri) as connection:
        queue = DEAD_LETTER_QUEUE(connection.channel())
        queue.declare()
        queue.purge()
    return vhost.amqp_uri


def message(body, headers=None, content_type="application/json", properties=None):
    """What `dead_letter` reads of a kombu message."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    encoding = "utf-8" if content_type == "application/json" else None
    return SimpleNamespace(body=raw, headers=headers or {}, content_type=content_type,
                           content_encoding=encoding,
                           properties={"content_type": content_type, "content_encoding": encoding,
                                       **(properties or {})})


def park(amqp_uri, queue, body, reason, attempts=1, headers=None, content_type="application/json",
         properties=None):
    dead_letter(amqp_uri, "tests", queue, message(body, headers, content_type, properties), reason, attempts)


def raw_queue(amqp_uri, name) -> list:
    """Every message of a queue, taken for good (ack), oldest first."""
    taken = []
    with Connection(amqp_uri) as connection:
        queue = Queue(name)(connection.channel())
        while (got := queue.get(no_ack=False)) is not None:
            taken.append((got.body, dict(got.headers or {}), dict(got.properties)))
            got.ack()
    return taken


def depth(amqp_uri, name) -> int:
    with Connection(amqp_uri) as connection:
        return connection.channel().queue_declare(queue=name, passive=True)[1]


def declare(amqp_uri, name):
    with Connection(amqp_uri) as connection:
        Queue(name, durable=True)(connection.channel()).declare()


def test_list_filters_and_show_leave_every_message_in_place(amqp_uri):
    tenant = str(uuid.uuid4())
    park(amqp_uri, "evt-a--x.on_a", {"tenant_id": tenant, "n": 1}, "KeyError: 'user_id'", 5)
    park(amqp_uri, "evt-a--x.on_a", {"tenant_id": tenant, "n": 2}, "ValidationFailed: bad", 1,
         headers={"custom": "kept", "authorization": "secret-token"})
    park(amqp_uri, "evt-b--y.on_b", {"n": 3}, "KeyError: 'other'", 2)
    park(amqp_uri, "devices.heartbeats", b"\xff\xfe not json", "malformed_json: nope", 1,
         content_type="application/octet-stream")
    before = depth(amqp_uri, DEAD_LETTER_QUEUE.name)
    assert before == 4

    everything = deadletters.list_letters(amqp_uri)
    assert [letter.summary()["queue"] for letter in everything.items] == [
        "evt-a--x.on_a", "evt-a--x.on_a", "evt-b--y.on_b", "devices.heartbeats"]  # oldest first
    assert everything.matched == 4 and everything.complete and everything.scanned == 4
    ids = [letter.id for letter in everything.items]
    assert len(set(ids)) == 4 and all(deadletters.LETTER_ID.match(i) for i in ids)
    assert everything.items[0].tenant_id == tenant and everything.items[2].tenant_id is None

    by_queue = deadletters.list_letters(amqp_uri, queue="evt-a--x.on_a")
    assert [letter.id for letter in by_queue.items] == ids[:2]
    by_reason = deadletters.list_letters(amqp_uri, reason="keyerror")  # substring, any case
    assert [letter.id for letter in by_reason.items] == [ids[0], ids[2]]
    prefix = deadletters.list_letters(amqp_uri, queue="evt-a--x.on_a", reason="ValidationFailed")
    assert [letter.id for letter in prefix.items] == [ids[1]]
    limited = deadletters.list_letters(amqp_uri, limit=1)
    assert [letter.id for letter in limited.items] == ids[:1] and limited.matched == 4
    bounded = deadletters.list_letters(amqp_uri, scan_limit=2)
    assert bounded.scanned == 2 and not bounded.complete and bounded.queue_depth == 4
    mine = deadletters.list_letters(amqp_uri, visible=lambda letter: letter.tenant_id == tenant)
    assert [letter.id for letter in mine.items] == ids[:2]

    shown = deadletters.get_letter(amqp_uri, ids[1]).detail()
    assert shown["body_encoding"] == "json" and orjson.loads(shown["body"])["n"] == 2
    assert shown["headers"]["custom"] == "kept" and "authorization" not in shown["headers"]
    assert len(shown["headers"]["authorization-sha256"]) == 64
    assert shown["reason"] == "ValidationFailed: bad" and shown["attempts"] == 1
    assert shown["properties"]["content_type"] == "application/json"
    binary = deadletters.get_letter(amqp_uri, ids[3].upper()).detail()
    assert binary["body_encoding"] == "base64" and binary["body"].startswith("//4g")
    assert deadletters.get_letter(amqp_uri, uuid.uuid4().hex) is None
    assert deadletters.get_letter(amqp_uri, "not-an-id") is None
    assert deadletters.get_letter(amqp_uri, ids[2], visible=lambda letter: letter.tenant_id == tenant) is None

    # nothing was taken, nothing reordered
    assert depth(amqp_uri, DEAD_LETTER_QUEUE.name) == before
    assert [letter.id for letter in deadletters.list_letters(amqp_uri).items] == ids


def test_a_big_body_is_shown_cut(amqp_uri):
    park(amqp_uri, "evt-big--x.on_big", {"blob": "x" * 200_000}, "KeyError: big")
    listing = deadletters.list_letters(amqp_uri)
    assert listing.items[0].summary()["body_bytes"] > 200_000
    shown = deadletters.get_letter(amqp_uri, listing.items[0].id).detail()
    assert shown["body_truncated"] and len(shown["body"]) == deadletters.BODY_PREVIEW_BYTES


def test_a_body_past_the_parking_bound_is_kept_cut_and_cannot_be_replayed(amqp_uri):
    target = f"evt-huge-{uuid.uuid4().hex[:8]}--x.on_it"
    declare(amqp_uri, target)
    whole = b'{"blob": "' + b"x" * (PARKED_BODY_MAX_BYTES * 3) + b'"}'
    park(amqp_uri, target, whole, "KeyError: huge")
    outcome = deadletters.replay(amqp_uri, deadletters.Selection.of(everything=True))
    assert outcome.done == [] and "cut" in outcome.failed[0]["error"], outcome
    assert depth(amqp_uri, target) == 0
    parked = raw_queue(amqp_uri, DEAD_LETTER_QUEUE.name)
    assert len(parked) == 1
    body, headers, _ = parked[0]
    body = body if isinstance(body, bytes) else body.encode()
    assert len(body) == PARKED_BODY_MAX_BYTES and whole.startswith(body)
    assert headers["x-body-truncated-from"] == len(whole)
    assert headers["x-body-sha256"] == hashlib.sha256(whole).hexdigest()


def test_a_message_parked_before_ids_existed_gets_a_stable_one(amqp_uri):
    headers = {"x-dead-letter-reason": "KeyError: old", "x-original-queue": "evt-old--x.on_old",
               ATTEMPTS_HEADER: 5, "x-dead-lettered-at": "2026-01-01T00:00:00+00:00"}
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        connection.Producer().publish(b'{"old": true}', exchange=DEAD_LETTER_QUEUE.exchange,
                                      routing_key="evt-old--x.on_old", headers=headers,
                                      content_type="application/json", content_encoding="utf-8",
                                      delivery_mode=2)
    first = deadletters.list_letters(amqp_uri).items[0].id
    assert deadletters.LETTER_ID.match(first)
    assert deadletters.list_letters(amqp_uri).items[0].id == first
    assert deadletters.get_letter(amqp_uri, first) is not None


def test_replay_puts_it_back_on_its_queue_with_its_headers_then_drops_the_parked_copy(amqp_uri):
    target = f"evt-replay-{uuid.uuid4().hex[:8]}--x.on_it"
    declare(amqp_uri, target)
    body = {"tenant_id": str(uuid.uuid4()), "event_id": str(uuid.uuid4())}
    sent_at = 1_796_637_000  # seconds since the epoch, as AMQP carries it
    park(amqp_uri, target, body, "KeyError: fixed since", attempts=5,
         headers={"custom": "kept", "number": 7, ATTEMPTS_HEADER: 4},
         properties={"message_id": "the-original-id", "timestamp": sent_at})
    park(amqp_uri, target, {"other": True}, "KeyError: stays")
    letters = deadletters.list_letters(amqp_uri).items
    wanted, other = letters[0].id, letters[1].id

    outcome = deadletters.replay(amqp_uri, deadletters.Selection.of(ids=[wanted]))
    assert outcome.done == [wanted] and not outcome.failed and not outcome.not_found, outcome

    arrived = raw_queue(amqp_uri, target)
    assert len(arrived) == 1
    arrived_body, arrived_headers, properties = arrived[0]
    assert orjson.loads(arrived_body) == body
    assert arrived_headers.get("custom") == "kept" and arrived_headers.get("number") == 7
    assert arrived_headers.get(ATTEMPTS_HEADER, 0) == 0, "the attempt count starts again"
    assert not [key for key in arrived_headers if key.startswith("x-dead-letter") or key in (
        "x-original-queue", "x-dead-lettered-at")], arrived_headers
    assert properties["delivery_mode"] == 2 and properties["content_type"] == "application/json"
    # the parked copy kept what identifies the message, so the replay carries it too
    assert properties["message_id"] == "the-original-id" and properties["timestamp"] == sent_at
    assert [letter.id for letter in deadletters.list_letters(amqp_uri).items] == [other]

    again = deadletters.replay(amqp_uri, deadletters.Selection.of(ids=[wanted]))
    assert again.done == [] and again.not_found == [wanted]


def test_replay_to_a_queue_that_does_not_exist_fails_and_keeps_the_message(amqp_uri):
    park(amqp_uri, "evt-gone--x.on_gone", {"n": 1}, "KeyError: gone")
    park(amqp_uri, "devices.heartbeats", {"n": 2}, "invalid: x", headers={"authorization": "t"})
    declare(amqp_uri, "devices.heartbeats")
    outcome = deadletters.replay(amqp_uri, deadletters.Selection.of(everything=True))
    assert outcome.done == [] and len(outcome.failed) == 2, outcome
    errors = {failure["queue"]: failure["error"] for failure in outcome.failed}
    assert "does not exist" in errors["evt-gone--x.on_gone"]
    assert "credential" in errors["devices.heartbeats"]  # its token was never kept
    assert depth(amqp_uri, DEAD_LETTER_QUEUE.name) == 2
    assert depth(amqp_uri, "devices.heartbeats") == 0


def test_purge_drops_only_the_selection_and_everything_needs_all(amqp_uri):
    for n, queue in enumerate(("evt-p--x.a", "evt-p--x.a", "evt-p--x.b")):
        park(amqp_uri, queue, {"n": n}, f"KeyError: {n}")
    ids = [letter.id for letter in deadletters.list_letters(amqp_uri).items]
    with pytest.raises(deadletters.BadSelection):
        deadletters.Selection.of()
    with pytest.raises(deadletters.BadSelection):
        deadletters.Selection.of(ids=[ids[0]], queue="evt-p--x.a")
    with pytest.raises(deadletters.BadSelection):
        deadletters.Selection.of(ids=["nope"])

    outcome = deadletters.purge(amqp_uri, deadletters.Selection.of(queue="evt-p--x.a", reason="KeyError: 1"))
    assert outcome.done == [ids[1]]
    assert [letter.id for letter in deadletters.list_letters(amqp_uri).items] == [ids[0], ids[2]]
    outcome = deadletters.purge(amqp_uri, deadletters.Selection.of(everything=True))
    assert sorted(outcome.done) == sorted([ids[0], ids[2]])
    assert depth(amqp_uri, DEAD_LETTER_QUEUE.name) == 0


def test_an_unreachable_broker_is_one_clear_error():
    with pytest.raises(deadletters.BrokerUnavailable, match="unreachable"):
        deadletters.list_letters("amqp://guest:guest@127.0.0.1:1/")


def cli(amqp_uri, *args):
    env = {**os.environ, "AMQP_URI": amqp_uri}
    return subprocess.run([sys.executable, "-m", "chamados.cli", "dlq", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_the_cli_lists_shows_replays_and_purges(amqp_uri):
    target = f"evt-cli-{uuid.uuid4().hex[:8]}--x.on_it"
    declare(amqp_uri, target)
    park(amqp_uri, target, {"n": 1}, "KeyError: cli one", attempts=3)
    park(amqp_uri, "evt-cli--x.other", {"n": 2}, "ValueError: cli two")
    ids = [letter.id for letter in deadletters.list_letters(amqp_uri).items]

    listed = cli(amqp_uri, "list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "ID" in listed.stdout and "REASON" in listed.stdout
    assert ids[0] in listed.stdout and ids[1] in listed.stdout and "KeyError: cli one" in listed.stdout
    filtered = cli(amqp_uri, "list", "--queue", target)
    assert ids[0] in filtered.stdout and ids[1] not in filtered.stdout
    assert depth(amqp_uri, DEAD_LETTER_QUEUE.name) == 2

    shown = cli(amqp_uri, "show", ids[0])
    assert shown.returncode == 0 and '"n": 1' in shown.stdout.replace('"n":1', '"n": 1'), shown.stdout
    missing = cli(amqp_uri, "show", uuid.uuid4().hex)
    assert missing.returncode == 1 and "no dead letter" in missing.stderr

    refused = cli(amqp_uri, "purge")
    assert refused.returncode == 2 and "--all" in refused.stderr
    replayed = cli(amqp_uri, "replay", ids[0])
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert depth(amqp_uri, target) == 1
    purged = cli(amqp_uri, "purge", "--all")
    assert purged.returncode == 0 and "purged 1" in purged.stdout, purged.stdout
    assert depth(amqp_uri, DEAD_LETTER_QUEUE.name) == 0

    down = cli("amqp://guest:guest@127.0.0.1:1/", "list")
    assert down.returncode == 1 and "unreachable" in down.stderr and "Traceback" not in down.stderr
