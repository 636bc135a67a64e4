"""Tickets' events become deliveries (domain.notices decides who gets what), in the event's
own transaction with its inbox row: a redelivered event adds nothing, and the unique
(event, recipient, kind) key holds even if the inbox did not. Sending is the sender's
(sender.py): the ticket path never waits for SMTP."""
from __future__ import annotations

from datetime import datetime

from common.unit_of_work import UnitOfWorkSource
from services.notifications import domain


def ticket_event(source: UnitOfWorkSource, event: dict, event_type: str, enabled: bool,
                 now: datetime) -> int:
    """How many deliveries the event added. With notifications off (no SMTP_URL) the event
    is only marked handled: turning them on later mails nothing old."""
    with source.unit_of_work() as uow:
        if not uow.repo.first_delivery(event, event_type):
            return 0
        notices = domain.notices(event_type, event) if enabled else []
        uow.repo.add_deliveries(event, notices, now)
        uow.commit()
        return len(notices)
