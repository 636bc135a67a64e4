"""Tickets tables (schema `tickets`): the rows the repository (storage.py) reads and writes."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column

from common.db import UTCDateTime, new_metadata, utcnow
from common.idempotency import idempotency_table
from common.messaging import inbox_table
from common.outbox import outbox_table

OPEN_ONLY = text("ended_at IS NULL")


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


