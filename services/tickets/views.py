"""How a ticket reads to its callers: the documented `Ticket` contract, written without
marshmallow on the hot read paths (a list of 50 is 50 of these; the schema's dump cost
more than the query). tests/unit/test_ticket_views.py holds it equal to
`contract.Ticket().dump` of the same values."""
from __future__ import annotations

from services.tickets import domain


def text_id(value) -> str | None:
    return None if value is None else str(value)


def timestamp(value) -> str | None:
    return None if value is None else value.isoformat()


def person_ref(person_id, name, email) -> dict | None:
    return None if person_id is None else {"id": str(person_id), "name": name, "email": email}


def ticket_view(ticket, open_work_type: str | None = None) -> dict:
    label, colour = domain.STATUS_LABELS[ticket.status]
    internal, external = int(ticket.worked_internal_seconds), int(ticket.worked_external_seconds)
    return {
        "id": str(ticket.id), "reference": int(ticket.reference), "subject": ticket.subject,
        "description": ticket.description, "priority": ticket.priority, "status": ticket.status,
        "status_label": label, "status_colour": colour, "queue_id": str(ticket.queue_id),
        "requester": person_ref(ticket.requester_id, ticket.requester_name, ticket.requester_email),
        "assignee": person_ref(ticket.assignee_id, ticket.assignee_name, ticket.assignee_email),
        "company": None if ticket.company_id is None else {"id": str(ticket.company_id),
                                                           "name": ticket.company_name},
        "machine_id": text_id(ticket.machine_id),
        "worked_seconds": {"INTERNAL": internal, "EXTERNAL": external, "total": internal + external},
        "work_in_progress": open_work_type,
        "created_at": timestamp(ticket.created_at), "updated_at": timestamp(ticket.updated_at),
        "resolved_at": timestamp(ticket.resolved_at),
    }


def person_view(people: dict, person_id) -> dict:
    """Who wrote or did something, from the people snapshot (`people`: id → Person)."""
    person = people.get(person_id)
    return {"id": person_id, "name": person.name if person else None,
            "email": person.email if person else None}
