"""tickets: queues, tickets and their status machine, work sessions, comments, timeline,
live chat, report exports, archives. This is the nameko adapter: each entrypoint hands its
arguments to a use-case handler (tickets.py, queues.py, transitions.py, comments.py, chat.py,
filters.py, exports.py, archive.py, snapshots.py), which takes a unit of work source and
knows nothing of nameko; rules live in domain.py."""
from __future__ import annotations

from datetime import datetime

from nameko.rpc import RpcProxy
from prometheus_client.core import GaugeMetricFamily

from common import rpc as deadline
from common.actor import Actor
from common.db import Database, utcnow
from common.idempotency import IdempotencyContext, idempotent
from common.messaging import subscribe
from common.retention import retention_scope
from common.service_base import ServiceBase, rpc
from services.tickets import (archive, chat, comments, domain, exports, filters, models, queues,
                              snapshots, tickets, transitions)
from services.tickets.export_maker import ExportMakerWakeup, export_maker
from services.tickets.storage import TicketsRepository

LOOKUP_TIMEOUT_SECONDS = 5.0


def ticket_gauges(store):
    """`chamados_tickets{status}`, read at scrape time (cached by the collector)."""
    with store.unit_of_work() as uow:
        counts = uow.repo.counts_by_status()
    family = GaugeMetricFamily("chamados_tickets", "Tickets by status", labels=["status"])
    for status in domain.STATUSES:
        family.add_metric([status], counts.get(status, 0))
    yield family


class OtherServices:
    """lookups.Directory over RPC, each call bounded (the in-service proxy has no timeout,
    pitfall 10). The handlers call it only while no unit of work is open."""

    def __init__(self, accounts, devices):
        self.accounts, self.devices = accounts, devices

    def user(self, tenant_id: str, user_id: str) -> dict:
        return deadline.call(self.accounts, "accounts", "lookup_user", tenant_id, user_id,
                             timeout=LOOKUP_TIMEOUT_SECONDS)

    def company(self, tenant_id: str, company_id: str) -> dict:
        return deadline.call(self.accounts, "accounts", "lookup_company", tenant_id, company_id,
                             timeout=LOOKUP_TIMEOUT_SECONDS)

    def machine_in_tenant(self, tenant_id: str, machine_id: str, user_id: str | None = None) -> bool:
        return deadline.call(self.devices, "devices", "machine_in_tenant", tenant_id, machine_id, user_id,
                             timeout=LOOKUP_TIMEOUT_SECONDS)

    def machines_last_seen(self, machine_ids: list[str]) -> dict:
        return deadline.call(self.devices, "devices", "machines_last_seen", machine_ids,
                             timeout=LOOKUP_TIMEOUT_SECONDS)


def when(now: str | None) -> datetime:
    """A scheduler job's tick (ISO text), or now."""
    return datetime.fromisoformat(now) if now else utcnow()


# a state-changing RPC sent with an Idempotency-Key answers every retry with its first answer
once = idempotent(models.idempotency_keys)


