"""A request and an event (or two requests) may create the same snapshot, counter or default
queue at once in the tickets service: the second one must find the first's row, not fail
(seen: a ticket created right after its company answered 500, the company_created event
having inserted the snapshot in between)."""
from __future__ import annotations

import uuid

import eventlet

from common.config import Settings
from common.db import Store
from services.tickets.models import CompanySnapshot, metadata
from services.tickets.storage import TicketsRepository


def store(private_database) -> Store:
    return Store(Settings(database_url=private_database), "tickets", TicketsRepository, metadata)


def test_two_transactions_creating_one_company_snapshot_both_succeed(private_database):
    tickets = store(private_database)
    company_id, tenant_id = uuid.uuid4(), uuid.uuid4()
    first_inserted = eventlet.event.Event()

    def first():
        with tickets.unit_of_work() as uow:
            made = uow.repo.ensure_company(company_id, tenant_id, "Contabilidade Silva")
            first_inserted.send()
            eventlet.sleep(0.3)  # the second transaction now waits on this row
            uow.commit()
            return made.name

    def second():
        first_inserted.wait()
        with tickets.unit_of_work() as uow:
            found = uow.repo.ensure_company(company_id, tenant_id, "Contabilidade Silva Ltda")
            uow.commit()
            return found.name

    one, two = eventlet.spawn(first), eventlet.spawn(second)
    assert (one.wait(), two.wait()) == ("Contabilidade Silva", "Contabilidade Silva")
    with tickets.unit_of_work() as uow:
        assert uow.session.query(CompanySnapshot).filter_by(id=company_id).count() == 1


def test_a_tenants_first_tickets_get_one_two_three(private_database):
    tickets = store(private_database)
    tenant_id = uuid.uuid4()
    with tickets.unit_of_work() as uow:
        numbers = [uow.repo.next_reference(tenant_id) for _ in range(3)]
        uow.commit()
    assert numbers == [1, 2, 3]


def test_tickets_names_are_rewritten_only_when_a_persons_name_or_email_changes(private_database):
    """A user event rewrites the tickets carrying the person's name only when it changed
    (two UPDATEs over the tenant's tickets per event were most of registration's cost)."""
    from services.tickets.snapshots import upsert_person

    tickets = store(private_database)
    user = {"id": str(uuid.uuid4()), "tenant_id": str(uuid.uuid4()), "name": "Ana", "email": "ana@x.test",
            "role": "collaborator", "company_id": None}
    seen = []
    for change in ({}, {"role": "agent"}, {"name": "Ana Souza"}, {"email": "ana.souza@x.test"}):
        user.update(change)
        with tickets.unit_of_work() as uow:
            person, renamed = upsert_person(uow, user)
            uow.commit()
            seen.append((renamed, person.name, person.email, person.role))
    assert seen == [(False, "Ana", "ana@x.test", "collaborator"), (False, "Ana", "ana@x.test", "agent"),
                    (True, "Ana Souza", "ana@x.test", "agent"), (True, "Ana Souza", "ana.souza@x.test", "agent")]
    tickets.dispose()
