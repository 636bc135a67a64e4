"""Idempotency-Key end to end (docs/API.md): a client retrying a state-changing request gets
the first answer, recorded by the service that did the work (tickets, accounts, devices), even
when the gateway answered 504."""
import threading
import time
import uuid

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.test_headers_and_references import enrol
from tests.harness import Client, System


def key() -> dict:
    return {"Idempotency-Key": f"retry-{uuid.uuid4()}"}


def ticket_count(system, tenant) -> int:
    engine = create_engine(system.database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM tickets.tickets WHERE tenant_id = :t"),
                                      {"t": tenant.id}).scalar_one()
    finally:
        engine.dispose()


def new_ticket(client, subject="Sem rede") -> dict:
    response = client.post("/api/tickets", json={"subject": subject, "description": "d"})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_retried_create_makes_one_ticket(system, tenant):
    headers, body = key(), {"subject": "Impressora", "description": "d"}
    first = tenant.admin.post("/api/tickets", json=body, headers=headers)
    again = tenant.admin.post("/api/tickets", json=body, headers=headers)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert first.json() == again.json()
    assert ticket_count(system, tenant) == 1
    # without a key, each request is a new one
    assert tenant.admin.post("/api/tickets", json=body).json()["id"] != first.json()["id"]
    assert ticket_count(system, tenant) == 2


def test_a_retried_transition_gets_the_first_answer_not_a_409(tenant):
    ticket = new_ticket(tenant.admin)
    path, headers = f"/api/tickets/{ticket['id']}/resolve", key()
    first = tenant.admin.post(path, json={"message": "feito"}, headers=headers)
    again = tenant.admin.post(path, json={"message": "feito"}, headers=headers)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json() == again.json() and first.json()["status"] == "RESOLVED"
    unkeyed = tenant.admin.post(path, json={"message": "feito"})
    assert unkeyed.status_code == 409 and unkeyed.json()["error"]["code"] == "invalid_transition"
    # a refusal is an answer too: the retry of a refused request is refused the same way
    headers = key()
    refused = [tenant.admin.post(path, json={"message": "de novo"}, headers=headers) for _ in range(2)]
    assert [r.status_code for r in refused] == [409, 409]
    assert refused[0].json() == refused[1].json()


def test_the_same_key_for_another_request_is_422(tenant):
    ticket = new_ticket(tenant.admin)
    path, headers = f"/api/tickets/{ticket['id']}", key()
    first = tenant.admin.patch(path, json={"subject": "primeiro"}, headers=headers)
    assert first.status_code == 200, first.text
    other = tenant.admin.patch(path, json={"subject": "outro"}, headers=headers)
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert tenant.admin.get(path).json()["subject"] == "primeiro"


def test_keys_are_per_person(tenant):
    _, agent = tenant.person("agent")
    headers, body = key(), {"subject": "Mesmo assunto", "description": "d"}
    mine = tenant.admin.post("/api/tickets", json=body, headers=headers)
    theirs = agent.post("/api/tickets", json=body, headers=headers)
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]


def test_a_malformed_key_is_400(tenant):
    response = tenant.admin.post("/api/tickets", json={"subject": "s", "description": "d"},
                                 headers={"Idempotency-Key": "x" * 256})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_idempotency_key"


def test_a_retried_user_creation_makes_one_user_not_a_409(tenant):
    """accounts records the answer: the retry is the same 201, not `email_taken`."""
    email = f"retry-{uuid.uuid4().hex[:8]}@{tenant.slug}.test"
    headers, body = key(), {"email": email, "name": "Pessoa", "role": "collaborator"}
    first = tenant.admin.post("/api/admin/users", json=body, headers=headers)
    again = tenant.admin.post("/api/admin/users", json=body, headers=headers)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert first.json() == again.json()
    assert [user["id"] for user in tenant.admin.get("/api/admin/users", params={"q": email})
            .json()["items"]] == [first.json()["id"]]
    unkeyed = tenant.admin.post("/api/admin/users", json=body)
    assert unkeyed.status_code == 409 and unkeyed.json()["error"]["code"] == "email_taken"


def test_retried_device_links_get_the_first_answer(tenant):
    """devices records the answer: a retried unlink is the first 200, not `link_not_found`."""
    machine_id = enrol(tenant)
    person, _ = tenant.person("collaborator")
    link = {"machine_id": machine_id, "email": person["email"]}
    headers = key()
    added = [tenant.admin.post("/api/admin/devices/links", json=link, headers=headers) for _ in range(2)]
    assert [r.status_code for r in added] == [201, 201], [r.text for r in added]
    assert added[0].json() == added[1].json()
    assert [u["id"] for u in added[0].json()["linked_users"]] == [person["id"]]

    query, headers = {"machine_id": machine_id, "user_id": person["id"]}, key()
    removed = [tenant.admin.delete("/api/admin/devices/links", params=query, headers=headers)
               for _ in range(2)]
    assert [r.status_code for r in removed] == [200, 200], [r.text for r in removed]
    assert removed[0].json() == removed[1].json() and removed[0].json()["linked_users"] == []
    unkeyed = tenant.admin.delete("/api/admin/devices/links", params=query)
    assert unkeyed.status_code == 404 and unkeyed.json()["error"]["code"] == "link_not_found"


@pytest.fixture
def impatient_gateway(system, tmp_path):
    """A second gateway on the same services whose RPC deadline is one second."""
    gateway = System(database_url=system.database_url, amqp_uri=system.amqp_uri, workdir=tmp_path,
                     services=("gateway",), extra_env={"RPC_TIMEOUT_SECONDS": "1"})
    gateway.start_service("gateway")
    gateway.wait_ready(60)
    yield gateway
    gateway.stop()


def test_a_retry_after_a_504_gets_the_answer_of_the_work_that_went_on(system, tenant, impatient_gateway):
    """The 504 of the fault runs: the gateway stops waiting, the service still does the work.
    A lock on the ticket's row keeps the work waiting past the gateway's deadline."""
    client = Client(impatient_gateway.base_url, tenant.admin.token)
    ticket = new_ticket(client)
    path, headers = f"/api/tickets/{ticket['id']}/resolve", key()
    engine = create_engine(system.database_url)
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            connection.execute(text("SELECT id FROM tickets.tickets WHERE id = :id FOR UPDATE"),
                               {"id": ticket["id"]})
            answer = {}
            sender = threading.Thread(target=lambda: answer.update(
                first=client.post(path, json={"message": "feito"}, headers=headers)))
            sender.start()
            sender.join(15)
            assert answer["first"].status_code == 504, answer["first"].text
            while_running = client.post(path, json={"message": "feito"}, headers=headers)
            assert while_running.status_code == 409, while_running.text
            assert while_running.json()["error"]["code"] == "request_in_progress"
            assert while_running.headers["Retry-After"] == "1"
            transaction.rollback()  # the work goes on, and commits
    finally:
        engine.dispose()

    deadline = time.monotonic() + 15
    while True:
        retry = client.post(path, json={"message": "feito"}, headers=headers)
        if retry.status_code != 409 or time.monotonic() > deadline:
            break
        assert retry.json()["error"]["code"] == "request_in_progress"
        time.sleep(float(retry.headers["Retry-After"]))
    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] == "RESOLVED" and retry.json()["id"] == ticket["id"]
    unkeyed = client.post(path, json={"message": "feito"})
    assert unkeyed.status_code == 409 and unkeyed.json()["error"]["code"] == "invalid_transition"
