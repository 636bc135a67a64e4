"""The tickets service's copies of accounts' people and companies (snapshots), kept by
accounts' events and, for one not arrived yet, by a lookup made before the unit of work
(lookups.py). Each change applies only over an older version (domain.SnapshotVersion), so
the newest change wins whatever order events and lookups arrive in."""
from __future__ import annotations

import uuid

from common.contracts import parse_id
from common.errors import NotFound
from common.unit_of_work import UnitOfWorkSource
from services.tickets import domain
from services.tickets.lookups import Answers, Directory, LookupNeeded, with_lookups
from services.tickets.queues import default_queue
from services.tickets.models import CompanySnapshot, Person


def optional_id(value) -> uuid.UUID | None:
    return uuid.UUID(str(value)) if value else None


def upsert_person(uow, user: dict) -> tuple[Person, bool]:
    """The person's snapshot as `user` (an event or a lookup) says, unless it holds a
    newer version of them already (domain.SnapshotVersion), and whether tickets now
    carry a stale name or email of theirs (a new snapshot: none can, a ticket is filed
    after its snapshot)."""
    person_id = uuid.UUID(str(user.get("user_id") or user["id"]))
    version = domain.SnapshotVersion.of(user.get("version"))
    values = {"name": user["name"], "email": user["email"], "role": user["role"],
              "company_id": optional_id(user.get("company_id")),
              "merged_into_id": optional_id(user.get("merged_into_id"))}
    person = uow.repo.person_for_update(person_id)
    if person is None:  # a request's lookup and the user's event may both create it
        uow.repo.insert_missing(Person, ("id",), id=person_id, tenant_id=uuid.UUID(str(user["tenant_id"])),
                                version=version.stored, **values)
        person = uow.repo.person_for_update(person_id)
    before = (person.name, person.email)
    if not uow.repo.update_snapshot_if_newer(Person, person_id, version, values):
        return person, False
    uow.repo.refresh(person)
    return person, (person.name, person.email) != before


def person(uow, answers: Answers, tenant_id, user_id) -> Person:
    """From the local snapshot; from accounts' answer when the user's event has not arrived
    yet (LookupNeeded until it has been asked)."""
    person_id = parse_id(user_id, "user")
    found = uow.repo.person(person_id)
    if found is None:
        if not answers.has("user", person_id):
            raise LookupNeeded("user", tenant_id, person_id)
        found, _ = upsert_person(uow, answers.get("user", person_id))
    if found.tenant_id != tenant_id or found.merged_into_id is not None:
        raise NotFound("user not found", code="user_not_found")
    return found


def company(uow, answers: Answers, tenant_id, company_id) -> CompanySnapshot:
    """As `person`, for a company."""
    key = parse_id(company_id, "company")
    found = uow.repo.company(key)
    if found is None:
        if not answers.has("company", key):
            raise LookupNeeded("company", tenant_id, key)
        looked_up = answers.get("company", key)
        found = uow.repo.ensure_company(uuid.UUID(looked_up["id"]), tenant_id, looked_up["name"],
                                        domain.SnapshotVersion.of(looked_up.get("version")).stored)
    if found.tenant_id != tenant_id:
        raise NotFound("company not found", code="company_not_found")
    return found


# accounts' events: each handled once (the inbox row is written in the same transaction)

def tenant_created(source: UnitOfWorkSource, event: dict) -> None:
    with source.unit_of_work() as uow:
        if uow.repo.first_delivery(event, "tenant_created"):
            default_queue(uow, uuid.UUID(event["tenant_id"]))
            uow.commit()


def user_changed(source: UnitOfWorkSource, event: dict, event_type: str) -> None:
    """`user_created` and `user_updated`."""
    with source.unit_of_work() as uow:
        if uow.repo.first_delivery(event, event_type):
            changed, renamed = upsert_person(uow, event)
            if renamed:  # two UPDATEs over the tenant's tickets: only when they change
                uow.repo.refresh_person_snapshots(changed)
            uow.commit()


def company_changed(source: UnitOfWorkSource, event: dict, event_type: str) -> None:
    """`company_created` and `company_updated`."""
    with source.unit_of_work() as uow:
        if uow.repo.first_delivery(event, event_type):
            version = domain.SnapshotVersion.of(event.get("version"))
            changed = uow.repo.ensure_company(uuid.UUID(event["company_id"]), uuid.UUID(event["tenant_id"]),
                                              event["name"], version.stored)
            if uow.repo.update_snapshot_if_newer(CompanySnapshot, changed.id, version, {"name": event["name"]}):
                uow.repo.refresh(changed)
                uow.repo.refresh_company_snapshots(changed)  # under the row lock just taken
            uow.commit()


def user_merged(source: UnitOfWorkSource, directory: Directory, event: dict) -> None:
    """Every reference to the old id now names the account it was merged into (whose
    snapshot, when missing, is looked up with no unit of work open)."""
    with_lookups(directory, lambda answers: _merge_user(source, answers, event))


def _merge_user(source: UnitOfWorkSource, answers: Answers, event: dict) -> None:
    with source.unit_of_work() as uow:
        if not uow.repo.first_delivery(event, "user_merged"):
            return
        tenant_id = uuid.UUID(event["tenant_id"])
        old_id, new_id = uuid.UUID(event["from_user_id"]), uuid.UUID(event["into_user_id"])
        into = person(uow, answers, tenant_id, new_id)  # first: a lookup rolls back before any write
        uow.repo.remap_user(tenant_id, old_id, new_id)
        uow.repo.refresh_person_snapshots(into)
        old = uow.repo.person(old_id)
        if old is not None:
            old.merged_into_id = new_id
        uow.commit()
