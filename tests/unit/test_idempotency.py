"""Idempotency-Key (common/idempotency.py): the pure parts, the gateway's header check, and
the record's life on a SQLite store (claim, record, replay, refuse, forget, purge)."""
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select, update
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from common import idempotency
from common.config import Settings
from common.db import Store, new_metadata, utcnow
from common.errors import (BadRequest, Conflict, NotFound, ServiceUnavailable, ValidationFailed)
from services.gateway.http import idempotency_key
from services.gateway.responses import error_response

ACTOR = {"tenant_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()), "role": "agent"}


# --- pure parts ----------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["a", "x" * 255, "5f0c-uuid-like-9a1b", "!~{}[]:;"])
def test_valid_keys(key):
    assert idempotency.valid_key(key)


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "tab\tkey", "acentuação", "nl\n", None, 42])
def test_invalid_keys(key):
    assert not idempotency.valid_key(key)


def test_the_fingerprint_covers_method_path_and_body():
    base = idempotency.request_fingerprint("POST", "/api/tickets?", b'{"subject": "a"}')
    assert base == idempotency.request_fingerprint("post", "/api/tickets?", b'{"subject": "a"}')
    assert len({base,
                idempotency.request_fingerprint("PATCH", "/api/tickets?", b'{"subject": "a"}'),
                idempotency.request_fingerprint("POST", "/api/tickets/x?", b'{"subject": "a"}'),
                idempotency.request_fingerprint("POST", "/api/tickets?", b'{"subject": "b"}'),
                # the parts are delimited: moving bytes between them changes the fingerprint
                idempotency.request_fingerprint("POST", "/api/tickets?{", b'"subject": "a"}')}) == 5


def test_a_key_is_one_persons_for_one_operation():
    one = idempotency.key_hash("t", "u", "k", "start")
    assert one == idempotency.key_hash("t", "u", "k", "start")
    assert len({one, idempotency.key_hash("t", "v", "k", "start"),
                idempotency.key_hash("s", "u", "k", "start"),
                idempotency.key_hash("t", "u", "k", "pause"),
                idempotency.key_hash("t", "u", "K", "start")}) == 5


def test_a_recorded_refusal_is_raised_again_as_itself():
    original = Conflict("not now", code="invalid_transition", details={"status": "RESOLVED"})
    with pytest.raises(Conflict) as raised:
        idempotency.replayed(idempotency.error_record(original))
    assert (raised.value.code, raised.value.message, raised.value.details) == \
        ("invalid_transition", "not now", {"status": "RESOLVED"})
    with pytest.raises(Conflict):  # an unknown class: still a refusal, never a 500
        idempotency.replayed({"error": {"class": "gone.Error", "message": "m", "code": "c",
                                        "details": {}}})
    assert idempotency.replayed({"result": {"id": 1}}) == {"id": 1}


def test_the_worker_context_is_checked():
    assert idempotency.request_from({}) is None
    assert idempotency.request_from({"idempotency_key": 7, "idempotency_request": "f"}) is None
    assert idempotency.request_from({"idempotency_key": "k"}) is None
    request = idempotency.request_from({"idempotency_key": "k", "idempotency_request": "f" * 64})
    assert (request.key, request.fingerprint) == ("k", "f" * 64)


# --- the gateway -----------------------------------------------------------------------------

def http_request(headers) -> Request:
    return Request(EnvironBuilder(method="POST", path="/api/tickets", headers=headers).get_environ())


def test_the_gateway_reads_the_header():
    assert idempotency_key(http_request({})) is None
    assert idempotency_key(http_request({"Idempotency-Key": "abc-123"})) == "abc-123"
    with pytest.raises(BadRequest) as raised:
        idempotency_key(http_request({"Idempotency-Key": "x" * 256}))
    assert raised.value.code == "invalid_idempotency_key"
    assert error_response(raised.value).status_code == 400


def test_request_in_progress_says_when_to_retry():
    response = error_response(Conflict("running", code="request_in_progress",
                                       details={"retry_after_seconds": 1}))
    assert response.status_code == 409 and response.headers["Retry-After"] == "1"
    assert "Retry-After" not in error_response(Conflict("no", code="invalid_transition")).headers


# --- the record, on SQLite -------------------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    metadata = new_metadata()
    table = idempotency.idempotency_table(metadata)
    engine = create_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    metadata.create_all(engine)
    store = Store(Settings(var_dir=tmp_path), "tests", engine=engine)
    store.table = table
    yield store
    engine.dispose()


def rows(store):
    with store.engine.connect() as connection:
        return connection.execute(select(store.table)).all()


