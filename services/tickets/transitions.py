"""The status machine's use cases: domain.py decides, `apply` persists what it decided (one
place for every transition: people's, the chat's and the scheduler's)."""
from __future__ import annotations

from datetime import datetime

from common.actor import Actor, STAFF_ROLES
from common.contracts import load
from common.contracts import tickets as contract
from common.db import utcnow
from common.errors import Conflict
from common.unit_of_work import UnitOfWorkSource
from services.tickets import domain, snapshots
from services.tickets.lookups import Answers, Directory, with_lookups
from services.tickets.permissions import require_staff
from services.tickets.models import Ticket, WorkSession
from services.tickets.tickets import find_ticket, record
from services.tickets.views import ticket_view


def state_of(ticket: Ticket, session: WorkSession | None) -> domain.WorkState:
    return domain.WorkState(
        status=ticket.status, assignee_id=ticket.assignee_id,
        session=domain.OpenSession(session.work_type, session.agent_id, session.started_at)
        if session else None,
        worked={"INTERNAL": ticket.worked_internal_seconds, "EXTERNAL": ticket.worked_external_seconds})


def apply(uow, answers: Answers, ticket: Ticket, session: WorkSession | None, outcome: domain.Outcome,
          actor_id, now: datetime) -> None:
    """Persist what the machine decided."""
    state = outcome.state
    if outcome.closed is not None:
        session.ended_at, session.seconds = outcome.closed.ended_at, outcome.closed.seconds
        session.end_reason = outcome.closed.reason
        uow.repo.flush()  # the open-session index must see it closed first
    if outcome.opened is not None:
        uow.repo.add(WorkSession(ticket_id=ticket.id, agent_id=outcome.opened.agent_id,
                                 work_type=outcome.opened.work_type, started_at=outcome.opened.started_at))
    if outcome.assigned:
        assignee = snapshots.person(uow, answers, ticket.tenant_id, state.assignee_id) \
            if state.assignee_id else None
        ticket.assignee_id = state.assignee_id
        ticket.assignee_name = assignee.name if assignee else None
        ticket.assignee_email = assignee.email if assignee else None
        uow.emit("ticket_assigned", {"tenant_id": ticket.tenant_id, "ticket_id": ticket.id,
                                     "assignee_id": ticket.assignee_id, "actor_id": actor_id,
                                     "reference": ticket.reference, "subject": ticket.subject})
    ticket.status = state.status
    ticket.worked_internal_seconds = state.worked["INTERNAL"]
    ticket.worked_external_seconds = state.worked["EXTERNAL"]
    if outcome.status_changed:
        ticket.resolved_at = now if state.status == domain.RESOLVED else None
        reason = next((data.get("reason") for kind, data in outcome.timeline if kind == "PAUSED"), None)
        message = next((data.get("message") for kind, data in outcome.timeline if kind == "RESOLVED"), None)
        uow.emit("ticket_status_changed", {
            "tenant_id": ticket.tenant_id, "ticket_id": ticket.id,
            "from_status": outcome.previous_status, "to_status": state.status,
            "reason": reason, "actor_id": actor_id, "message": message, **ticket_context(ticket)})
    ticket.updated_at = now
    for kind, data in outcome.timeline:
        record(uow, ticket, actor_id, kind, data, now)


def ticket_context(ticket: Ticket) -> dict:
    """What tickets' events carry for consumers that tell people (common/events.py)."""
    return {"reference": ticket.reference, "subject": ticket.subject,
            "requester_id": ticket.requester_id, "assignee_id": ticket.assignee_id}


def transition(source: UnitOfWorkSource, directory: Directory, actor: Actor, ticket_id, decide) -> dict:
    """`decide(uow, answers, state, now)` → domain.Outcome, on the ticket under its row lock."""
    def attempt(answers: Answers) -> dict:
        now = utcnow()
        with source.unit_of_work() as uow:
            ticket = find_ticket(uow, actor, ticket_id, for_update=True)
            session = uow.repo.open_session(ticket.id)
            outcome = decide(uow, answers, state_of(ticket, session), now)
            apply(uow, answers, ticket, session, outcome, actor.user_id, now)
            uow.commit()
            return ticket_view(ticket, outcome.state.session.work_type if outcome.state.session else None,
                               actor.role)

    return with_lookups(directory, attempt)


def assign(source: UnitOfWorkSource, directory: Directory, actor: Actor, ticket_id, payload: dict) -> dict:
    require_staff(actor, "assign tickets")
    data = load(contract.Assign, payload)

    def decide(uow, answers, state, now):
        if data["assignee_id"] is not None:
            assignee = snapshots.person(uow, answers, actor.tenant_id, data["assignee_id"])
            if assignee.role not in STAFF_ROLES:
                raise Conflict("tickets are assigned to staff", code="assignee_not_staff")
        return domain.assign(state, data["assignee_id"])

    return transition(source, directory, actor, ticket_id, decide)


def start(source: UnitOfWorkSource, directory: Directory, actor: Actor, ticket_id, payload: dict) -> dict:
    require_staff(actor, "work on tickets")
    data = load(contract.Start, payload)
    return transition(source, directory, actor, ticket_id, lambda uow, answers, state, now: domain.start(
        state, actor.user_id, data["work_type"], now))


def pause(source: UnitOfWorkSource, directory: Directory, actor: Actor, ticket_id, payload: dict) -> dict:
    require_staff(actor, "pause tickets")
    data = load(contract.Pause, payload)
    return transition(source, directory, actor, ticket_id, lambda uow, answers, state, now: domain.pause(
        state, data["reason"], now))


def resolve(source: UnitOfWorkSource, directory: Directory, actor: Actor, ticket_id, payload: dict) -> dict:
    require_staff(actor, "resolve tickets")
    data = load(contract.Resolve, payload)
    return transition(source, directory, actor, ticket_id, lambda uow, answers, state, now: domain.resolve(
        state, now, data["message"]))


def reopen(source: UnitOfWorkSource, directory: Directory, actor: Actor, ticket_id) -> dict:
    return transition(source, directory, actor, ticket_id, lambda uow, answers, state, now: domain.reopen(
        state, actor.role))


def lunch_pause(source: UnitOfWorkSource, now: datetime) -> dict:
    """12:00 in São Paulo: tickets worked in INTERNAL sessions pause with LUNCH_BREAK;
    EXTERNAL work (a customer on the line) goes on."""
    paused = 0
    with source.unit_of_work() as uow:
        for ticket, session in uow.repo.internal_work_in_progress():
            outcome = domain.lunch_pause(state_of(ticket, session), now)
            if outcome is not None:  # a pause assigns nobody: no lookup
                apply(uow, Answers(), ticket, session, outcome, None, now)
                paused += 1
        if paused:
            uow.commit()
    return {"paused": paused}
