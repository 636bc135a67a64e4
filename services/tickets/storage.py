"""Tickets repository (schema `tickets`): the queries over models.py's tables that the
handlers ask for, inside their unit of work."""
from __future__ import annotations

import uuid

import orjson
from sqlalchemy import Integer, and_, bindparam, case, cast, func, literal_column, or_, select, text, union_all, update
from sqlalchemy.dialects.postgresql import TSVECTOR

from common.actor import STAFF_ROLES
from common.db import Repository, upsert_insert
from common.messaging import first_delivery
from services.tickets import domain
from services.tickets.listing import (_PAGE_STATEMENTS, _RECENT_STATEMENTS, FTS_TABLE, SEARCH_CONFIG,
                                      TICKET_VIEW_JSON, _remember, fold, list_conditions, list_values)
from services.tickets.models import (USER_REFERENCES, VIEW_COLUMNS, Chat, ChatMessage, Comment,
                                     CompanySnapshot, Person, QueueRef, ReferenceCounter, ReportExport,
                                     SavedFilter, Ticket, TicketQueue, TimelineEntry, WorkSession, inbox)
from services.tickets.models import idempotency_keys, metadata  # noqa: F401  (the migrations read storage.metadata)
from services.tickets.views import ticket_view

_KNOWN_QUEUES: dict[uuid.UUID, QueueRef] = {}
KNOWN_QUEUES_CAP = 10_000