def test_without_a_key_the_work_just_runs():
    once = idempotency.idempotent(None)

    class Service:
        idempotency = None  # no key in the worker context
        db = None
        calls = []

        @once
        def start(self, actor, ticket_id):
            self.calls.append(ticket_id)
            return ticket_id

    service = Service()
    assert service.start(ACTOR, "a") == "a" and service.start(ACTOR, "a") == "a"
    assert Service.calls == ["a", "a"]


def test_a_retry_gets_the_first_answer(store):
    calls = []
    request = idempotency.Request("key-1", "f1")

    def work():
        calls.append(1)
        return {"id": "t1", "n": len(calls)}

    first = request.run(store, store.table, ACTOR, "create_ticket", work)
    again = request.run(store, store.table, ACTOR, "create_ticket", work)
    assert first == again == {"id": "t1", "n": 1} and calls == [1]
    assert [row.state for row in rows(store)] == ["done"]
    # another person, or another operation, with the same key: its own record
    other = dict(ACTOR, user_id=str(uuid.uuid4()))
    assert idempotency.Request("key-1", "f1").run(store, store.table, other, "create_ticket", work)["n"] == 2
    assert request.run(store, store.table, ACTOR, "start", work)["n"] == 3


def test_the_same_key_for_another_request_is_refused(store):
    idempotency.Request("k", "f1").run(store, store.table, ACTOR, "start", lambda: {})
    with pytest.raises(ValidationFailed) as raised:
        idempotency.Request("k", "f2").run(store, store.table, ACTOR, "start", lambda: {})
    assert raised.value.code == "idempotency_key_reused"
    assert error_response(raised.value).status_code == 422


def test_a_refusal_is_recorded_and_replayed(store):
    calls = []

    def refuse():
        calls.append(1)
        raise NotFound("no such ticket", code="ticket_not_found", details={"id": "x"})

    request = idempotency.Request("k", "f")
    for _ in range(2):
        with pytest.raises(NotFound) as raised:
            request.run(store, store.table, ACTOR, "start", refuse)
        assert raised.value.code == "ticket_not_found" and raised.value.details == {"id": "x"}
    assert calls == [1]


@pytest.mark.parametrize("failure", [RuntimeError("boom"), ServiceUnavailable("db down")])
def test_an_outage_or_a_bug_forgets_the_claim(store, failure):
    request = idempotency.Request("k", "f")

    def fail():
        raise failure

    with pytest.raises(type(failure)):
        request.run(store, store.table, ACTOR, "start", fail)
    assert rows(store) == []
    assert request.run(store, store.table, ACTOR, "start", lambda: {"ok": True}) == {"ok": True}


def test_a_retry_while_the_first_runs_is_told_to_come_back(store):
    request = idempotency.Request("k", "f")

    def work():
        with pytest.raises(Conflict) as raised:
            request.run(store, store.table, ACTOR, "start", lambda: {"second": True})
        assert raised.value.code == "request_in_progress"
        assert raised.value.details == {"retry_after_seconds": 1}
        return {"first": True}

    assert request.run(store, store.table, ACTOR, "start", work) == {"first": True}
    assert request.run(store, store.table, ACTOR, "start", lambda: {}) == {"first": True}


def test_an_abandoned_claim_is_taken_over(store):
    request = idempotency.Request("k", "f")
    with pytest.raises(KeyboardInterrupt):  # forgotten, like any failure: claim it again
        request.run(store, store.table, ACTOR, "start", lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
    key = idempotency.key_hash(ACTOR["tenant_id"], ACTOR["user_id"], "k", "start")
    with store.engine.begin() as connection:  # a claim left by a process that died
        connection.execute(store.table.insert().values(
            key_hash=key, request_hash="f", state="running", response=None,
            created_at=utcnow() - idempotency.ABANDONED_AFTER - timedelta(seconds=1)))
    assert request.run(store, store.table, ACTOR, "start", lambda: {"again": True}) == {"again": True}


def test_records_go_after_24_hours(store):
    idempotency.Request("old", "f").run(store, store.table, ACTOR, "start", lambda: {})
    idempotency.Request("new", "f").run(store, store.table, ACTOR, "start", lambda: {})
    old = idempotency.key_hash(ACTOR["tenant_id"], ACTOR["user_id"], "old", "start")
    with store.engine.begin() as connection:
        connection.execute(update(store.table).where(store.table.c.key_hash == old).values(
            created_at=utcnow() - timedelta(hours=25)))
    with store.unit_of_work() as uow:
        assert idempotency.purge(uow.session, store.table, utcnow()) == 1
        uow.commit()
    assert len(rows(store)) == 1
