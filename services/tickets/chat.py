"""Live chat on a ticket with a machine: staff start it, both sides write, either side (or
the scheduler's cleanup) ends it; starting and ending move the ticket's work along."""
from __future__ import annotations

import logging
from datetime import datetime

from common.actor import Actor
from common.contracts import load, parse_id
from common.contracts import tickets as contract
from common.db import utcnow
from common.errors import Conflict, NotFound
from common.unit_of_work import UnitOfWorkSource
from services.tickets import domain
from services.tickets.lookups import Answers, Directory
from services.tickets.permissions import require_staff
from services.tickets.models import Chat, ChatMessage
from services.tickets.tickets import find_ticket, record
from services.tickets.transitions import apply, state_of
from services.tickets.views import person_view

log = logging.getLogger(__name__)


def find_chat(uow, actor: Actor, chat_id) -> Chat:
    chat = uow.repo.chat(actor.tenant_id, parse_id(chat_id, "chat"))
    if chat is None:
        raise NotFound("chat not found", code="chat_not_found")
    find_ticket(uow, actor, chat.ticket_id)  # the chat is as visible as its ticket
    return chat


def chat_view(uow, chat: Chat) -> dict:
    messages = uow.repo.chat_messages(chat.id)
    people = uow.repo.people(m.author_id for m in messages)
    return contract.Chat().dump({
        "id": chat.id, "ticket_id": chat.ticket_id, "started_by": chat.started_by,
        "started_at": chat.started_at, "last_activity_at": chat.last_activity_at,
        "ended_at": chat.ended_at, "end_reason": chat.end_reason,
        "messages": [{"id": m.id, "body": m.body, "created_at": m.created_at,
                      "author": person_view(people, m.author_id)} for m in messages]})


def start_chat(source: UnitOfWorkSource, actor: Actor, ticket_id) -> dict:
    require_staff(actor, "start chats")
    now = utcnow()
    with source.unit_of_work() as uow:
        ticket = find_ticket(uow, actor, ticket_id, for_update=True)
        if uow.repo.open_chat(ticket.id) is not None:
            raise Conflict("this ticket already has a chat going on", code="chat_in_progress")
        session = uow.repo.open_session(ticket.id)
        outcome = domain.chat_opening(state_of(ticket, session), actor.user_id, now,
                                      has_device=ticket.machine_id is not None)
        if outcome is not None:  # work starts on an assigned ticket: nobody new to look up
            apply(uow, Answers(), ticket, session, outcome, actor.user_id, now)
        chat = uow.repo.add(Chat(ticket_id=ticket.id, tenant_id=ticket.tenant_id,
                                 started_by=actor.user_id, started_at=now, last_activity_at=now))
        record(uow, ticket, actor.user_id, "CHAT_STARTED", {"chat_id": str(chat.id)}, now)
        uow.emit("chat_started", {"tenant_id": ticket.tenant_id, "ticket_id": ticket.id,
                                  "chat_id": chat.id, "reason": None})
        uow.commit()
        return chat_view(uow, chat)


def get_chat(source: UnitOfWorkSource, actor: Actor, chat_id) -> dict:
    with source.unit_of_work() as uow:
        return chat_view(uow, find_chat(uow, actor, chat_id))


def post_chat_message(source: UnitOfWorkSource, actor: Actor, chat_id, payload: dict) -> dict:
    data = load(contract.ChatMessageCreate, payload)
    now = utcnow()
    with source.unit_of_work() as uow:
        chat = find_chat(uow, actor, chat_id)
        if chat.ended_at is not None:
            raise Conflict("the chat has ended", code="chat_ended")
        uow.repo.add(ChatMessage(chat_id=chat.id, author_id=actor.user_id, body=data["body"], created_at=now))
        chat.last_activity_at = now
        uow.commit()
        return chat_view(uow, chat)


def end_chat(source: UnitOfWorkSource, actor: Actor, chat_id) -> dict:
    with source.unit_of_work() as uow:
        chat = find_chat(uow, actor, chat_id)
        if chat.ended_at is not None:
            raise Conflict("the chat has ended", code="chat_ended")
        close_chat(uow, chat, "ENDED_BY_USER", actor.user_id, utcnow())
        uow.commit()
        return chat_view(uow, chat)


def close_chat(uow, chat: Chat, reason: str, actor_id, now: datetime) -> None:
    chat.ended_at, chat.end_reason = now, reason
    ticket = uow.repo.ticket_by_id(chat.ticket_id)
    session = uow.repo.open_session(ticket.id)
    outcome = domain.chat_closing(state_of(ticket, session), now)
    if outcome is not None:  # a pause assigns nobody: no lookup
        apply(uow, Answers(), ticket, session, outcome, actor_id, now)
    record(uow, ticket, actor_id, "CHAT_ENDED", {"chat_id": str(chat.id), "reason": reason}, now)
    uow.emit("chat_ended", {"tenant_id": ticket.tenant_id, "ticket_id": ticket.id,
                            "chat_id": chat.id, "reason": reason})


def end_inactive_chats(source: UnitOfWorkSource, directory: Directory, now: datetime) -> dict:
    """The scheduler's chat cleanup: ends chats whose device is offline > 5 min, which
    had no message for 12 h, or whose ticket has lost its device since the chat started
    (a chat starts only with one); the reason goes on the timeline. Nothing is written
    when nothing has to end. Devices is asked between a read and the writing transaction."""
    with source.unit_of_work(read_only=True) as uow:
        machine_ids = {ticket.machine_id for ticket in
                       (uow.repo.ticket_by_id(chat.ticket_id) for chat in uow.repo.open_chats())
                       if ticket.machine_id}
    last_seen = machines_last_seen(directory, machine_ids)
    reasons: dict[str, int] = {}
    with source.unit_of_work() as uow:
        for chat in uow.repo.open_chats():
            machine_id = uow.repo.ticket_by_id(chat.ticket_id).machine_id
            # a machine devices was not asked about (set since the read) waits for the next sweep
            known = machine_id is not None and str(machine_id) in last_seen
            seen = last_seen.get(str(machine_id)) if known else None
            reason = domain.chat_end_reason(
                now=now, last_activity_at=chat.last_activity_at, machine_id=machine_id,
                machine_last_seen_at=datetime.fromisoformat(seen) if seen else None, machine_known=known)
            if reason is not None:
                close_chat(uow, chat, reason, None, now)
                reasons[reason] = reasons.get(reason, 0) + 1
        if reasons:
            uow.commit()
    return contract.ChatSweep().dump({"ended": sum(reasons.values()), "reasons": reasons})


def machines_last_seen(directory: Directory, machine_ids) -> dict:
    """{machine id: ISO time or None} from devices; {} while devices cannot tell, so the
    offline rule waits rather than ending chats on a guess."""
    if not machine_ids:
        return {}
    try:
        return directory.machines_last_seen(sorted(str(m) for m in machine_ids))
    except Exception as exc:
        log.warning("devices could not say when machines were last seen: %s", exc)
        return {}
