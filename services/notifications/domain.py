"""Who is told what about a ticket, and when a mail that could not go is tried again: plain
Python (no nameko, SQLAlchemy or marshmallow; make lint checks).

Defaults (issue 28): the requester hears that her ticket was opened (a receipt with its
number, even when she opened it herself: that is what it is for), of a public comment by
someone else, that it was resolved (with the closing message) and reopened; the assignee
hears that a ticket was assigned to him, of the requester's comments, and that it was
reopened. Internal comments reach nobody here (collaborators never see them). Nobody is
mailed about their own action."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


OPENED, ASSIGNED, COMMENTED, RESOLVED, REOPENED = (
    "ticket_opened", "ticket_assigned", "comment_added", "ticket_resolved", "ticket_reopened")
KINDS = (OPENED, ASSIGNED, COMMENTED, RESOLVED, REOPENED)

RESOLVED_STATUS = "RESOLVED"
PUBLIC = "PUBLIC"

# a mail that could not go waits 2, 4, 8 … seconds, never more than five minutes, and is
# tried for as long as it takes: a server down or refusing for now (4xx) loses nothing
RETRY_FIRST_SECONDS = 2
RETRY_MAX_SECONDS = 300


@dataclass(frozen=True)
class Notice:
    """One mail to send: to whom (a person's id), what kind, about which ticket, with what."""
    recipient_id: str
    kind: str
    ticket_id: str
    reference: int
    subject: str
    actor_id: str | None = None
    text: str | None = None  # a comment's body, a resolve's closing message


def notices(event_type: str, event: dict) -> list[Notice]:
    """The mails a ticket event asks for (none for an event queued before tickets' events
    carried the ticket's reference and people)."""
    if event.get("reference") is None or event.get("subject") is None:
        return []
    ticket = {"ticket_id": event["ticket_id"], "reference": event["reference"], "subject": event["subject"]}
    requester, assignee = event.get("requester_id"), event.get("assignee_id")
    wanted: list[tuple[str | None, str]] = []
    actor, text = None, None
    if event_type == "ticket_created":
        wanted = [(requester, OPENED)]
    elif event_type == "ticket_assigned":
        actor = event.get("actor_id")
        wanted = [(assignee, ASSIGNED)]
    elif event_type == "comment_added":
        actor, text = event.get("author_id"), event.get("body")
        if event.get("visibility") == PUBLIC:
            wanted = [(assignee, COMMENTED)] if actor == requester else [(requester, COMMENTED)]
    elif event_type == "ticket_status_changed":
        actor = event.get("actor_id")
        if event.get("to_status") == RESOLVED_STATUS:
            text = event.get("message")
            wanted = [(requester, RESOLVED)]
        elif event.get("from_status") == RESOLVED_STATUS:
            wanted = [(requester, REOPENED), (assignee, REOPENED)]
    found, seen = [], set()
    for recipient, kind in wanted:
        if recipient is None or (recipient == actor and kind != OPENED) or (recipient, kind) in seen:
            continue
        seen.add((recipient, kind))
        found.append(Notice(recipient_id=recipient, kind=kind, actor_id=actor, text=text, **ticket))
    return found


def retry_delay(attempts: int) -> timedelta:
    """After the `attempts`-th failed try (1, 2, …): doubling, capped."""
    return timedelta(seconds=min(RETRY_FIRST_SECONDS * 2 ** max(attempts - 1, 0), RETRY_MAX_SECONDS))


def next_attempt(now: datetime, attempts: int) -> datetime:
    return now + retry_delay(attempts)
