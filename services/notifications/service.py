"""notifications: people hear about their tickets by mail (issue 28, the outgoing half).

The nameko adapter: tickets' events become deliveries (deliveries.py, domain.py decides who
gets what), accounts' events keep the projection of people (people.py), and the sender's
loop (outgoing.py) sends what is due over SMTP (sender.py). Nothing here is on the ticket
path: tickets' events arrive through its outbox after its requests committed."""
from __future__ import annotations

import logging
from datetime import timedelta

from prometheus_client.core import GaugeMetricFamily

from common.db import Database, utcnow
from common.messaging import subscribe
from common.outages import describe, is_database_outage, warn_once
from common.service_base import ServiceBase
from services.notifications import deliveries, people, sender, storage
from services.notifications.outgoing import MailConfiguration, SenderWakeup, mail_sender
from services.notifications.storage import NotificationsRepository


log = logging.getLogger(__name__)
SENT_MAIL_KEPT = timedelta(days=30)


def delivery_gauges(store):
    """`chamados_mail_deliveries{status}`: waiting (pending), sent, failed — read at scrape time."""
    with store.unit_of_work(read_only=True) as uow:
        counts = uow.repo.counts_by_status()
    family = GaugeMetricFamily("chamados_mail_deliveries", "Mail deliveries by status", labels=["status"])
    for status in storage.STATUSES:
        family.add_metric([status], counts.get(status, 0))
    yield family


class Service(ServiceBase):
    name = "notifications"
    db = Database(repository=NotificationsRepository, gauges=delivery_gauges)  # no outbox: it emits nothing
    mail = MailConfiguration()
    wake_sender = SenderWakeup()
    churning_tables = ("deliveries", "inbox")

    def purge_expired(self, uow, when) -> dict:
        """Sent mail past SENT_MAIL_KEPT (ServiceBase.maintain_storage)."""
        return {"deliveries_deleted": uow.repo.purge_sent(when - SENT_MAIL_KEPT)}

    def ticket_event(self, event: dict, event_type: str) -> None:
        if deliveries.ticket_event(self.db, event, event_type, self.mail is not None, utcnow()):
            self.wake_sender()

    @mail_sender
    def send_mail(self) -> dict:
        if self.mail is None:
            return {}
        try:
            return sender.send_due(self.db, self.mail)
        except Exception as exc:  # the loop tries again in a second: one line per outage, no trace
            if not is_database_outage(exc):
                raise
            warn_once(log, "notifications database", "mail waits: the database is unreachable: %s", describe(exc))
            return {}

    # tickets' events

    @subscribe("tickets", "ticket_created")
    def on_ticket_created(self, event: dict) -> None:
        self.ticket_event(event, "ticket_created")

    @subscribe("tickets", "ticket_assigned")
    def on_ticket_assigned(self, event: dict) -> None:
        self.ticket_event(event, "ticket_assigned")

    @subscribe("tickets", "comment_added")
    def on_comment_added(self, event: dict) -> None:
        self.ticket_event(event, "comment_added")

    @subscribe("tickets", "ticket_status_changed")
    def on_ticket_status_changed(self, event: dict) -> None:
        self.ticket_event(event, "ticket_status_changed")

    # accounts' events: the projection of people

    @subscribe("accounts", "user_created")
    def on_user_created(self, event: dict) -> None:
        people.user_changed(self.db, event, "user_created")

    @subscribe("accounts", "user_updated")
    def on_user_updated(self, event: dict) -> None:
        people.user_changed(self.db, event, "user_updated")

    @subscribe("accounts", "user_merged")
    def on_user_merged(self, event: dict) -> None:
        people.user_merged(self.db, event)