class Service(ServiceBase):
    name = "tickets"
    db = Database(repository=TicketsRepository, metadata=models.metadata, gauges=ticket_gauges)
    accounts = RpcProxy("accounts")
    devices = RpcProxy("devices")
    wake_export_maker = ExportMakerWakeup()
    idempotency = IdempotencyContext()  # the caller's Idempotency-Key (@once)
    idempotency_records = models.idempotency_keys
    churning_tables = ("outbox", "idempotency_keys")

    @property
    def directory(self) -> OtherServices:
        return OtherServices(self.accounts, self.devices)

    # queues and people
    @rpc
    def list_queues(self, actor: dict) -> dict:
        return queues.list_queues(self.db, Actor.from_dict(actor))

    @rpc
    @once
    def create_queue(self, actor: dict, payload: dict) -> dict:
        return queues.create_queue(self.db, Actor.from_dict(actor), payload)

    @rpc
    def list_assignees(self, actor: dict) -> dict:
        return tickets.list_assignees(self.db, Actor.from_dict(actor))

    # tickets
    @rpc
    @once
    def create_ticket(self, actor: dict, payload: dict) -> dict:
        return tickets.create_ticket(self.db, self.directory, Actor.from_dict(actor), payload)

    @rpc
    def get_ticket(self, actor: dict, ticket_id: str) -> dict:
        return tickets.get_ticket(self.db, Actor.from_dict(actor), ticket_id)

    @rpc
    @once
    def update_ticket(self, actor: dict, ticket_id: str, payload: dict) -> dict:
        return tickets.update_ticket(self.db, self.directory, Actor.from_dict(actor), ticket_id, payload)

    @rpc
    def list_tickets(self, actor: dict, query: dict) -> dict:
        return tickets.list_tickets(self.db, Actor.from_dict(actor), query)

    @rpc
    def recent_tickets(self, actor: dict, query: dict) -> dict:
        return tickets.recent_tickets(self.db, Actor.from_dict(actor), query)

    @rpc
    def ticket_counts(self, tenant_id: str | None = None) -> dict:
        return tickets.ticket_counts(self.db, tenant_id)

    # a person's default list filter
    @rpc
    def get_saved_filter(self, actor: dict) -> dict:
        return filters.get_saved_filter(self.db, Actor.from_dict(actor))

    @rpc
    def save_filter(self, actor: dict, payload: dict) -> dict:
        return filters.save_filter(self.db, Actor.from_dict(actor), payload)

    @rpc
    def clear_saved_filter(self, actor: dict) -> None:
        filters.clear_saved_filter(self.db, Actor.from_dict(actor))

    # the status machine
    @rpc
    @once
    def assign(self, actor: dict, ticket_id: str, payload: dict) -> dict:
        return transitions.assign(self.db, self.directory, Actor.from_dict(actor), ticket_id, payload)

    @rpc
    @once
    def start(self, actor: dict, ticket_id: str, payload: dict) -> dict:
        return transitions.start(self.db, self.directory, Actor.from_dict(actor), ticket_id, payload)

    @rpc
    @once
    def pause(self, actor: dict, ticket_id: str, payload: dict) -> dict:
        return transitions.pause(self.db, self.directory, Actor.from_dict(actor), ticket_id, payload)

    @rpc
    @once
    def resolve(self, actor: dict, ticket_id: str, payload: dict) -> dict:
        return transitions.resolve(self.db, self.directory, Actor.from_dict(actor), ticket_id, payload)

    @rpc
    @once
    def reopen(self, actor: dict, ticket_id: str) -> dict:
        return transitions.reopen(self.db, self.directory, Actor.from_dict(actor), ticket_id)

    @rpc
    def lunch_pause(self, now: str | None = None) -> dict:
        return transitions.lunch_pause(self.db, when(now))

    # comments and timeline
    @rpc
    @once
    def add_comment(self, actor: dict, ticket_id: str, payload: dict) -> dict:
        return comments.add_comment(self.db, Actor.from_dict(actor), ticket_id, payload)

    @rpc
    def list_comments(self, actor: dict, ticket_id: str) -> dict:
        return comments.list_comments(self.db, Actor.from_dict(actor), ticket_id)

    @rpc
    def timeline(self, actor: dict, ticket_id: str) -> dict:
        return comments.timeline(self.db, Actor.from_dict(actor), ticket_id)

    # live chat
    @rpc
    @once
    def start_chat(self, actor: dict, ticket_id: str) -> dict:
        return chat.start_chat(self.db, Actor.from_dict(actor), ticket_id)

    @rpc
    def get_chat(self, actor: dict, chat_id: str) -> dict:
        return chat.get_chat(self.db, Actor.from_dict(actor), chat_id)

    @rpc
    @once
    def post_chat_message(self, actor: dict, chat_id: str, payload: dict) -> dict:
        return chat.post_chat_message(self.db, Actor.from_dict(actor), chat_id, payload)

    @rpc
    @once
    def end_chat(self, actor: dict, chat_id: str) -> dict:
        return chat.end_chat(self.db, Actor.from_dict(actor), chat_id)

    @rpc
    def end_inactive_chats(self, now: str | None = None) -> dict:
        return chat.end_inactive_chats(self.db, self.directory, when(now))

    # report exports
    @rpc
    @once
    def request_export(self, actor: dict, payload: dict) -> dict:
        return exports.request_export(self.db, Actor.from_dict(actor), payload, self.wake_export_maker)

    @rpc
    def get_export(self, actor: dict, export_id: str) -> dict:
        return exports.get_export(self.db, Actor.from_dict(actor), export_id)

    @rpc
    def list_exports(self, actor: dict, query: dict) -> dict:
        return exports.list_exports(self.db, Actor.from_dict(actor), query)

    @rpc
    def download_export(self, actor: dict, export_id: str) -> dict:
        return exports.download_export(self.db, self.db.settings.export_dir, Actor.from_dict(actor), export_id)

    @export_maker
    def make_exports(self) -> dict:
        """The export maker's run (export_maker.py): right after a request, and every minute."""
        return exports.make_exports(self.db, self.db.settings.export_dir)

    @rpc
    def run_report_exports(self, now: str | None = None) -> dict:
        """The scheduler's `report-export-runner` (off by default; the service makes exports
        itself): makes whatever is still waiting, as the export maker does."""
        return exports.make_exports(self.db, self.db.settings.export_dir)

    @rpc
    def apply_retention(self, now: str | None = None, dry_run: bool = False,
                        tenant_id: str | None = None) -> dict:
        as_of, tenant = retention_scope(now, dry_run, tenant_id)
        return exports.apply_retention(self.db, self.db.settings.export_dir, as_of, tenant, dry_run)

    # archive
    @rpc
    def archive_resolved(self, actor: dict, payload: dict) -> dict:
        return archive.archive_resolved(self.db, self.db.settings.archive_dir, Actor.from_dict(actor), payload)

    # accounts' events
    @subscribe("accounts", "tenant_created")
    def on_tenant_created(self, event: dict) -> None:
        snapshots.tenant_created(self.db, event)

    @subscribe("accounts", "user_created")
    def on_user_created(self, event: dict) -> None:
        snapshots.user_changed(self.db, event, "user_created")

    @subscribe("accounts", "user_updated")
    def on_user_updated(self, event: dict) -> None:
        snapshots.user_changed(self.db, event, "user_updated")

    @subscribe("accounts", "company_created")
    def on_company_created(self, event: dict) -> None:
        snapshots.company_changed(self.db, event, "company_created")

    @subscribe("accounts", "company_updated")
    def on_company_updated(self, event: dict) -> None:
        snapshots.company_changed(self.db, event, "company_updated")

    @subscribe("accounts", "user_merged")
    def on_user_merged(self, event: dict) -> None:
        snapshots.user_merged(self.db, self.directory, event)
