"""Tickets: filing, reading, editing, listing; and what the other use cases share about one
ticket (finding it as the actor may see it, writing its timeline)."""
from __future__ import annotations

from datetime import datetime

import orjson

from common.actor import Actor
from common.contracts import load, parse_id
from common.contracts import tickets as contract
from common.db import utcnow
from common.errors import NotFound
from common.pagination import datetime_value, decode_cursor, encode_cursor, uuid_value
from common.unit_of_work import UnitOfWorkSource
from services.tickets import domain, snapshots
from services.tickets.lookups import Answers, Directory, LookupNeeded, with_lookups
from services.tickets.permissions import require_staff
from services.tickets.queues import default_queue, find_queue
from services.tickets.models import Ticket, TimelineEntry
from services.tickets.views import ticket_view

# one schema object, reused: building one per item cost 8x the dump itself (ENGINEERING.md 18)
PERSON_SCHEMA = contract.Person()
TICKET_FIELDS = ("subject", "description", "priority", "queue_id", "company_id", "machine_id")


def find_ticket(uow, actor: Actor, ticket_id, for_update: bool = False) -> Ticket:
    """By id, or by the reference number people quote ("chamado 42")."""
    key = int(ticket_id) if isinstance(ticket_id, str) and ticket_id.isascii() and ticket_id.isdigit() \
        and len(ticket_id) <= 9 else parse_id(ticket_id, "ticket")
    ticket = uow.repo.ticket(actor.tenant_id, key, for_update)
    # another tenant's ticket, or a collaborator's look at someone else's: both unknown
    if ticket is None or not domain.check_can_see(actor.role, actor.user_id, ticket.requester_id):
        raise NotFound("ticket not found", code="ticket_not_found")
    return ticket


def record(uow, ticket: Ticket, actor_id, kind: str, data: dict, now: datetime) -> None:
    """One entry on the ticket's timeline, written with the change's next flush."""
    uow.repo.add_later(TimelineEntry(ticket_id=ticket.id, actor_id=actor_id, kind=kind,
                                     data=orjson.dumps(data, default=str).decode(), created_at=now))


def resolve_me(filters: dict, user_id) -> dict:
    """`assignee_id=me` is the caller (for an export: whoever asked for it)."""
    if filters.get("assignee_id") == "me":
        filters["assignee_id"] = str(user_id)
    return filters


def create_ticket(source: UnitOfWorkSource, directory: Directory, actor: Actor, payload: dict) -> dict:
    data = load(contract.TicketCreate, payload)
    if data["machine_id"] is not None:  # devices owns machines: asked before anything opens
        check_machine(directory, actor, data["machine_id"])
    return with_lookups(directory, lambda answers: _file_ticket(source, answers, actor, data))


def _file_ticket(source: UnitOfWorkSource, answers: Answers, actor: Actor, data: dict) -> dict:
    now = utcnow()
    with source.unit_of_work() as uow:
        queue = default_queue(uow, actor.tenant_id) if data["queue_id"] is None \
            else find_queue(uow, actor, data["queue_id"])
        if actor.is_staff and data["requester_id"]:
            requester = snapshots.person(uow, answers, actor.tenant_id, data["requester_id"])
        else:  # a collaborator always asks for themself
            requester = snapshots.person(uow, answers, actor.tenant_id, actor.user_id)
        company_id = data["company_id"] if actor.is_staff and data["company_id"] else requester.company_id
        company = snapshots.company(uow, answers, actor.tenant_id, company_id) if company_id else None
        ticket = uow.repo.add_ticket(Ticket(
            tenant_id=actor.tenant_id, reference=uow.repo.next_reference(actor.tenant_id),
            subject=data["subject"].strip(), description=data["description"],
            priority=data["priority"], status=domain.PENDING, queue_id=queue.id,
            requester_id=requester.id, requester_name=requester.name,
            requester_email=requester.email, company_id=company.id if company else None,
            company_name=company.name if company else None, machine_id=data["machine_id"],
            worked_internal_seconds=0, worked_external_seconds=0, created_at=now,
            updated_at=now))
        record(uow, ticket, actor.user_id, "CREATED", {"queue": queue.name}, now)
        uow.emit("ticket_created", {
            "tenant_id": ticket.tenant_id, "ticket_id": ticket.id, "reference": ticket.reference,
            "subject": ticket.subject, "status": ticket.status, "priority": ticket.priority,
            "queue_id": ticket.queue_id, "requester_id": ticket.requester_id,
            "company_id": ticket.company_id, "machine_id": ticket.machine_id})
        uow.commit()
        return ticket_view(ticket)


def check_machine(directory: Directory, actor: Actor, machine_id) -> None:
    """A ticket's machine is one of its tenant's (devices owns machines; its online status
    drives the chat's auto-end), and a collaborator's one of their own (assigned or
    linked): another tenant's, another person's or an unknown one is not found."""
    own = None if actor.is_staff else str(actor.user_id)
    if not directory.machine_in_tenant(str(actor.tenant_id), str(machine_id), own):
        raise NotFound("machine not found", code="machine_not_found")


