"""Tickets tables and repository (schema `tickets`)."""
from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import datetime
from typing import NamedTuple

import orjson
from sqlalchemy import (BigInteger, ForeignKey, Index, Integer, String, Text, and_, bindparam, case,
                        cast, func, literal_column, null, or_, select, text, tuple_, union_all,
                        update)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column

from common.contracts.accounts import STAFF_ROLES
from common.db import Repository, UTCDateTime, escape_like, new_metadata, upsert_insert, utcnow
from common.idempotency import idempotency_table
from common.messaging import inbox_table
from common.outbox import outbox_table
from services.tickets import domain
from services.tickets.views import ticket_view

OPEN_ONLY = text("ended_at IS NULL")

# Search (`q`). What is searched: the subject, the description and the PUBLIC comments (an
# internal note's words find nothing, for anyone: one index, one rule). Accents and case are
# folded in Python before the text reaches the database, on both sides, so no extension
# (unaccent) is needed: "impressao" finds "impressão" and the other way round. Each word of
# `q` must match. PostgreSQL matches whole words, stemmed by the Portuguese configuration
# ("impressoras" finds "impressora", "impress" finds nothing; stop words such as "de" are
# ignored). SQLite's FTS5 does not stem Portuguese: there each word matches a word or the
# start of one ("impressora" finds "impressoras"). Punctuation alone ("%") still matches the
# subject literally. PostgreSQL: `tickets.search_vector`, a tsvector built with the Portuguese
# configuration and a GIN index. SQLite: the FTS5 table `tickets_fts` (one row per
# ticket: `ticket_key` = the id's 32 hex digits, `body` = the text; unicode61 with
# remove_diacritics 2). The service rewrites a ticket's entry whenever its subject or
# description changes (`index_ticket`, under the ticket's row lock) and adds to it when a
# public comment is added (`index_comment`).
SEARCH_CONFIG = literal_column("'portuguese'::regconfig")
FTS_TABLE = "tickets_fts"
_WORD = re.compile(r"[^\W_]+")
# the same folding in SQL, for the migration's backfill and the benchmark's seeding
SQL_ACCENTS = ("ÁÀÂÃÄÅáàâãäåÇçÉÈÊËéèêëÍÌÎÏíìîïÑñÓÒÔÕÖóòôõöÚÙÛÜúùûüÝýÿ",
               "AAAAAAaaaaaaCcEEEEeeeeIIIIiiiiNnOOOOOoooooUUUUuuuuYyy")


def fold(value: str) -> str:
    """Lower case without accents: what is indexed and what is searched for."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def search_words(q: str) -> list[str]:
    """The words of a query, folded; punctuation alone gives none."""
    return _WORD.findall(fold(q))[:32]


def sql_fold(expression: str) -> str:
    """SQL that folds `expression` like `fold` does (for Latin letters)."""
    return f"lower(translate({expression}, '{SQL_ACCENTS[0]}', '{SQL_ACCENTS[1]}'))"


class Base(DeclarativeBase):
    metadata = new_metadata()


metadata = Base.metadata
outbox_table(metadata)
inbox = inbox_table(metadata)
idempotency_keys = idempotency_table(metadata)  # Idempotency-Key records (common/idempotency.py)


class Person(Base):
    """Snapshot of an accounts user, kept current by accounts' events."""

    __tablename__ = "people"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(20))
    company_id: Mapped[uuid.UUID | None]
    merged_into_id: Mapped[uuid.UUID | None]
    # the accounts version these values are of (domain.SnapshotVersion; 0: none known)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class CompanySnapshot(Base):
    __tablename__ = "companies"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))  # as Person's


