"""Snapshots kept from accounts' events keep the newest version of each person and company,
whatever order the events arrive in (issue 26: a `user_updated` retried during a database
outage overwrote a newer one and left the old name for good). Here the events are sent
reordered on purpose, through the real broker, to the running tickets and devices."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.test_devices import enrol, users
from tests.harness import eventually
from tests.integration.test_event_consumers import publish


@pytest.fixture
def database(system):
    engine = create_engine(system.database_url)
    yield engine
    engine.dispose()


def user_updated(user: dict, name: str, version: int | None) -> dict:
    event = {"event_id": str(uuid.uuid4()), "occurred_at": datetime.now(timezone.utc).isoformat(),
             "tenant_id": user["tenant_id"], "user_id": user["id"], "email": user["email"],
             "name": name, "role": user["role"], "company_id": user["company_id"]}
    if version is not None:
        event["version"] = version
    return event


def wait_handled(database, events, consumers=("tickets", "devices"), timeout: float = 20) -> None:
    ids = [uuid.UUID(event["event_id"]) for event in events]
    deadline = time.monotonic() + timeout
    while True:
        with database.connect() as connection:
            handled = {service: connection.execute(text(
                f"SELECT count(*) FROM {service}.inbox WHERE event_id = ANY(:ids)"), {"ids": ids}).scalar()
                for service in consumers}
        if all(count == len(ids) for count in handled.values()):
            return
        assert time.monotonic() < deadline, f"events not handled in {timeout} s: {handled}"
        time.sleep(0.2)


def names(database, user_id: str, machine_id: str) -> dict:
    with database.connect() as connection:
        return {
            "tickets": connection.execute(text("SELECT name FROM tickets.people WHERE id = :u"),
                                          {"u": user_id}).scalar(),
            "machine": connection.execute(text(
                "SELECT assigned_user_name FROM devices.machines WHERE id = :m"), {"m": machine_id}).scalar(),
            "link": connection.execute(text(
                "SELECT user_name FROM devices.machine_links WHERE user_id = :u"), {"u": user_id}).scalar()}


@pytest.fixture
def person_with_machines(tenant, anonymous, database):
    """A collaborator assigned to one machine and linked to another (every snapshot of them),
    once tickets holds theirs (from `user_created`)."""
    company = tenant.company()
    email = f"colab-{uuid.uuid4().hex[:8]}@example.test"
    _, assigned = enrol(anonymous, company, email=email, name="Nome de cadastro")
    _, other = enrol(anonymous, company)
    person = next(u for u in users(tenant.admin, "people") if u["email"] == email)
    linked = tenant.admin.post("/api/admin/devices/links", json={"machine_id": other["machine_id"], "email": email})
    assert linked.status_code == 201, linked.text

    def snapshot_in_tickets():
        with database.connect() as connection:
            return connection.execute(text("SELECT version FROM tickets.people WHERE id = :u"),
                                      {"u": person["id"]}).scalar()
    assert eventually(snapshot_in_tickets) == person["version"]
    return person, assigned["machine_id"], company


def test_a_user_change_delivered_after_a_newer_one_leaves_the_newer(system, database, person_with_machines):
    person, machine_id, _ = person_with_machines
    newer = user_updated(person, "Nome novo", version=person["version"] + 2)
    older = user_updated(person, "Nome antigo", version=person["version"] + 1)
    publish(system.amqp_uri, "accounts", "user_updated", newer)
    wait_handled(database, [newer])
    publish(system.amqp_uri, "accounts", "user_updated", older)
    wait_handled(database, [older])
    assert names(database, person["id"], machine_id) == {"tickets": "Nome novo", "machine": "Nome novo",
                                                         "link": "Nome novo"}


def test_an_event_queued_before_versions_still_applies_over_an_unversioned_snapshot(
        system, database, person_with_machines):
    person, machine_id, _ = person_with_machines
    with database.begin() as connection:  # as the migration left the snapshots of before
        connection.execute(text("UPDATE tickets.people SET version = 0 WHERE id = :u"), {"u": person["id"]})
        connection.execute(text("UPDATE devices.machines SET assigned_user_version = 0 WHERE id = :m"),
                           {"m": machine_id})
        connection.execute(text("UPDATE devices.machine_links SET user_version = 0 WHERE user_id = :u"),
                           {"u": person["id"]})
    queued = user_updated(person, "Nome da fila antiga", version=None)
    publish(system.amqp_uri, "accounts", "user_updated", queued)
    wait_handled(database, [queued])
    assert names(database, person["id"], machine_id) == {
        "tickets": "Nome da fila antiga", "machine": "Nome da fila antiga", "link": "Nome da fila antiga"}
    # and a versioned change of theirs applies over it, while an old unversioned one no longer does
    versioned = user_updated(person, "Nome versionado", version=person["version"] + 1)
    late = user_updated(person, "Nome atrasado", version=None)
    publish(system.amqp_uri, "accounts", "user_updated", versioned)
    wait_handled(database, [versioned])
    publish(system.amqp_uri, "accounts", "user_updated", late)
    wait_handled(database, [late])
    assert set(names(database, person["id"], machine_id).values()) == {"Nome versionado"}


def test_a_company_change_delivered_after_a_newer_one_leaves_the_newer(system, database, tenant):
    company = tenant.company("Empresa de cadastro")
    ticket = tenant.admin.post("/api/tickets", json={"subject": "Impressora", "company_id": company["id"]})
    assert ticket.status_code == 201, ticket.text

    def company_updated(name: str, version: int) -> dict:
        return {"event_id": str(uuid.uuid4()), "occurred_at": datetime.now(timezone.utc).isoformat(),
                "tenant_id": tenant.id, "company_id": company["id"], "name": name,
                "apelido": company["apelido"], "version": version}

    newer, older = company_updated("Empresa nova", company["version"] + 2), \
        company_updated("Empresa antiga", company["version"] + 1)
    publish(system.amqp_uri, "accounts", "company_updated", newer)
    wait_handled(database, [newer], consumers=("tickets",))
    publish(system.amqp_uri, "accounts", "company_updated", older)
    wait_handled(database, [older], consumers=("tickets",))
    with database.connect() as connection:
        snapshot = connection.execute(text("SELECT name FROM tickets.companies WHERE id = :c"),
                                      {"c": company["id"]}).scalar()
        on_ticket = connection.execute(text("SELECT company_name FROM tickets.tickets WHERE id = :t"),
                                       {"t": ticket.json()["id"]}).scalar()
    assert (snapshot, on_ticket) == ("Empresa nova", "Empresa nova")


def test_accounts_stamps_each_change_with_the_next_version(tenant):
    person, _ = tenant.person("agent")
    assert person["version"] == 1
    renamed = tenant.admin.patch(f"/api/admin/users/{person['id']}", json={"name": "Outro Nome"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["version"] == 2
    company = tenant.company()
    changed = tenant.admin.patch(f"/api/admin/companies/{company['id']}", json={"name": "Outra Empresa"})
    assert changed.status_code == 200, changed.text
    assert (company["version"], changed.json()["version"]) == (1, 2)
