"""Devices tables and repository (schema `devices`).

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
from types import SimpleNamespace

from sqlalchemy import (JSON, BigInteger, Boolean, Date, Float, ForeignKey, Index, Integer, LargeBinary, String,
                        Text, UniqueConstraint, any_, bindparam, or_, select, text, tuple_, update)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import TypeDecorator

from common.db import Repository, UTCDateTime, escape_like, new_metadata, upsert_insert, utcnow
from common.idempotency import idempotency_table
from common.messaging import inbox_table
from common.outbox import outbox_table
from services.devices.history import HistoryBatch, merge_day
from services.devices.software import version_key

OPEN_ONLY = text("closed_at IS NULL")
LOOKUP_CHUNK = 1000  # package names per lookup statement


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


def literal_ids(ids) -> TextClause:
    """Version ids written into the statement, not bound: the planner then sees them, and
    estimates from the GIN index's statistics how many machines hold them — a bound array
    planned generically looked like 1 % of the machines, and it chose to read every
    machine's array (10,000 machines: 120 ms instead of 7). They are integers from our own
    table, so writing them in is safe."""
    return text("'{" + ",".join(str(int(held)) for held in sorted(ids)) + "}'::integer[]")


class StateRow(SimpleNamespace):
    """A `heartbeat_state` row read for the heartbeat path: attributes, no ORM tracking."""


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


class DevicesRepository(Repository):
    def machine(self, tenant_id, machine_id) -> Machine | None:
        return self.session.scalars(select(Machine).where(
            Machine.tenant_id == tenant_id, Machine.id == machine_id)).first()

    def is_users_machine(self, machine: Machine, user_id) -> bool:
        """Assigned to the user, or linked with them."""
        return machine.assigned_user_id == user_id or self.session.scalar(
            select(MachineLink.machine_id).where(MachineLink.machine_id == machine.id,
                                                 MachineLink.user_id == user_id).limit(1)) is not None

    def machine_matching(self, company_id, found: set) -> Machine | None:
        """The company's machine that owns any of these (kind, value) identifiers."""
        if not found:
            return None
        owner = self.session.scalars(select(MachineIdentifier.machine_id).where(
            MachineIdentifier.company_id == company_id,
            tuple_(MachineIdentifier.kind, MachineIdentifier.value).in_(sorted(found)))).first()
        return self.session.get(Machine, owner) if owner else None

    def replace_identifiers(self, machine: Machine, found: set, new_machine: bool = False) -> None:
        """The machine owns exactly these identifiers in its company. A `new_machine` has
        none yet, and none of `found` belongs to another (machine_matching found no owner in
        this transaction): nothing to delete."""
        if not new_machine:
            self.session.query(MachineIdentifier).filter(
                MachineIdentifier.company_id == machine.company_id,
                or_(MachineIdentifier.machine_id == machine.id,
                    tuple_(MachineIdentifier.kind, MachineIdentifier.value).in_(sorted(found) or [("", "")]))
            ).delete(synchronize_session=False)
        for kind, value in sorted(found):
            self.session.add(MachineIdentifier(company_id=machine.company_id, kind=kind, value=value,
                                               machine_id=machine.id))

    def revoke_tokens(self, machine_id, now) -> int:
        return self.session.execute(update(MachineToken).where(
            MachineToken.machine_id == machine_id, MachineToken.revoked_at.is_(None))
            .values(revoked_at=now)).rowcount

    def tokens_by_hash(self, hashes) -> dict:
        if not hashes:
            return {}
        return {t.token_hash: t for t in self.session.execute(
            select(MachineToken.token_hash, MachineToken.machine_id, MachineToken.revoked_at,
                   MachineToken.expires_at, Machine.created_at.label("machine_created_at"))
            .join(Machine, Machine.id == MachineToken.machine_id)
            .where(MachineToken.token_hash.in_(sorted(hashes))))}

    def token_hint(self, token_hash: str):
        """A token with what the HTTP heartbeat route answers (its machine's inventory hash
        and USB policy), in one query; None when unknown."""
        return self.session.execute(
            select(MachineToken.machine_id, MachineToken.revoked_at, MachineToken.expires_at,
                   Machine.created_at.label("registered_at"), HeartbeatState.inventory_hash, UsbPolicy.mode.label("usb_mode"),
                   UsbPolicy.status.label("usb_status"))
            .join(Machine, Machine.id == MachineToken.machine_id)
            .outerjoin(HeartbeatState, HeartbeatState.machine_id == MachineToken.machine_id)
            .outerjoin(UsbPolicy, UsbPolicy.machine_id == MachineToken.machine_id)
            .where(MachineToken.token_hash == token_hash)).first()

    def states_for_update(self, machine_ids) -> dict:
        """The machines' state rows, locked for this transaction (in machine order, so two
        consumers never deadlock), as plain objects: the heartbeat path writes them back in
        one statement (`save_states`) instead of the ORM's per-object bookkeeping."""
        if not machine_ids:
            return {}
        table = HeartbeatState.__table__
        rows = self.session.execute(select(table).where(table.c.machine_id.in_(sorted(machine_ids)))
                                    .order_by(table.c.machine_id).with_for_update())
        return {row.machine_id: StateRow(**row._mapping) for row in rows}

    def save_states(self, states) -> None:
        """Write the state rows back: one UPDATE executed for all of them (psycopg pipelines
        it; measured faster than one UPDATE … FROM unnest(arrays): 43 vs 66 ms for 500)."""
        states = list(states)
        if not states:
            return
        table = HeartbeatState.__table__
        columns = [column.name for column in table.columns if column.name != "machine_id"]
        statement = update(table).where(table.c.machine_id == bindparam("key_machine_id")).values(
            {name: bindparam(name) for name in columns})
        self.session.execute(statement, [{"key_machine_id": state.machine_id,
                                          **{name: getattr(state, name) for name in columns}}
                                         for state in states])

    def write_history(self, batch: HistoryBatch) -> None:
        """Fold a batch's additions into the machines' day rows: the rows it touches are
        read (locked) in one query and written back in one statement each for new and
        existing rows. The callers hold the machines' state rows locked, so no other
        transaction writes these days meanwhile."""
        if not batch:
            return
        table = MachineDay.__table__
        keys = sorted(batch.days)
        stored = {(row.machine_id, row.day): row for row in self.session.execute(
            select(table).where(tuple_(table.c.machine_id, table.c.day).in_(keys)).with_for_update())}
        inserts, updates = [], []
        for key in keys:
            machine_id, day = key
            row = stored.get(key)
            metrics, changes = merge_day(row.metrics if row else None, row.changes if row else None,
                                         day, batch.days[key])
            if row is None:
                inserts.append({"machine_id": machine_id, "day": day, "metrics": metrics, "changes": changes})
            else:
                updates.append({"key_machine_id": machine_id, "key_day": day, "metrics": metrics,
                                "changes": changes})
        if inserts:
            self.session.execute(table.insert(), inserts)
        if updates:
            self.session.execute(update(table).where(
                table.c.machine_id == bindparam("key_machine_id"), table.c.day == bindparam("key_day"))
                .values(metrics=bindparam("metrics"), changes=bindparam("changes")), updates)

    # the software index ------------------------------------------------------------------

    def write_software(self, found: dict) -> None:
        """{machine_id: {(name, version)}} of machines whose inventory changed in a batch:
        their rows of the index, replaced. The versions' ids are looked up for the batch's
        union at once (a fleet shares most of its packages), missing ones added."""
        if not found:
            return
        ids = self.software_version_ids(set().union(*found.values()))
        rows = [{"machine_id": machine_id, "version_ids": sorted(ids[pair] for pair in pairs)}
                for machine_id, pairs in sorted(found.items())]
        table = MachineSoftware.__table__
        statement = upsert_insert(self.session, table)
        self.session.execute(statement.on_conflict_do_update(
            index_elements=[table.c.machine_id], set_={"version_ids": statement.excluded.version_ids}), rows)

    def software_version_ids(self, pairs: set) -> dict:
        """{(name, version): id}, adding the versions never seen before (another consumer may
        add the same one at the same moment: the unique constraint keeps one)."""
        table = SoftwareVersion.__table__
        known: dict = {}
        postgresql = self.session.bind.dialect.name == "postgresql"

        def look_up(wanted):
            # by name (one array parameter, the unique index): a (name, version) IN list of
            # ~700 pairs was a 700-way OR, ~50 ms a batch; the few other versions of those
            # names that come along are dropped here
            names = sorted({name for name, _ in wanted})
            for start in range(0, len(names), LOOKUP_CHUNK):
                chunk = names[start:start + LOOKUP_CHUNK]
                condition = table.c.name == any_(bindparam("names", chunk, type_=ARRAY(String))) if postgresql \
                    else table.c.name.in_(chunk)
                for row in self.session.execute(select(table.c.id, table.c.name, table.c.version).where(condition)):
                    if (row.name, row.version) in wanted:
                        known[(row.name, row.version)] = row.id

        look_up(pairs)
        missing = sorted(pairs - known.keys())
        if missing:
            statement = upsert_insert(self.session, table)
            self.session.execute(statement.on_conflict_do_nothing(), [
                {"name": name, "version": version, "version_key": version_key(version)}
                for name, version in missing])
            look_up(set(missing))
        return known

    def software_versions(self, name: str, exact: str | None, older_than_key: bytes | None) -> dict:
        """{id: version} of the package's known versions, optionally one, or those older."""
        table = SoftwareVersion.__table__
        query = select(table.c.id, table.c.version).where(table.c.name == name)
        if exact is not None:
            query = query.where(table.c.version == exact)
        if older_than_key is not None:
            query = query.where(table.c.version_key < older_than_key)
        return {row.id: row.version for row in self.session.execute(query)}

    def software_holders(self, tenant_id, company_id, version_ids: list, after, limit: int) -> list:
        """(machine id, hostname, company id, the one of `version_ids` it has) of the tenant's
        machines holding any of them, by hostname and id, after the cursor's (hostname, id).
        PostgreSQL answers through the GIN index (`&&`); SQLite, a small deployment, reads the
        tenant's rows."""
        machines, held = Machine.__table__, MachineSoftware.__table__
        query = (select(machines.c.id, machines.c.hostname, machines.c.company_id, held.c.version_ids)
                 .join(held, held.c.machine_id == machines.c.id).where(machines.c.tenant_id == tenant_id))
        if company_id is not None:
            query = query.where(machines.c.company_id == company_id)
        if after is not None:
            query = query.where(tuple_(machines.c.hostname, machines.c.id) > tuple_(*after))
        query = query.order_by(machines.c.hostname, machines.c.id)
        wanted = set(version_ids)
        if self.session.bind.dialect.name == "postgresql":
            rows = self.session.execute(query.where(held.c.version_ids.op("&&")(literal_ids(wanted))).limit(limit))
        else:
            rows = (row for row in self.session.execute(query) if wanted.intersection(row.version_ids))
        found = []
        for row in rows:
            found.append((row.id, row.hostname, row.company_id, next(v for v in row.version_ids if v in wanted)))
            if len(found) == limit:
                break
        return found

    def software_counts(self, tenant_id, company_id, version_ids: list) -> dict:
        """{version id: how many of the tenant's machines (of the company) hold it}: one GIN
        lookup per version (`@>` needs no recheck, so no machine's array is read)."""
        if self.session.bind.dialect.name != "postgresql":
            counts: dict = {}
            for *_, held in self.software_holders(tenant_id, company_id, version_ids, None, 10 ** 9):
                counts[held] = counts.get(held, 0) + 1
            return counts
        if not version_ids:
            return {}
        company = "AND m.company_id = :company" if company_id is not None else ""
        rows = self.session.execute(text(" UNION ALL ".join(
            f"SELECT {int(held)}, (SELECT count(*) FROM machine_software ms JOIN machines m ON m.id = ms.machine_id "
            f"WHERE ms.version_ids @> {literal_ids([held]).text} AND m.tenant_id = :tenant {company})"
            for held in sorted(version_ids))), {"tenant": tenant_id, "company": company_id})
        return {held: count for held, count in rows if count}

    def change_days(self, machine_id, until: date | None, limit: int):
        """(day, packed changes) of a machine's days with changes, newest first."""
        table = MachineDay.__table__
        query = select(table.c.day, table.c.changes).where(table.c.machine_id == machine_id,
                                                          table.c.changes.is_not(None))
        if until is not None:
            query = query.where(table.c.day <= until)
        return self.session.execute(query.order_by(table.c.day.desc()).limit(limit)).all()

    def metric_days(self, machine_id, since: date):
        """(day, packed metrics) of a machine's days from `since` on."""
        table = MachineDay.__table__
        return self.session.execute(select(table.c.day, table.c.metrics).where(
            table.c.machine_id == machine_id, table.c.day >= since, table.c.metrics.is_not(None))).all()

    def inventories(self, machine_ids) -> dict:
        if not machine_ids:
            return {}
        return {i.machine_id: i for i in self.session.scalars(
            select(Inventory).where(Inventory.machine_id.in_(sorted(machine_ids))))}

    def machines(self, ids) -> dict:
        if not ids:
            return {}
        return {m.id: m for m in self.session.scalars(select(Machine).where(Machine.id.in_(sorted(ids))))}

    def open_alerts(self, machine_id) -> list[Alert]:
        return list(self.session.scalars(select(Alert).where(
            Alert.machine_id == machine_id, Alert.closed_at.is_(None)).order_by(Alert.opened_at)))

    def links(self, machine_id) -> list[MachineLink]:
        return list(self.session.scalars(select(MachineLink).where(MachineLink.machine_id == machine_id)
                                         .order_by(MachineLink.created_at)))

    def list_query(self, tenant_id, filters: dict, now, thresholds, after=None, limit=50):
        query = (select(Machine, HeartbeatState.last_seen_at)
                 .join(HeartbeatState, HeartbeatState.machine_id == Machine.id, isouter=True)
                 .where(Machine.tenant_id == tenant_id))
        if filters.get("company_id"):
            query = query.where(Machine.company_id == filters["company_id"])
        if filters.get("q"):
            query = query.where(Machine.hostname.ilike(f"%{escape_like(filters['q'])}%", escape="\\"))
        status = filters.get("status")
        if status == "online":
            query = query.where(HeartbeatState.last_seen_at > now - thresholds.online)
        elif status == "stale":
            query = query.where(HeartbeatState.last_seen_at <= now - thresholds.online,
                                HeartbeatState.last_seen_at > now - thresholds.stale)
        elif status == "offline":
            query = query.where(or_(HeartbeatState.last_seen_at.is_(None),
                                    HeartbeatState.last_seen_at <= now - thresholds.stale))
        if after is not None:
            query = query.where(tuple_(Machine.hostname, Machine.id) > tuple_(*after))
        return query.order_by(Machine.hostname, Machine.id).limit(limit)
