"""In-memory stand-ins for the tickets handlers' fast unit tests: the repository methods the
handlers call (services/tickets/storage.py's TicketsRepository, same names and meanings,
over plain lists of ORM rows that never meet a session), a store that knows whether a unit
of work is open, and the other services as a directory that fails a test when it is asked
while one is. A unit of work left without commit drops the rows it added and the events it
recorded as handled (what a use case retried after a lookup relies on), but not changes to
rows that were already there; tests assert on what committed (`store.events`,
`store.commits`) and on the answers."""
from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timezone

from common.actor import STAFF_ROLES
from services.tickets.models import (Chat, ChatMessage, Comment, CompanySnapshot, Person, QueueRef,
                                      ReportExport, SavedFilter, Ticket, TicketQueue, TimelineEntry,
                                      WorkSession)
from services.tickets.views import ticket_view
from tests.support.fake_uow import FakeStore, FakeUnitOfWork


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


class CountingUnitOfWork(FakeUnitOfWork):
    def __enter__(self):
        self._store.open_units += 1
        self.repo.begin()
        return self

    def commit(self) -> None:
        super().commit()
        self.repo.keep_added()

    def __exit__(self, *exc_info):
        self._store.open_units -= 1
        self.repo.drop_added()
        super().__exit__(*exc_info)


class TicketsStore(FakeStore):
    """FakeStore over a FakeTicketsRepository, counting the units of work open."""

    def __init__(self):
        super().__init__("tickets", FakeTicketsRepository())
        self.open_units = 0

    def unit_of_work(self, read_only: bool = False) -> CountingUnitOfWork:
        return CountingUnitOfWork(self, read_only=read_only)

    def event_types(self) -> list[str]:
        return [event["type"] for event in self.events]


class FakeDirectory:
    """accounts and devices as lookups.Directory; each call is recorded, and one made while
    a unit of work is open fails the test (lookups happen before the unit of work)."""

    def __init__(self, store: TicketsStore):
        self.store = store
        self.users: dict[str, dict] = {}
        self.companies: dict[str, dict] = {}
        self.machines: dict[str, str] = {}  # machine id → tenant id
        self.machine_users: dict[str, set[str]] = {}  # machine id → the users it is assigned to or linked with
        self.last_seen: dict[str, str | None] | Exception = {}
        self.calls: list[tuple] = []

    def _called(self, *call) -> None:
        assert self.store.open_units == 0, f"{call[0]} asked inside an open unit of work"
        self.calls.append(call)

    def user(self, tenant_id: str, user_id: str) -> dict:
        self._called("user", user_id)
        return self.users[user_id]

    def company(self, tenant_id: str, company_id: str) -> dict:
        self._called("company", company_id)
        return self.companies[company_id]

    def machine_in_tenant(self, tenant_id: str, machine_id: str, user_id: str | None = None) -> bool:
        self._called("machine_in_tenant", machine_id)
        return self.machines.get(machine_id) == tenant_id and (
            user_id is None or user_id in self.machine_users.get(machine_id, ()))

    def machines_last_seen(self, machine_ids: list[str]) -> dict:
        self._called("machines_last_seen", tuple(machine_ids))
        if isinstance(self.last_seen, Exception):
            raise self.last_seen
        return {m: self.last_seen[m] for m in machine_ids if m in self.last_seen}


