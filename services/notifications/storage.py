"""notifications' tables (schema `notifications`) and repository: the projection of accounts'
people (their names and addresses, kept by accounts' events, so no RPC is on the delivery
path) and the deliveries, one per (event, recipient, kind): a redelivered event adds none."""
from __future__ import annotations

import uuid
from datetime import datetime

import orjson
from sqlalchemy import Index, Integer, String, Text, UniqueConstraint, delete, func, select, text, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import Repository, UTCDateTime, new_metadata, upsert_insert
from common.messaging import first_delivery, inbox_table
from common.snapshot_version import SnapshotVersion
from services.notifications import domain

PENDING, SENT, FAILED = "pending", "sent", "failed"
STATUSES = (PENDING, SENT, FAILED)


class Base(DeclarativeBase):
    metadata = new_metadata()


metadata = Base.metadata
inbox = inbox_table(metadata)


class Person(Base):
    """An accounts user as its events last said (the newest version wins)."""

    __tablename__ = "people"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    merged_into_id: Mapped[uuid.UUID | None]
    version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "recipient_id", "kind"),
        Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)  # its Message-ID
    event_id: Mapped[uuid.UUID]
    recipient_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(40))
    tenant_id: Mapped[uuid.UUID]
    ticket_id: Mapped[uuid.UUID]
    details: Mapped[str] = mapped_column(Text)  # the domain.Notice, as JSON
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    to_address: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def notice_of(delivery: Delivery) -> domain.Notice:
    return domain.Notice(**orjson.loads(delivery.details))


class NotificationsRepository(Repository):
    def first_delivery(self, event: dict, event_type: str) -> bool:
        return first_delivery(self, inbox, event, event_type)

    # the people
    def person(self, person_id) -> Person | None:
        return self.session.get(Person, uuid.UUID(str(person_id)))

    def save_person(self, tenant_id, person_id, version: SnapshotVersion, name: str, email: str) -> None:
        """Insert the person, or update them only over an older version."""
        person_id = uuid.UUID(str(person_id))
        self.session.execute(upsert_insert(self.session, Person.__table__).values(
            id=person_id, tenant_id=uuid.UUID(str(tenant_id)), name=name, email=email,
            version=0).on_conflict_do_nothing(index_elements=["id"]))
        self.session.execute(
            update(Person).where(Person.id == person_id, Person.version < version.applies_below)
            .values(version=version.stored, name=name, email=email)
            .execution_options(synchronize_session=False))

    def merge_person(self, from_id, into_id) -> None:
        self.session.execute(update(Person).where(Person.id == uuid.UUID(str(from_id)))
                             .values(merged_into_id=uuid.UUID(str(into_id)))
                             .execution_options(synchronize_session=False))

    # the deliveries
    def add_deliveries(self, event: dict, notices: list[domain.Notice], now: datetime) -> None:
        """INSERT … ON CONFLICT DO NOTHING on (event, recipient, kind): never one twice."""
        for notice in notices:
            self.session.execute(upsert_insert(self.session, Delivery.__table__).values(
                id=uuid.uuid4(), event_id=uuid.UUID(str(event["event_id"])),
                recipient_id=uuid.UUID(notice.recipient_id), kind=notice.kind,
                tenant_id=uuid.UUID(str(event["tenant_id"])), ticket_id=uuid.UUID(notice.ticket_id),
                details=orjson.dumps(notice.__dict__).decode(), status=PENDING, attempts=0,
                next_attempt_at=now, created_at=now,
            ).on_conflict_do_nothing(index_elements=["event_id", "recipient_id", "kind"]))

    def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[Delivery]:
        """Pending deliveries due now, leased until `lease_until` (another sender skips them;
        a sender that dies mid-send leaves them to be tried again once the lease is over)."""
        due = list(self.session.scalars(
            select(Delivery).where(Delivery.status == PENDING, Delivery.next_attempt_at <= now)
            .order_by(Delivery.next_attempt_at).limit(limit).with_for_update(skip_locked=True)))
        for delivery in due:
            delivery.next_attempt_at = lease_until
        return due

    def delivery(self, delivery_id) -> Delivery | None:
        return self.session.get(Delivery, delivery_id, with_for_update=True)

    def purge_sent(self, before: datetime) -> int:
        """Sent deliveries older than `before` (failed ones stay: they are the record of a
        refusal). Their events' inbox rows stay, so a very late redelivery still sends nothing."""
        return self.session.execute(delete(Delivery).where(Delivery.status == SENT, Delivery.sent_at < before)
                                    .execution_options(synchronize_session=False)).rowcount

    def counts_by_status(self) -> dict:
        return dict(self.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