def get_ticket(source: UnitOfWorkSource, actor: Actor, ticket_id) -> dict:
    with source.unit_of_work() as uow:
        ticket = find_ticket(uow, actor, ticket_id)
        session = uow.repo.open_session(ticket.id)
        return ticket_view(ticket, session.work_type if session else None)


def update_ticket(source: UnitOfWorkSource, directory: Directory, actor: Actor, ticket_id, payload: dict) -> dict:
    require_staff(actor, "edit tickets")
    data = load(contract.TicketUpdate, payload)
    return with_lookups(directory, lambda answers: _edit_ticket(source, answers, actor, ticket_id, data))


def _edit_ticket(source: UnitOfWorkSource, answers: Answers, actor: Actor, ticket_id, data: dict) -> dict:
    data, now = dict(data), utcnow()  # a copy: an attempt that needed a lookup runs again
    with source.unit_of_work() as uow:
        ticket = find_ticket(uow, actor, ticket_id, for_update=True)
        changed = {}
        if "queue_id" in data:
            data["queue_id"] = find_queue(uow, actor, data["queue_id"]).id
        machine_id = data.get("machine_id")
        if machine_id is not None and machine_id != ticket.machine_id:
            if not answers.has("machine", machine_id):  # asked with the row unlocked (staff: the tenant's)
                raise LookupNeeded("machine", actor.tenant_id, machine_id)
            if not answers.get("machine", machine_id):
                raise NotFound("machine not found", code="machine_not_found")
        if "company_id" in data:
            company = snapshots.company(uow, answers, actor.tenant_id, data["company_id"]) \
                if data["company_id"] else None
            ticket.company_name = company.name if company else None
        for field in TICKET_FIELDS:
            if field in data and getattr(ticket, field) != data[field]:
                changed[field] = str(data[field]) if field.endswith("_id") and data[field] else data[field]
                setattr(ticket, field, data[field])
        if changed:
            ticket.updated_at = now
            if "subject" in changed or "description" in changed:
                uow.repo.index_ticket(ticket)
            record(uow, ticket, actor.user_id, "UPDATED", {"changed": changed}, now)
            uow.emit("ticket_updated", {"tenant_id": ticket.tenant_id, "ticket_id": ticket.id,
                                        "changed": sorted(changed)})
        uow.commit()
        return ticket_view(ticket)


def list_tickets(source: UnitOfWorkSource, actor: Actor, query: dict) -> dict:
    filters = resolve_me(load(contract.TicketQuery, query), actor.user_id)
    after = decode_cursor(filters["cursor"], datetime_value, uuid_value)
    only_requester = None if actor.is_staff else actor.user_id
    # read-only (no transaction): the page is one statement; the count, when asked, is a
    # second that may see a newer state, as any count beside a page may
    with source.unit_of_work(read_only=True) as uow:
        rows = uow.repo.page(actor.tenant_id, filters, only_requester=only_requester, after=after,
                             limit=filters["limit"] + 1)
        page, more = rows[:filters["limit"]], len(rows) > filters["limit"]
        _, created_at, last_id = page[-1] if more else (None, None, None)
        cursor = encode_cursor([created_at.isoformat(), str(last_id)]) if more else None
        answer = {"items": [view for view, _, _ in page], "next_cursor": cursor}
        if filters["count"]:  # only when asked: counting costs more than a page
            count = uow.repo.count_matching(actor.tenant_id, filters, only_requester, contract.COUNT_CAP)
            answer["count"] = min(count, contract.COUNT_CAP)
            answer["count_capped"] = count > contract.COUNT_CAP
        return answer


def recent_tickets(source: UnitOfWorkSource, actor: Actor, query: dict) -> dict:
    data = load(contract.RecentQuery, query)
    with source.unit_of_work(read_only=True) as uow:  # one statement (repo.recent)
        return {"items": uow.repo.recent(actor.tenant_id, data["limit"],
                                         only_requester=None if actor.is_staff else actor.user_id)}


def list_assignees(source: UnitOfWorkSource, actor: Actor) -> dict:
    """Who can be responsible for a ticket: the tenant's staff by name, from the people
    snapshot (the pickers need a few names, not the whole directory)."""
    require_staff(actor, "list assignees")
    with source.unit_of_work() as uow:
        return {"items": [PERSON_SCHEMA.dump({"id": person.id, "name": person.name, "email": person.email})
                          for person in uow.repo.staff(actor.tenant_id)]}


def ticket_counts(source: UnitOfWorkSource, tenant_id: str | None = None) -> dict:
    """Tickets by status, of one tenant or of all (health snapshot)."""
    with source.unit_of_work() as uow:
        counts = uow.repo.counts_by_status(parse_id(tenant_id, "tenant") if tenant_id else None)
    return {status: counts.get(status, 0) for status in domain.STATUSES}
