"""services/tickets/views.py writes a ticket without marshmallow: it must read exactly as the
documented `Ticket` schema dumps the same values, whatever they are."""
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from common.contracts import tickets as contract
from services.tickets import domain
from services.tickets.views import ticket_view

SCHEMA = contract.Ticket()
maybe_uuid = st.none() | st.uuids()
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-3))]))
text = st.text(max_size=40)


@st.composite
def tickets(draw):
    return SimpleNamespace(
        id=draw(st.uuids()), reference=draw(st.integers(1, 10**9)), subject=draw(text),
        description=draw(text), priority=draw(st.sampled_from(["LOW", "NORMAL", "HIGH", "URGENT"])),
        status=draw(st.sampled_from(sorted(domain.STATUS_LABELS))), queue_id=draw(st.uuids()),
        requester_id=draw(maybe_uuid), requester_name=draw(st.none() | text),
        requester_email=draw(st.none() | text), assignee_id=draw(maybe_uuid),
        assignee_name=draw(st.none() | text), assignee_email=draw(st.none() | text),
        company_id=draw(maybe_uuid), company_name=draw(st.none() | text), machine_id=draw(maybe_uuid),
        worked_internal_seconds=draw(st.integers(0, 10**7)),
        worked_external_seconds=draw(st.integers(0, 10**7)),
        created_at=draw(moments), updated_at=draw(moments), resolved_at=draw(st.none() | moments))


def schema_dump(ticket, open_work_type, actor_role=None):
    """The same values through marshmallow: the reference the fast view must equal."""
    def person(person_id, name, email):
        return None if person_id is None else {"id": person_id, "name": name, "email": email}
    internal, external = ticket.worked_internal_seconds, ticket.worked_external_seconds
    label, colour = domain.STATUS_LABELS[ticket.status]
    return SCHEMA.dump({
        "id": ticket.id, "reference": ticket.reference, "subject": ticket.subject,
        "description": ticket.description, "priority": ticket.priority, "status": ticket.status,
        "status_label": label, "status_colour": colour, "queue_id": ticket.queue_id,
        "requester": person(ticket.requester_id, ticket.requester_name, ticket.requester_email),
        "assignee": person(ticket.assignee_id, ticket.assignee_name, ticket.assignee_email),
        "company": None if ticket.company_id is None else {"id": ticket.company_id, "name": ticket.company_name},
        "machine_id": ticket.machine_id,
        "worked_seconds": {"INTERNAL": internal, "EXTERNAL": external, "total": internal + external},
        "work_in_progress": open_work_type,
        "created_at": ticket.created_at, "updated_at": ticket.updated_at, "resolved_at": ticket.resolved_at,
        **({} if actor_role is None else {"allowed_actions": domain.allowed_actions(ticket.status, actor_role)})})


@settings(max_examples=150)
@given(tickets(), st.none() | st.sampled_from(["INTERNAL", "EXTERNAL"]),
       st.none() | st.sampled_from(["admin", "agent", "collaborator"]))
def test_the_fast_view_equals_the_schema_dump(ticket, open_work_type, actor_role):
    assert ticket_view(ticket, open_work_type, actor_role) == schema_dump(ticket, open_work_type, actor_role)


def test_the_view_has_every_field_of_the_contract_and_validates():
    ticket = SimpleNamespace(
        id=uuid.uuid4(), reference=7, subject="Impressora", description="", priority="NORMAL",
        status=domain.PENDING, queue_id=uuid.uuid4(), requester_id=None, requester_name=None,
        requester_email=None, assignee_id=uuid.uuid4(), assignee_name="Ana", assignee_email="a@x.test",
        company_id=None, company_name=None, machine_id=None, worked_internal_seconds=0,
        worked_external_seconds=5, created_at=datetime.now(timezone.utc),
        updated_at=datetime.now(timezone.utc), resolved_at=None)
    view = ticket_view(ticket, actor_role="agent")
    assert set(view) == set(SCHEMA.fields)
    assert SCHEMA.validate(view) == {}
    assert view["allowed_actions"] == ["start", "resolve", "assign"]
    assert "allowed_actions" not in ticket_view(ticket)  # lists and archives: nobody's actions
