"""Comments (public, or internal to staff) and the ticket's timeline."""
from __future__ import annotations

import orjson

from common.actor import Actor
from common.contracts import load
from common.contracts import tickets as contract
from common.db import utcnow
from common.unit_of_work import UnitOfWorkSource
from services.tickets import domain
from services.tickets.models import Comment
from services.tickets.tickets import find_ticket, record
from services.tickets.transitions import state_of, ticket_context
from services.tickets.views import person_view


def add_comment(source: UnitOfWorkSource, actor: Actor, ticket_id, payload: dict) -> dict:
    data = load(contract.CommentCreate, payload)
    now = utcnow()
    with source.unit_of_work() as uow:
        ticket = find_ticket(uow, actor, ticket_id)
        domain.check_can_comment(state_of(ticket, None), actor.role, data["visibility"],
                                 ticket.requester_id == actor.user_id)
        comment = uow.repo.add(Comment(ticket_id=ticket.id, author_id=actor.user_id,
                                       visibility=data["visibility"], body=data["body"], created_at=now))
        ticket.updated_at = now
        if comment.visibility == "PUBLIC":  # only public comments are searchable
            uow.repo.index_comment(ticket, comment.body)
        record(uow, ticket, actor.user_id, "COMMENT_ADDED",
               {"comment_id": str(comment.id), "visibility": comment.visibility}, now)
        uow.emit("comment_added", {"tenant_id": ticket.tenant_id, "ticket_id": ticket.id,
                                   "comment_id": comment.id, "author_id": actor.user_id,
                                   "visibility": comment.visibility, "body": comment.body,
                                   **ticket_context(ticket)})
        uow.commit()
        return comment_views(uow, [comment])[0]


def list_comments(source: UnitOfWorkSource, actor: Actor, ticket_id) -> dict:
    with source.unit_of_work() as uow:
        ticket = find_ticket(uow, actor, ticket_id)
        comments = uow.repo.comments(ticket.id, domain.visible_comment_kinds(actor.role))
        return {"items": comment_views(uow, comments)}


def comment_views(uow, comments) -> list[dict]:
    people = uow.repo.people(c.author_id for c in comments)
    return [contract.Comment().dump({
        "id": c.id, "ticket_id": c.ticket_id, "body": c.body, "visibility": c.visibility,
        "created_at": c.created_at, "author": person_view(people, c.author_id)})
        for c in comments]


def timeline(source: UnitOfWorkSource, actor: Actor, ticket_id) -> dict:
    with source.unit_of_work() as uow:
        ticket = find_ticket(uow, actor, ticket_id)
        entries = [(e, orjson.loads(e.data)) for e in uow.repo.timeline(ticket.id)]
        if not actor.is_staff:  # internal comments stay internal, on the timeline too
            entries = [(e, data) for e, data in entries if data.get("visibility") != "INTERNAL"]
        people = uow.repo.people(e.actor_id for e, _ in entries)
        return {"items": [contract.TimelineEntry().dump({
            "id": e.id, "kind": e.kind, "data": data, "created_at": e.created_at,
            "actor": person_view(people, e.actor_id) if e.actor_id else None})
            for e, data in entries]}