class TicketQueue(Base):
    __tablename__ = "queues"
    __table_args__ = (Index("uq_queues_tenant_name", "tenant_id", "name_normalized", unique=True),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(100))
    name_normalized: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReferenceCounter(Base):
    """The last human reference number given in each tenant."""

    __tablename__ = "reference_counters"
    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    last_reference: Mapped[int] = mapped_column(Integer)


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("uq_tickets_tenant_reference", "tenant_id", "reference", unique=True),
        # one index per list filter, each ending in the keyset order (created_at, id)
        Index("ix_tickets_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_tickets_tenant_assignee_status_created", "tenant_id", "assignee_id", "status",
              "created_at", "id"),
        Index("ix_tickets_tenant_status_created", "tenant_id", "status", "created_at", "id"),
        Index("ix_tickets_tenant_requester_created", "tenant_id", "requester_id", "created_at", "id"),
        Index("ix_tickets_tenant_company_created", "tenant_id", "company_id", "created_at", "id"),
        Index("ix_tickets_tenant_queue_created", "tenant_id", "queue_id", "created_at", "id"),
        Index("ix_tickets_tenant_updated", "tenant_id", "updated_at", "id"),
        # the unassigned in creation order: the dashboard's first part, "sem responsável"
        Index("ix_tickets_tenant_unassigned_created", "tenant_id", "created_at", "id",
              postgresql_where=text("assignee_id IS NULL"), sqlite_where=text("assignee_id IS NULL")),
        Index("ix_tickets_resolved_unarchived", "status", "resolved_at",
              postgresql_where=text("archived_at IS NULL"), sqlite_where=text("archived_at IS NULL")),
        # `q` (PostgreSQL; SQLite searches its FTS5 table tickets_fts instead)
        Index("ix_tickets_search_vector", "search_vector", postgresql_using="gin"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID]
    reference: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(String(600))
    description: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(24))
    queue_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("queues.id"))
    requester_id: Mapped[uuid.UUID | None]
    requester_name: Mapped[str | None] = mapped_column(String(200))
    requester_email: Mapped[str | None] = mapped_column(String(254))
    assignee_id: Mapped[uuid.UUID | None]
    assignee_name: Mapped[str | None] = mapped_column(String(200))
    assignee_email: Mapped[str | None] = mapped_column(String(254))
    company_id: Mapped[uuid.UUID | None]
    company_name: Mapped[str | None] = mapped_column(String(200))
    machine_id: Mapped[uuid.UUID | None]
    worked_internal_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    worked_external_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # PostgreSQL only (NULL and unused on SQLite); never loaded with the ticket
    search_vector: Mapped[str | None] = deferred(mapped_column(TSVECTOR().with_variant(Text, "sqlite")))


# what a ticket's view (services/tickets/views.py) reads: lists load plain rows of these,
# not Ticket objects (the ORM's instances were a third of a list's time)
VIEW_COLUMNS = (Ticket.id, Ticket.reference, Ticket.subject, Ticket.description, Ticket.priority,
                Ticket.status, Ticket.queue_id, Ticket.requester_id, Ticket.requester_name,
                Ticket.requester_email, Ticket.assignee_id, Ticket.assignee_name,
                Ticket.assignee_email, Ticket.company_id, Ticket.company_name, Ticket.machine_id,
                Ticket.worked_internal_seconds, Ticket.worked_external_seconds, Ticket.created_at,
                Ticket.updated_at, Ticket.resolved_at)


def _constant(value: str):
    """A text constant written into the statement itself: the view's keys, labels and
    formats as bind parameters were some 60 values to send with every page."""
    return literal_column("'" + value.replace("'", "''") + "'")


def _json_object(*pairs):
    """json_build_object(key, value, …) with the keys written in."""
    return func.json_build_object(*(_constant(part) if index % 2 == 0 else part
                                    for index, part in enumerate(pairs)))


def _iso_utc(column):
    """The text `datetime.isoformat()` writes for the column's value in UTC (no fraction
    when it has no microseconds, as Python writes it)."""
    utc = func.timezone(_constant("UTC"), column)
    return case((func.date_trunc(_constant("second"), column) == column,
                 func.to_char(utc, _constant('YYYY-MM-DD"T"HH24:MI:SS"+00:00"'))),
                else_=func.to_char(utc, _constant('YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')))


def _reference(key, *named):
    """A person's or company's reference, {"id": …, name: …}, or null without an id."""
    return case((key.is_(None), null()), else_=_json_object("id", key, *named))