class TicketsRepository(Repository):
    @property
    def postgres(self) -> bool:
        return self.session.bind.dialect.name == "postgresql"

    # the session's own work, as the handlers ask for it (they see no session)
    def add_later(self, row) -> None:
        """Inserted with the next flush (no round trip now: timeline entries)."""
        self.session.add(row)

    def flush(self) -> None:
        self.session.flush()

    def refresh(self, row) -> None:
        """Read the row again (after a Core UPDATE the ORM did not see)."""
        self.session.refresh(row)

    def delete(self, row) -> None:
        self.session.delete(row)

    def first_delivery(self, event: dict, event_type: str) -> bool:
        """Record an event as handled, in this transaction; False if it already was."""
        return first_delivery(self, inbox, event, event_type)  # it needs only `.session`

    # directory snapshots
    def person(self, user_id) -> Person | None:
        return self.session.get(Person, user_id)

    def person_for_update(self, user_id) -> Person | None:
        """Locked: two changes of one person are applied one after the other."""
        return self.session.get(Person, user_id, with_for_update=True, populate_existing=True)

    def update_snapshot_if_newer(self, model, snapshot_id, version: domain.SnapshotVersion,
                                 values: dict) -> bool:
        """One UPDATE … WHERE version < :new: a change older than the snapshot's, arriving
        late (a retry after an outage), changes nothing. Whether it applied."""
        applied = self.session.execute(
            update(model).where(model.id == snapshot_id, model.version < version.applies_below)
            .values(version=version.stored, **values).returning(model.id)
            .execution_options(synchronize_session=False)).first()
        return applied is not None

    def insert_missing(self, model, keys: tuple[str, ...], **values) -> None:
        """INSERT … ON CONFLICT DO NOTHING: a request and an event (or two requests) may both
        create the same snapshot, counter or default queue; the second must not fail."""
        self.session.execute(upsert_insert(self.session, model.__table__).values(**values)
                             .on_conflict_do_nothing(index_elements=list(keys)))

    def staff(self, tenant_id, limit: int = 1000) -> list[Person]:
        """The tenant's staff (who can be responsible for a ticket), by name."""
        return list(self.session.scalars(
            select(Person).where(Person.tenant_id == tenant_id, Person.role.in_(STAFF_ROLES),
                                 Person.merged_into_id.is_(None))
            .order_by(Person.name, Person.id).limit(limit)))

    def people(self, ids) -> dict:
        ids = {i for i in ids if i is not None}
        if not ids:
            return {}
        return {p.id: p for p in self.session.scalars(select(Person).where(Person.id.in_(ids)))}

    def company(self, company_id) -> CompanySnapshot | None:
        return self.session.get(CompanySnapshot, company_id)

    def ensure_company(self, company_id, tenant_id, name: str, version: int = 0) -> CompanySnapshot:
        self.insert_missing(CompanySnapshot, ("id",), id=company_id, tenant_id=tenant_id, name=name,
                            version=version)
        return self.session.get(CompanySnapshot, company_id)

    # tenant_id first in each filter: the tickets' indexes lead with it, and PostgreSQL 15
    # cannot skip-scan, so without it each update walked a whole index (13 ms per 100,000
    # tickets, twice per user event)
    def refresh_person_snapshots(self, person: Person) -> None:
        for id_column, name_column, email_column in (
                ("requester_id", "requester_name", "requester_email"),
                ("assignee_id", "assignee_name", "assignee_email")):
            self.session.execute(update(Ticket).where(Ticket.tenant_id == person.tenant_id,
                                                      getattr(Ticket, id_column) == person.id)
                                 .values({name_column: person.name, email_column: person.email}))

    def refresh_company_snapshots(self, company: CompanySnapshot) -> None:
        self.session.execute(update(Ticket).where(Ticket.tenant_id == company.tenant_id,
                                                  Ticket.company_id == company.id)
                             .values(company_name=company.name))

    def remap_user(self, tenant_id, old_id, new_id) -> None:
        for model, column in USER_REFERENCES:
            statement = update(model).where(getattr(model, column) == old_id)
            if hasattr(model, "tenant_id"):
                statement = statement.where(model.tenant_id == tenant_id)
            self.session.execute(statement.values({column: new_id}))

    # queues
    def queues(self, tenant_id) -> list[TicketQueue]:
        return list(self.session.scalars(select(TicketQueue).where(TicketQueue.tenant_id == tenant_id)
                                         .order_by(TicketQueue.name_normalized)))

    def queue(self, tenant_id, queue_id) -> QueueRef | None:
        """By key. Queues are only ever created, never renamed nor deleted: one read per
        queue per process (filing a ticket then skips a query: 6 % of the tickets process's
        CPU per create, issue 14)."""
        known = _KNOWN_QUEUES.get(queue_id)
        if known is None:
            queue = self.session.get(TicketQueue, queue_id)
            if queue is None:
                return None
            if len(_KNOWN_QUEUES) >= KNOWN_QUEUES_CAP:
                _KNOWN_QUEUES.clear()
            known = _KNOWN_QUEUES[queue_id] = QueueRef(queue.id, queue.tenant_id, queue.name)
        return known if known.tenant_id == tenant_id else None

    def queue_by_name(self, tenant_id, name_normalized: str) -> TicketQueue | None:
        return self.session.scalars(select(TicketQueue).where(
            TicketQueue.tenant_id == tenant_id,
            TicketQueue.name_normalized == name_normalized)).first()

    # tickets
    def next_reference(self, tenant_id) -> int:
        """Under a row lock on PostgreSQL: two concurrent creations never share a number."""
        counters = ReferenceCounter.__table__  # a Core UPDATE: the ORM's bulk-update path cost
        updated = self.session.execute(  # twice the statement's own time (py-spy, issue 14)
            update(counters).where(counters.c.tenant_id == tenant_id)
            .values(last_reference=counters.c.last_reference + 1)
            .returning(counters.c.last_reference)).scalar()
        if updated is not None:
            return updated
        # the tenant's first ticket (perhaps two at once): make the counter, then count
        self.insert_missing(ReferenceCounter, ("tenant_id",), tenant_id=tenant_id, last_reference=0)
        return self.next_reference(tenant_id)

    def ticket(self, tenant_id, ticket_id, for_update: bool = False) -> Ticket | None:
        """By id (a UUID) or by the tenant's human reference number (an int)."""
        key = Ticket.reference if isinstance(ticket_id, int) else Ticket.id
        query = select(Ticket).where(Ticket.tenant_id == tenant_id, key == ticket_id)
        if for_update:
            query = query.with_for_update()
        return self.session.scalars(query).first()

    def ticket_by_id(self, ticket_id) -> Ticket | None:
        """Any tenant's (for the service's own sweeps)."""
        return self.session.get(Ticket, ticket_id)

    def open_session(self, ticket_id) -> WorkSession | None:
        return self.session.scalars(select(WorkSession).where(
            WorkSession.ticket_id == ticket_id, WorkSession.ended_at.is_(None))).first()

    # search
    def search_document(self, ticket: Ticket) -> str:
        """What `q` searches in a ticket: subject, description, PUBLIC comments."""
        comments = self.session.scalars(select(Comment.body).where(
            Comment.ticket_id == ticket.id, Comment.visibility == "PUBLIC")
            .order_by(Comment.created_at, Comment.id))
        return "\n".join([ticket.subject, ticket.description or "", *comments])

    def add_ticket(self, ticket: Ticket) -> Ticket:
        """Insert a new ticket with its search entry (PostgreSQL: in the same INSERT)."""
        if self.postgres:
            ticket.search_vector = func.to_tsvector(
                SEARCH_CONFIG, fold(f"{ticket.subject}\n{ticket.description or ''}"))
            return self.add(ticket)
        self.add(ticket)
        self.index_ticket(ticket)
        return ticket

    def index_ticket(self, ticket: Ticket) -> None:
        """Rewrite the ticket's search entry (after its text or public comments changed).
        PostgreSQL: in the ticket row's own UPDATE at flush; SQLite: its FTS5 row."""
        document = self.search_document(ticket)
        if self.postgres:
            ticket.search_vector = func.to_tsvector(SEARCH_CONFIG, fold(document))
            return
        self.session.flush()
        key = ticket.id.hex
        self.session.execute(text(
            f"DELETE FROM {FTS_TABLE} WHERE rowid IN (SELECT rowid FROM {FTS_TABLE} "
            f"WHERE {FTS_TABLE} MATCH :key)"), {"key": f'ticket_key : "{key}"'})
        self.session.execute(text(f"INSERT INTO {FTS_TABLE} (ticket_key, body) VALUES (:key, :body)"),
                             {"key": key, "body": document})

    def index_comment(self, ticket: Ticket, body: str) -> None:
        """A public comment was added. PostgreSQL: its words are appended to the vector in the
        ticket row's UPDATE, evaluated on the row as it is when updated (two comments at once
        both count: nothing read before the row lock can be stale). SQLite (one writer at a
        time): the entry is rewritten."""
        if self.postgres:
            ticket.search_vector = func.coalesce(Ticket.search_vector, cast("", TSVECTOR)).op("||")(
                func.to_tsvector(SEARCH_CONFIG, fold(body)))
            return
        self.index_ticket(ticket)

    @staticmethod
    def count_query(list_query, cap: int):
        inner = list_query.order_by(None).limit(cap + 1).with_only_columns(Ticket.id).subquery()
        return select(func.count()).select_from(inner)

    def count(self, list_query, cap: int) -> int:
        """How many rows a list query (without its keyset and limit) matches, up to cap + 1."""
        return self.session.scalar(self.count_query(list_query, cap))

    def count_matching(self, tenant_id, filters: dict, only_requester, cap: int) -> int:
        return self.count(self.list_query(tenant_id, filters, only_requester=only_requester), cap)

    def export_page(self, tenant_id, filters: dict, after, limit: int) -> list[Ticket]:
        """A page of an export: Ticket rows, newest first, keyset after (created_at, id)."""
        return list(self.session.scalars(self.list_query(tenant_id, filters, after=after, limit=limit)))

    def list_query(self, tenant_id, filters: dict, only_requester=None, after=None, limit=50,
                   columns=None):
        """Every filter in SQL, newest first, keyset after (created_at, id); `columns`: rows
        of these instead of Ticket objects."""
        postgres = self.postgres
        conditions = list_conditions(postgres, *list_values(postgres, tenant_id, filters, only_requester, after))
        return (select(*columns) if columns else select(Ticket)).where(*conditions).order_by(
            Ticket.created_at.desc(), Ticket.id.desc()).limit(bindparam("limit", limit, Integer))

    def page(self, tenant_id, filters: dict, only_requester=None, after=None, limit=50) -> list[tuple]:
        """One page of the list, newest first, as (view, created_at, id) rows, the view being
        what `views.ticket_view` makes. PostgreSQL writes it (TICKET_VIEW_JSON) and it travels
        as written (an orjson.Fragment); elsewhere ticket_view writes it from the columns.
        The statement is built once per shape and run again with new values: building and
        compiling it cost more than the query (py-spy, issue 14)."""
        postgres = self.postgres
        shape, values = list_values(postgres, tenant_id, filters, only_requester, after)
        key = (postgres, shape)
        statement = _PAGE_STATEMENTS.get(key)
        if statement is None:
            columns = (TICKET_VIEW_JSON, Ticket.created_at, Ticket.id) if postgres else VIEW_COLUMNS
            statement = _remember(_PAGE_STATEMENTS, key, select(*columns).where(
                *list_conditions(postgres, shape, values)).order_by(Ticket.created_at.desc(), Ticket.id.desc())
                .limit(bindparam("limit", type_=Integer)))
        rows = self.session.connection().execute(statement, dict(values, limit=limit)).all()
        if postgres:
            return [(orjson.Fragment(view), created_at, ticket_id) for view, created_at, ticket_id in rows]
        return [(ticket_view(row), row.created_at, row.id) for row in rows]

    def recent(self, tenant_id, limit: int, only_requester=None) -> list:
        """Unassigned first, oldest to newest; then the rest, most recently updated first:
        the views of `page`. One statement: one round trip, one snapshot of the data; the
        rows are chosen by their keys first, so only those shown get a view written."""
        postgres = self.postgres
        key = (postgres, "recent", only_requester is not None)
        statement = _RECENT_STATEMENTS.get(key)
        if statement is None:
            keys = select(Ticket.id.label("key"), Ticket.created_at.label("created"),
                          Ticket.updated_at.label("updated")).where(Ticket.tenant_id == bindparam("tenant_id"))
            if only_requester is not None:
                keys = keys.where(Ticket.requester_id == bindparam("only_requester"))
            limited = bindparam("limit", type_=Integer)
            unassigned = (keys.add_columns(literal_column("0").label("part")).where(Ticket.assignee_id.is_(None))
                          .order_by(Ticket.created_at, Ticket.id).limit(limited))
            rest = (keys.add_columns(literal_column("1").label("part")).where(Ticket.assignee_id.is_not(None))
                    .order_by(Ticket.updated_at.desc(), Ticket.id.desc()).limit(limited))
            both = union_all(unassigned.subquery().select(), rest.subquery().select()).subquery()
            first = both.c.part == 0
            # the `limit` shown, chosen by their keys; only those get a view written
            chosen = select(both).order_by(
                both.c.part, case((first, both.c.created)), case((first, both.c.key)),
                case((~first, both.c.updated)).desc(), case((~first, both.c.key)).desc()).limit(limited).subquery()
            view = (TICKET_VIEW_JSON.label("view"),) if postgres else VIEW_COLUMNS
            statement = _remember(_RECENT_STATEMENTS, key, select(*view, chosen).join(chosen, Ticket.id == chosen.c.key))
        params = {"tenant_id": tenant_id, "limit": limit}
        if only_requester is not None:
            params["only_requester"] = only_requester
        rows = self.session.connection().execute(statement, params).all()
        first = sorted((row for row in rows if row.part == 0), key=lambda row: (row.created, row.key))
        then = sorted((row for row in rows if row.part == 1), key=lambda row: (row.updated, row.key), reverse=True)
        return [orjson.Fragment(row.view) if postgres else ticket_view(row) for row in (first + then)[:limit]]

    def comments(self, ticket_id, visibilities) -> list[Comment]:
        return list(self.session.scalars(select(Comment).where(
            Comment.ticket_id == ticket_id, Comment.visibility.in_(visibilities))
            .order_by(Comment.created_at, Comment.id)))

    def timeline(self, ticket_id) -> list[TimelineEntry]:
        return list(self.session.scalars(select(TimelineEntry).where(
            TimelineEntry.ticket_id == ticket_id).order_by(TimelineEntry.id)))

    # chats
    def chat(self, tenant_id, chat_id) -> Chat | None:
        return self.session.scalars(select(Chat).where(Chat.tenant_id == tenant_id,
                                                       Chat.id == chat_id)).first()

    def open_chat(self, ticket_id) -> Chat | None:
        return self.session.scalars(select(Chat).where(Chat.ticket_id == ticket_id,
                                                       Chat.ended_at.is_(None))).first()

    def open_chats(self, limit: int = 500) -> list[Chat]:
        return list(self.session.scalars(select(Chat).where(Chat.ended_at.is_(None))
                                         .order_by(Chat.last_activity_at).limit(limit)))

    def chat_messages(self, chat_id) -> list[ChatMessage]:
        return list(self.session.scalars(select(ChatMessage).where(ChatMessage.chat_id == chat_id)
                                         .order_by(ChatMessage.created_at, ChatMessage.id)))

    def internal_work_in_progress(self) -> list:
        return list(self.session.execute(
            select(Ticket, WorkSession).join(WorkSession, WorkSession.ticket_id == Ticket.id)
            .where(Ticket.status == "AWAITING_ATTENDANCE", WorkSession.ended_at.is_(None),
                   WorkSession.work_type == "INTERNAL").with_for_update(of=Ticket)).all())

    def archivable(self, tenant_id, resolved_before, limit: int) -> list[Ticket]:
        return list(self.session.scalars(select(Ticket).where(
            Ticket.tenant_id == tenant_id, Ticket.status == "RESOLVED",
            Ticket.resolved_at < resolved_before, Ticket.archived_at.is_(None))
            .order_by(Ticket.resolved_at, Ticket.id).limit(limit).with_for_update()))

    def saved_filter(self, user_id) -> SavedFilter | None:
        return self.session.get(SavedFilter, user_id)

    def export_by_id(self, export_id) -> ReportExport | None:
        """Any tenant's (for the export makers)."""
        return self.session.get(ReportExport, export_id)

    def export(self, tenant_id, export_id) -> ReportExport | None:
        return self.session.scalars(select(ReportExport).where(
            ReportExport.tenant_id == tenant_id, ReportExport.id == export_id)).first()

    def recent_exports(self, tenant_id, limit: int) -> list[ReportExport]:
        return list(self.session.scalars(select(ReportExport).where(ReportExport.tenant_id == tenant_id)
                                         .order_by(ReportExport.created_at.desc(), ReportExport.id.desc())
                                         .limit(limit)))

    @staticmethod
    def _claimable(stale_before):
        """QUEUED, or RUNNING under a claim nobody renewed since `stale_before` (its maker died)."""
        return or_(ReportExport.status == "QUEUED",
                   and_(ReportExport.status == "RUNNING", ReportExport.claimed_at < stale_before))

    def claimable_exports(self, stale_before, limit: int = 20) -> list:
        return list(self.session.scalars(select(ReportExport.id).where(self._claimable(stale_before))
                                         .order_by(ReportExport.created_at).limit(limit)))

    def claim_export(self, export_id, claim, now, stale_before) -> bool:
        """A conditional UPDATE: of two makers racing for one export, exactly one gets it."""
        return self.session.execute(
            update(ReportExport).where(ReportExport.id == export_id, self._claimable(stale_before))
            .values(status="RUNNING", claimed_by=claim, claimed_at=now)
            .returning(ReportExport.id)).first() is not None

    def settle_export(self, export_id, claim, **values) -> bool:
        """Renew the claim or record the outcome, only while the claim is still ours."""
        return self.session.execute(
            update(ReportExport).where(ReportExport.id == export_id, ReportExport.status == "RUNNING",
                                       ReportExport.claimed_by == claim)
            .values(**values).returning(ReportExport.id)).first() is not None

    def exports_before(self, cutoff, tenant_id=None) -> list[ReportExport]:
        query = select(ReportExport).where(ReportExport.created_at < cutoff)
        if tenant_id is not None:
            query = query.where(ReportExport.tenant_id == tenant_id)
        return list(self.session.scalars(query))

    def counts_by_status(self, tenant_id=None) -> dict:
        query = select(Ticket.status, func.count()).group_by(Ticket.status)
        if tenant_id is not None:
            query = query.where(Ticket.tenant_id == tenant_id)
        return dict(self.session.execute(query).all())

