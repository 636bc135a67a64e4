"""Pending deliveries out over SMTP: claim a batch (a short transaction: the rows leased),
send with no unit of work open, then record each outcome — sent; retried later with capped
back-off (down, 4xx, a recipient not in the projection yet); failed for good (5xx). A crash
between the send and the record sends that mail again once its lease is over: at least
once, as SMTP allows (the server cannot tell us it already has it)."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from prometheus_client import Counter

from common.tables import utcnow
from common.unit_of_work import UnitOfWorkSource
from services.notifications import domain, mails, smtp
from services.notifications.storage import FAILED, SENT, notice_of

log = logging.getLogger(__name__)

BATCH = 50
LEASE = timedelta(minutes=2)  # longer than a batch takes to send (TIMEOUT_SECONDS per step)

MAILS = Counter("chamados_mails_total", "Mail deliveries tried, by outcome",
                ["outcome"])  # sent | retry | failed
for _outcome in (smtp.SENT, smtp.RETRY, smtp.FAILED):
    MAILS.labels(_outcome)


@dataclass(frozen=True)
class MailSettings:
    server: smtp.SmtpServer
    mail_from: str
    console_url: str


def send_due(source: UnitOfWorkSource, settings: MailSettings, send: Callable = smtp.send_all,
             clock: Callable[[], datetime] = utcnow) -> dict:
    """One batch: {"sent": n, "retry": n, "failed": n}."""
    now = clock()
    with source.unit_of_work() as uow:
        due = uow.repo.claim_due(now, now + LEASE, BATCH)
        prepared = {delivery.id: _prepare(uow, delivery, settings, now) for delivery in due}
        attempts = {delivery.id: delivery.attempts for delivery in due}
        uow.commit()
    if not prepared:
        return {}
    composed = {key: mail for key, (mail, _, _) in prepared.items() if mail is not None}
    outcomes = send(settings.server, composed, settings.mail_from) if composed else {}
    for key, (mail, problem, _) in prepared.items():
        if mail is None:
            outcomes[key] = smtp.Outcome(smtp.RETRY, problem)
    counts: dict = {}
    finished = clock()  # a retry waits from when this try ended
    with source.unit_of_work() as uow:
        for key, outcome in outcomes.items():
            delivery = uow.repo.delivery(key)
            delivery.attempts = attempts[key] + 1
            delivery.last_error = outcome.detail
            if outcome.result == smtp.SENT:
                delivery.status, delivery.sent_at = SENT, finished
                delivery.to_address = prepared[key][2]
            elif outcome.result == smtp.FAILED:
                delivery.status = FAILED
                log.warning("mail %s to %s refused for good: %s", key, delivery.recipient_id, outcome.detail)
            else:
                delivery.next_attempt_at = domain.next_attempt(finished, delivery.attempts)
            counts[outcome.result] = counts.get(outcome.result, 0) + 1
            MAILS.labels(outcome.result).inc()
        uow.commit()
    return counts


def _prepare(uow, delivery, settings: MailSettings, now: datetime):
    """(the mail, None, its address), or (None, why it cannot be composed yet, None)."""
    notice = notice_of(delivery)
    recipient = _person(uow, notice.recipient_id)
    if recipient is None:
        return None, "recipient not known yet (accounts' user event not received)", None
    actor = _person(uow, notice.actor_id) if notice.actor_id else None
    return mails.compose(notice, str(delivery.id), recipient, actor, settings.mail_from,
                         settings.console_url, now), None, recipient.email


def _person(uow, person_id) -> mails.Person | None:
    """The person, or the account they were merged into."""
    for _ in range(5):  # a merged account's target may itself have been merged since
        found = uow.repo.person(uuid.UUID(str(person_id)))
        if found is None:
            return None
        if found.merged_into_id is None:
            return mails.Person(name=found.name, email=found.email)
        person_id = found.merged_into_id
    return None