def _by_status(part: int):
    """The status's label (part 0) or colour (part 1), from domain.STATUS_LABELS."""
    return case(*((Ticket.status == _constant(status), _constant(shown[part]))
                  for status, shown in domain.STATUS_LABELS.items()))


# PostgreSQL writes a list row's view itself, as JSON text: what `views.ticket_view` makes of
# the VIEW_COLUMNS (tests/integration/test_ticket_view_sql.py holds the two equal). 50 views a
# page were a third of the tickets process's CPU per list, building them in Python.
TICKET_VIEW_JSON = cast(_json_object(
    "id", Ticket.id, "reference", Ticket.reference, "subject", Ticket.subject,
    "description", Ticket.description, "priority", Ticket.priority, "status", Ticket.status,
    "status_label", _by_status(0), "status_colour", _by_status(1), "queue_id", Ticket.queue_id,
    "requester", _reference(Ticket.requester_id, "name", Ticket.requester_name, "email", Ticket.requester_email),
    "assignee", _reference(Ticket.assignee_id, "name", Ticket.assignee_name, "email", Ticket.assignee_email),
    "company", _reference(Ticket.company_id, "name", Ticket.company_name),
    "machine_id", Ticket.machine_id,
    "worked_seconds", _json_object(
        "INTERNAL", Ticket.worked_internal_seconds, "EXTERNAL", Ticket.worked_external_seconds,
        "total", Ticket.worked_internal_seconds + Ticket.worked_external_seconds),
    "work_in_progress", null(),
    "created_at", _iso_utc(Ticket.created_at), "updated_at", _iso_utc(Ticket.updated_at),
    "resolved_at", _iso_utc(Ticket.resolved_at)), Text)

# list and recent statements by shape, built once (see TicketsRepository.page)
_PAGE_STATEMENTS: dict = {}
_RECENT_STATEMENTS: dict = {}
STATEMENTS_KEPT = 512


def _remember(cache: dict, key, statement):
    if len(cache) >= STATEMENTS_KEPT:  # shapes are few; a flood of odd ones must not grow it
        cache.clear()
    cache[key] = statement
    return statement


