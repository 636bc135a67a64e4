"""Devices tables (schema `devices`); the queries over them are repository.py's.

Growth follows change: a heartbeat updates its machine's `heartbeat_state` row in place;
the inventory document exists once per machine (`inventories`, replaced when it changes);
history is one `machine_days` row per machine and day holding that day's hourly metrics and
inventory changes, packed (services/devices/history.py); the current day's metrics are
folded in the state row (the current hour, and the day's ended hours) until the day ends.
"""
from __future__ import annotations

import uuid
import zlib
from datetime import date, datetime

from sqlalchemy import (JSON, BigInteger, Boolean, Date, Float, ForeignKey, Index, Integer, LargeBinary, String,
                        Text, UniqueConstraint, text)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from common.db import UTCDateTime, new_metadata, utcnow
from common.idempotency import idempotency_table
from common.messaging import inbox_table
from common.outbox import outbox_table

OPEN_ONLY = text("closed_at IS NULL")


class Base(DeclarativeBase):
    metadata = new_metadata()


metadata = Base.metadata
outbox_table(metadata)
inbox = inbox_table(metadata)
idempotency_keys = idempotency_table(metadata)  # Idempotency-Key records (common/idempotency.py)


class Machine(Base):
    __tablename__ = "machines"
    __table_args__ = (Index("ix_machines_tenant_hostname", "tenant_id", "hostname", "id"),
                      Index("ix_machines_tenant_company", "tenant_id", "company_id"))
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID]
    company_id: Mapped[uuid.UUID]
    hostname: Mapped[str] = mapped_column(String(255))
    os_name: Mapped[str] = mapped_column(String(100))
    os_version: Mapped[str] = mapped_column(String(100), default="")
    os_build: Mapped[str] = mapped_column(String(100), default="")
    os_arch: Mapped[str] = mapped_column(String(32), default="")
    persona: Mapped[str] = mapped_column(String(20), default="collaborator")
    # the agent said at registration that it applies USB policies (contracts AGENT_CAPABILITIES)
    usb_policy_supported: Mapped[bool] = mapped_column(Boolean, default=False)
    assigned_user_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    assigned_user_email: Mapped[str | None] = mapped_column(String(254))
    assigned_user_name: Mapped[str | None] = mapped_column(String(200))
    # the accounts version that email and name are of (domain.SnapshotVersion; 0: none known)
    assigned_user_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    machine_user_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MachineIdentifier(Base):
    """Normalised serials and physical MACs: how a reinstalled machine is recognised."""

    __tablename__ = "machine_identifiers"
    company_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    value: Mapped[str] = mapped_column(String(128), primary_key=True)
    machine_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("machines.id"), index=True)