class FakeTicketsRepository:
    def __init__(self):
        self.rows: dict[type, list] = {}
        self.inbox: set[uuid.UUID] = set()
        self.references: dict[uuid.UUID, int] = {}
        self.indexed: list[uuid.UUID] = []  # tickets whose search entry was rewritten
        self._timeline_ids = itertools.count(1)
        self._added: list | None = None  # by the unit of work open: dropped unless it commits

    def begin(self) -> None:
        self._added = []

    def keep_added(self) -> None:
        self._added = []

    def drop_added(self) -> None:
        for row in self._added:
            if isinstance(row, uuid.UUID):
                self.inbox.discard(row)
            else:
                self.all(type(row)).remove(row)
        self._added = None

    def all(self, model) -> list:
        return self.rows.setdefault(model, [])

    def _find(self, model, **values):
        return next((row for row in self.all(model)
                     if all(getattr(row, key) == value for key, value in values.items())), None)

    # the session's own work
    def add(self, row):
        if isinstance(row, TimelineEntry):
            row.id = next(self._timeline_ids)
        elif getattr(row, "id", False) is None:
            row.id = uuid.uuid4()
        if hasattr(row, "created_at") and row.created_at is None:
            row.created_at = datetime.now(timezone.utc)
        self.all(type(row)).append(row)
        if self._added is not None:  # not a test's own setting up
            self._added.append(row)
        return row

    add_later = add

    def flush(self) -> None:
        pass

    def refresh(self, row) -> None:
        pass  # the fake's rows are the stored ones

    def delete(self, row) -> None:
        self.all(type(row)).remove(row)

    def first_delivery(self, event: dict, event_type: str) -> bool:
        event_id = uuid.UUID(str(event["event_id"]))
        if event_id in self.inbox:
            return False
        self.inbox.add(event_id)
        if self._added is not None:
            self._added.append(event_id)
        return True

    # directory snapshots
    def person(self, user_id) -> Person | None:
        return self._find(Person, id=user_id)

    person_for_update = person

    def update_snapshot_if_newer(self, model, snapshot_id, version, values: dict) -> bool:
        row = self._find(model, id=snapshot_id)
        if row is None or not version.applies_over(row.version):
            return False
        for key, value in dict(values, version=version.stored).items():
            setattr(row, key, value)
        return True

    def insert_missing(self, model, keys: tuple[str, ...], **values) -> None:
        if self._find(model, **{key: values[key] for key in keys}) is None:
            self.add(model(**values))

    def staff(self, tenant_id, limit: int = 1000) -> list[Person]:
        return sorted((p for p in self.all(Person) if p.tenant_id == tenant_id and p.role in STAFF_ROLES
                       and p.merged_into_id is None), key=lambda p: (p.name, p.id))[:limit]

    def people(self, ids) -> dict:
        wanted = set(ids)
        return {p.id: p for p in self.all(Person) if p.id in wanted}

    def company(self, company_id) -> CompanySnapshot | None:
        return self._find(CompanySnapshot, id=company_id)

    def ensure_company(self, company_id, tenant_id, name: str, version: int = 0) -> CompanySnapshot:
        self.insert_missing(CompanySnapshot, ("id",), id=company_id, tenant_id=tenant_id, name=name,
                            version=version)
        return self.company(company_id)

    def refresh_person_snapshots(self, person: Person) -> None:
        for ticket in self.all(Ticket):
            if ticket.tenant_id == person.tenant_id and ticket.requester_id == person.id:
                ticket.requester_name, ticket.requester_email = person.name, person.email
            if ticket.tenant_id == person.tenant_id and ticket.assignee_id == person.id:
                ticket.assignee_name, ticket.assignee_email = person.name, person.email

    def refresh_company_snapshots(self, company: CompanySnapshot) -> None:
        for ticket in self.all(Ticket):
            if ticket.tenant_id == company.tenant_id and ticket.company_id == company.id:
                ticket.company_name = company.name

    def remap_user(self, tenant_id, old_id, new_id) -> None:
        for ticket in self.all(Ticket):
            for column in ("requester_id", "assignee_id"):
                if ticket.tenant_id == tenant_id and getattr(ticket, column) == old_id:
                    setattr(ticket, column, new_id)

    # queues
    def queues(self, tenant_id) -> list[TicketQueue]:
        return sorted((q for q in self.all(TicketQueue) if q.tenant_id == tenant_id),
                      key=lambda q: q.name_normalized)

    def queue(self, tenant_id, queue_id) -> QueueRef | None:
        queue = self._find(TicketQueue, id=queue_id, tenant_id=tenant_id)
        return QueueRef(queue.id, queue.tenant_id, queue.name) if queue else None

    def queue_by_name(self, tenant_id, name_normalized: str) -> TicketQueue | None:
        return self._find(TicketQueue, tenant_id=tenant_id, name_normalized=name_normalized)

    # tickets
    def next_reference(self, tenant_id) -> int:
        self.references[tenant_id] = self.references.get(tenant_id, 0) + 1
        return self.references[tenant_id]

    def ticket(self, tenant_id, ticket_id, for_update: bool = False) -> Ticket | None:
        key = "reference" if isinstance(ticket_id, int) else "id"
        return self._find(Ticket, tenant_id=tenant_id, **{key: ticket_id})

    def ticket_by_id(self, ticket_id) -> Ticket | None:
        return self._find(Ticket, id=ticket_id)

    def open_session(self, ticket_id) -> WorkSession | None:
        return self._find(WorkSession, ticket_id=ticket_id, ended_at=None)

    def add_ticket(self, ticket: Ticket) -> Ticket:
        self.add(ticket)
        self.index_ticket(ticket)
        return ticket

    def index_ticket(self, ticket: Ticket) -> None:
        self.indexed.append(ticket.id)

    def index_comment(self, ticket: Ticket, body: str) -> None:
        self.indexed.append(ticket.id)

    def _matching(self, tenant_id, filters: dict, only_requester=None) -> list[Ticket]:
        """The filters the tests use (status, assignee_id); newest first."""
        found = [t for t in self.all(Ticket) if t.tenant_id == tenant_id
                 and (only_requester is None or t.requester_id == only_requester)
                 and (not filters.get("status") or t.status == filters["status"])
                 and (not filters.get("assignee_id") or str(t.assignee_id) == filters["assignee_id"])]
        return sorted(found, key=lambda t: (t.created_at, t.id), reverse=True)

    def page(self, tenant_id, filters: dict, only_requester=None, after=None, limit=50) -> list[tuple]:
        found = [t for t in self._matching(tenant_id, filters, only_requester)
                 if after is None or (t.created_at, t.id) < after]
        return [(ticket_view(t), t.created_at, t.id) for t in found[:limit]]

    def recent(self, tenant_id, limit: int, only_requester=None) -> list:
        """Unassigned first, oldest to newest; then the rest, most recently updated first."""
        mine = [t for t in self.all(Ticket) if t.tenant_id == tenant_id
                and (only_requester is None or t.requester_id == only_requester)]
        unassigned = sorted((t for t in mine if t.assignee_id is None), key=lambda t: (t.created_at, t.id))
        rest = sorted((t for t in mine if t.assignee_id is not None), key=lambda t: (t.updated_at, t.id),
                      reverse=True)
        return [ticket_view(t) for t in (unassigned + rest)[:limit]]

    def count_matching(self, tenant_id, filters: dict, only_requester, cap: int) -> int:
        return min(len(self._matching(tenant_id, filters, only_requester)), cap + 1)

    def export_page(self, tenant_id, filters: dict, after, limit: int) -> list[Ticket]:
        found = [t for t in self._matching(tenant_id, filters) if after is None or (t.created_at, t.id) < after]
        return found[:limit]

    def comments(self, ticket_id, visibilities) -> list[Comment]:
        return [c for c in self.all(Comment) if c.ticket_id == ticket_id and c.visibility in visibilities]

    def timeline(self, ticket_id) -> list[TimelineEntry]:
        return [e for e in self.all(TimelineEntry) if e.ticket_id == ticket_id]

    # chats
    def chat(self, tenant_id, chat_id) -> Chat | None:
        return self._find(Chat, tenant_id=tenant_id, id=chat_id)

    def open_chat(self, ticket_id) -> Chat | None:
        return self._find(Chat, ticket_id=ticket_id, ended_at=None)

    def open_chats(self, limit: int = 500) -> list[Chat]:
        return sorted((c for c in self.all(Chat) if c.ended_at is None), key=lambda c: c.last_activity_at)[:limit]

    def chat_messages(self, chat_id) -> list[ChatMessage]:
        return [m for m in self.all(ChatMessage) if m.chat_id == chat_id]

    def internal_work_in_progress(self) -> list:
        return [(self.ticket_by_id(s.ticket_id), s) for s in self.all(WorkSession)
                if s.ended_at is None and s.work_type == "INTERNAL"
                and self.ticket_by_id(s.ticket_id).status == "AWAITING_ATTENDANCE"]

    def archivable(self, tenant_id, resolved_before, limit: int) -> list[Ticket]:
        return [t for t in self.all(Ticket) if t.tenant_id == tenant_id and t.status == "RESOLVED"
                and t.resolved_at < resolved_before and t.archived_at is None][:limit]

    # filters and exports
    def saved_filter(self, user_id) -> SavedFilter | None:
        return self._find(SavedFilter, user_id=user_id)

    def export(self, tenant_id, export_id) -> ReportExport | None:
        return self._find(ReportExport, tenant_id=tenant_id, id=export_id)

    def export_by_id(self, export_id) -> ReportExport | None:
        return self._find(ReportExport, id=export_id)

    def recent_exports(self, tenant_id, limit: int) -> list[ReportExport]:
        return sorted((e for e in self.all(ReportExport) if e.tenant_id == tenant_id),
                      key=lambda e: (e.created_at, e.id), reverse=True)[:limit]

    @staticmethod
    def _claimable(export: ReportExport, stale_before) -> bool:
        return export.status == "QUEUED" or (export.status == "RUNNING" and export.claimed_at < stale_before)

    def claimable_exports(self, stale_before, limit: int = 20) -> list:
        return [e.id for e in sorted(self.all(ReportExport), key=lambda e: e.created_at)
                if self._claimable(e, stale_before)][:limit]

    def claim_export(self, export_id, claim, now, stale_before) -> bool:
        export = self.export_by_id(export_id)
        if export is None or not self._claimable(export, stale_before):
            return False
        export.status, export.claimed_by, export.claimed_at = "RUNNING", claim, now
        return True

    def settle_export(self, export_id, claim, **values) -> bool:
        export = self.export_by_id(export_id)
        if export is None or export.status != "RUNNING" or export.claimed_by != claim:
            return False
        for key, value in values.items():
            setattr(export, key, value)
        return True

    def exports_before(self, cutoff, tenant_id=None) -> list[ReportExport]:
        return [e for e in self.all(ReportExport) if e.created_at < cutoff
                and (tenant_id is None or e.tenant_id == tenant_id)]

    def counts_by_status(self, tenant_id=None) -> dict:
        counts: dict[str, int] = {}
        for ticket in self.all(Ticket):
            if tenant_id is None or ticket.tenant_id == tenant_id:
                counts[ticket.status] = counts.get(ticket.status, 0) + 1
        return counts