class WorkSession(Base):
    __tablename__ = "work_sessions"
    __table_args__ = (
        # the machine allows one open session per ticket; the database says so too
        Index("uq_work_sessions_open_per_ticket", "ticket_id", unique=True,
              postgresql_where=OPEN_ONLY, sqlite_where=OPEN_ONLY),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"), index=True)
    agent_id: Mapped[uuid.UUID] = mapped_column(index=True)
    work_type: Mapped[str] = mapped_column(String(10))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    seconds: Mapped[int | None] = mapped_column(BigInteger)
    end_reason: Mapped[str | None] = mapped_column(String(32))


class Comment(Base):
    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_ticket_created", "ticket_id", "created_at"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"))
    author_id: Mapped[uuid.UUID] = mapped_column(index=True)
    visibility: Mapped[str] = mapped_column(String(10))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TimelineEntry(Base):
    __tablename__ = "ticket_events"
    __table_args__ = (Index("ix_ticket_events_ticket", "ticket_id", "id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Chat(Base):
    __tablename__ = "chats"
    __table_args__ = (
        Index("uq_chats_open_per_ticket", "ticket_id", unique=True,
              postgresql_where=OPEN_ONLY, sqlite_where=OPEN_ONLY),
        Index("ix_chats_open", "ended_at", "last_activity_at"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"))
    tenant_id: Mapped[uuid.UUID]
    started_by: Mapped[uuid.UUID] = mapped_column(index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(32))


class ChatMessage(Base):
    __tablename__ = "chat_messages"
    __table_args__ = (Index("ix_chat_messages_chat_created", "chat_id", "created_at"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    chat_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chats.id"))
    author_id: Mapped[uuid.UUID] = mapped_column(index=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReportExport(Base):
    """A requested CSV export. The tickets service makes its file as soon as it is asked
    for (and recovers what a crash left); the scheduler's runner job can make it too. A
    maker claims the row first (`claimed_by`, renewed in `claimed_at` while it writes), so
    no export is made twice. Runs and files are deleted after 30 days by the retention sweep."""

    __tablename__ = "report_exports"
    __table_args__ = (Index("ix_report_exports_status_created", "status", "created_at"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    requested_by: Mapped[uuid.UUID] = mapped_column(index=True)
    filters: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(10))  # QUEUED | RUNNING | DONE | FAILED
    rows: Mapped[int | None] = mapped_column(Integer)
    file_name: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delimiter: Mapped[str] = mapped_column(String(1), default=",", server_default=",")
    claimed_by: Mapped[uuid.UUID | None]  # the maker's claim (a random id per attempt)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # renewed while it writes


# every column that holds a user id, for merges
USER_REFERENCES = (
    (Ticket, "requester_id"), (Ticket, "assignee_id"), (Comment, "author_id"),
    (WorkSession, "agent_id"), (TimelineEntry, "actor_id"), (Chat, "started_by"),
    (ChatMessage, "author_id"), (ReportExport, "requested_by"),
)


class SavedFilter(Base):
    """A person's default ticket-list filter ("Salvar filtro como padrão"): one row per
    person, replaced on save, so it follows them to any browser."""
    __tablename__ = "saved_filters"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID]
    filters: Mapped[str] = mapped_column(Text)  # JSON, as TicketFilters dumps it
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class QueueRef(NamedTuple):
    """What filing a ticket needs of its queue."""
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str


_KNOWN_QUEUES: dict[uuid.UUID, QueueRef] = {}
KNOWN_QUEUES_CAP = 10_000


class TicketsRepository(Repository):
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
        if self.session.bind.dialect.name == "postgresql":
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
        if self.session.bind.dialect.name == "postgresql":
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
        if self.session.bind.dialect.name == "postgresql":
            ticket.search_vector = func.coalesce(Ticket.search_vector, cast("", TSVECTOR)).op("||")(
                func.to_tsvector(SEARCH_CONFIG, fold(body)))
            return
        self.index_ticket(ticket)

    def _search(self, q: str) -> tuple[str, str]:
        """(kind, value) of `q`'s condition: `subject` (punctuation only: the subject,
        literally, as before) with a LIKE pattern, or `words` with the words to match."""
        words = search_words(q)
        if not words:
            return "subject", f"%{escape_like(q.lower())}%"
        if self.session.bind.dialect.name == "postgresql":
            # whole words, stemmed: a prefix (`:*`) would be estimated blindly (2% of the
            # rows whatever the word) and a rare word would walk the newest-first index
            return "words", " & ".join(f"'{word}'" for word in words)
        return "words", "body : (" + " AND ".join(f'"{word}"*' for word in words) + ")"

    def _search_condition(self, kind: str, value: str):
        if kind == "subject":
            return func.lower(Ticket.subject).like(bindparam("q", value), escape="\\")
        if self.session.bind.dialect.name == "postgresql":
            return Ticket.search_vector.op("@@")(func.to_tsquery(SEARCH_CONFIG, bindparam("q", value)))
        return Ticket.id.in_(select(literal_column("ticket_key")).select_from(text(FTS_TABLE))
                             .where(text(f"{FTS_TABLE} MATCH :q").bindparams(q=value)))

    @staticmethod
    def count_query(list_query, cap: int):
        inner = list_query.order_by(None).limit(cap + 1).with_only_columns(Ticket.id).subquery()
        return select(func.count()).select_from(inner)

    def count(self, list_query, cap: int) -> int:
        """How many rows a list query (without its keyset and limit) matches, up to cap + 1."""
        return self.session.scalar(self.count_query(list_query, cap))

    def _list_values(self, tenant_id, filters: dict, only_requester, after) -> tuple[tuple, dict]:
        """(shape, values) of a list query: its conditions' values by parameter name, and its
        shape, which conditions there are (statements of one shape differ in values only)."""
        shape, values = [], {"tenant_id": tenant_id}
        if only_requester is not None:
            values["only_requester"] = only_requester
        for key in ("status", "queue_id", "company_id", "requester_id", "priority", "created_from",
                    "created_to"):
            if filters.get(key):
                values[key] = filters[key]
        assignee = filters.get("assignee_id")
        if assignee == "unassigned":
            shape.append("unassigned")
        elif assignee:
            values["assignee_id"] = uuid.UUID(assignee)
        if filters.get("q"):
            kind, values["q"] = self._search(filters["q"])
            shape.append(f"q:{kind}")
        if after is not None:
            values["after_created_at"], values["after_id"] = after
        return tuple(shape) + tuple(values), values

    def _list_conditions(self, shape: tuple, values: dict) -> list:
        """The conditions of a list query of this shape, each value a named bind parameter."""
        def value(name: str, type_=None):
            return bindparam(name, values[name], type_)

        conditions = [Ticket.tenant_id == value("tenant_id")]
        if "only_requester" in values:
            conditions.append(Ticket.requester_id == value("only_requester"))
        for key in ("status", "queue_id", "company_id", "requester_id", "priority", "assignee_id"):
            if key in values:
                conditions.append(getattr(Ticket, key) == value(key))
        if "unassigned" in shape:
            conditions.append(Ticket.assignee_id.is_(None))
        if "q" in values:
            kind = next(part[2:] for part in shape if part.startswith("q:"))
            conditions.append(self._search_condition(kind, values["q"]))
        if "created_from" in values:
            conditions.append(Ticket.created_at >= value("created_from", UTCDateTime))
        if "created_to" in values:
            conditions.append(Ticket.created_at < value("created_to", UTCDateTime))
        if "after_created_at" in values:
            conditions.append(tuple_(Ticket.created_at, Ticket.id) < tuple_(
                value("after_created_at", UTCDateTime), value("after_id")))
        return conditions

    def list_query(self, tenant_id, filters: dict, only_requester=None, after=None, limit=50,
                   columns=None):
        """Every filter in SQL, newest first, keyset after (created_at, id); `columns`: rows
        of these instead of Ticket objects."""
        conditions = self._list_conditions(*self._list_values(tenant_id, filters, only_requester, after))
        return (select(*columns) if columns else select(Ticket)).where(*conditions).order_by(
            Ticket.created_at.desc(), Ticket.id.desc()).limit(bindparam("limit", limit, Integer))

    def page(self, tenant_id, filters: dict, only_requester=None, after=None, limit=50) -> list[tuple]:
        """One page of the list, newest first, as (view, created_at, id) rows, the view being
        what `views.ticket_view` makes. PostgreSQL writes it (TICKET_VIEW_JSON) and it travels
        as written (an orjson.Fragment); elsewhere ticket_view writes it from the columns.
        The statement is built once per shape and run again with new values: building and
        compiling it cost more than the query (py-spy, issue 14)."""
        postgres = self.session.bind.dialect.name == "postgresql"
        shape, values = self._list_values(tenant_id, filters, only_requester, after)
        key = (postgres, shape)
        statement = _PAGE_STATEMENTS.get(key)
        if statement is None:
            columns = (TICKET_VIEW_JSON, Ticket.created_at, Ticket.id) if postgres else VIEW_COLUMNS
            statement = _remember(_PAGE_STATEMENTS, key, select(*columns).where(
                *self._list_conditions(shape, values)).order_by(Ticket.created_at.desc(), Ticket.id.desc())
                .limit(bindparam("limit", type_=Integer)))
        rows = self.session.connection().execute(statement, dict(values, limit=limit)).all()
        if postgres:
            return [(orjson.Fragment(view), created_at, ticket_id) for view, created_at, ticket_id in rows]
        return [(ticket_view(row), row.created_at, row.id) for row in rows]

    def recent(self, tenant_id, limit: int, only_requester=None) -> list:
        """Unassigned first, oldest to newest; then the rest, most recently updated first:
        the views of `page`. One statement: one round trip, one snapshot of the data; the
        rows are chosen by their keys first, so only those shown get a view written."""
        postgres = self.session.bind.dialect.name == "postgresql"
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