class MachineToken(Base):
    __tablename__ = "machine_tokens"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    machine_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("machines.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class HeartbeatState(Base):
    """One row per machine, updated in place by every heartbeat."""

    __tablename__ = "heartbeat_state"
    # no index on what a heartbeat changes, and half of each page free (fillfactor, set by
    # the migration): every update stays HOT and is pruned on its page without VACUUM
    __table_args__ = ({"postgresql_with": {"fillfactor": 50}},)
    machine_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("machines.id"), primary_key=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_message_id: Mapped[str | None] = mapped_column(String(128))
    # the sent_at of the last applied heartbeats (domain.RecentHeartbeats): redeliveries
    recent_sent: Mapped[bytes | None] = mapped_column(LargeBinary)
    heartbeats: Mapped[int] = mapped_column(BigInteger, default=0)
    last_metrics: Mapped[str | None] = mapped_column(Text)
    inventory_hash: Mapped[str | None] = mapped_column(String(64))
    need_inventory: Mapped[bool] = mapped_column(Boolean, default=True)
    reported_online: Mapped[bool] = mapped_column(Boolean, default=False)
    open_alert_kinds: Mapped[str] = mapped_column(String(200), default="")
    # the current hour's metrics, folded here and written to metrics_hourly when it ends
    agg_hour: Mapped[datetime | None] = mapped_column(UTCDateTime)
    agg_samples: Mapped[int] = mapped_column(Integer, default=0)
    agg_cpu_sum: Mapped[float] = mapped_column(Float, default=0.0)
    agg_cpu_max: Mapped[float | None] = mapped_column(Float)
    agg_memory_sum: Mapped[float] = mapped_column(Float, default=0.0)
    agg_memory_max: Mapped[float | None] = mapped_column(Float)
    agg_disk_max: Mapped[float | None] = mapped_column(Float)
    # the ended hours of agg_hour's day, packed (history.py): written to machine_days once,
    # when the day ends, so a day row is not rewritten every hour
    day_metrics: Mapped[bytes | None] = mapped_column(LargeBinary)


DEFLATED_TEXT_FORMAT = 1


def deflate_text(value: str) -> bytes:
    """Format 1: one format byte, then zlib (level 6) of the UTF-8 text. A 92 KB inventory
    takes ~10 KB, against ~15 KB by PostgreSQL's own TOAST compression (pglz) and ~16.5 KB
    by lz4; ~1 ms to write, a fraction of that to read."""
    return bytes([DEFLATED_TEXT_FORMAT]) + zlib.compress(value.encode(), 6)


def inflate_text(value: bytes | str) -> str:
    if isinstance(value, str):  # SQLite keeps a value's own type: text written before the change
        return value
    value = bytes(value)
    if value[:1] == bytes([DEFLATED_TEXT_FORMAT]):
        return zlib.decompress(value[1:]).decode()
    return value.decode()  # text stored as bytes by the migration, before it deflates it


class DeflatedText(TypeDecorator):
    """Text stored compressed (bytea): for large documents read and written whole."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else deflate_text(value)

    def process_result_value(self, value, dialect):
        return None if value is None else inflate_text(value)


class Inventory(Base):
    """The machine's current inventory, canonical JSON (stored deflated), one row per machine."""

    __tablename__ = "inventories"
    machine_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("machines.id"), primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))
    document: Mapped[str] = mapped_column(DeflatedText)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # the number of the last change record (1: the first inventory)
    version: Mapped[int] = mapped_column(Integer, default=1)


class MachineDay(Base):
    """A machine's day: its hourly metrics and its inventory changes, packed (history.py).
    Written at most once per heartbeat batch, when an hour ends or the inventory changes."""

    __tablename__ = "machine_days"
    machine_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("machines.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    metrics: Mapped[bytes | None] = mapped_column(LargeBinary)
    changes: Mapped[bytes | None] = mapped_column(LargeBinary)


class SoftwareVersion(Base):
    """Every (package, version) some machine of the fleet has had, once, with a key whose
    byte order is the version order (software.py): shared by all tenants, holding nothing
    about whose machines they are."""

    __tablename__ = "software_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_software_versions_name_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(200))
    version_key: Mapped[bytes] = mapped_column(LargeBinary)


class MachineSoftware(Base):
    """A machine's packages as the ids of their versions: one row per machine, rewritten
    when its inventory changes; PostgreSQL finds the machines holding any of some versions
    through a GIN index (SQLite reads the rows' JSON)."""

    __tablename__ = "machine_software"
    __table_args__ = (Index("ix_machine_software_version_ids", "version_ids", postgresql_using="gin"),)
    machine_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("machines.id"), primary_key=True)
    version_ids: Mapped[list] = mapped_column(ARRAY(Integer).with_variant(JSON(), "sqlite"))


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (Index("uq_alerts_open_per_kind", "machine_id", "kind", unique=True,
                            postgresql_where=OPEN_ONLY, sqlite_where=OPEN_ONLY),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    machine_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("machines.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    details: Mapped[str] = mapped_column(Text, default="{}")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UsbPolicy(Base):
    __tablename__ = "usb_policies"
    machine_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("machines.id"), primary_key=True)
    mode: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), index=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    requested_by: Mapped[uuid.UUID | None]
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MachineLink(Base):
    __tablename__ = "machine_links"
    machine_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("machines.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, index=True)
    user_email: Mapped[str | None] = mapped_column(String(254))
    user_name: Mapped[str | None] = mapped_column(String(200))
    user_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))  # as Machine's
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
