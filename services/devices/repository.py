"""The devices repository: every query of the service over its tables (storage.py), inside
the unit of work's session. The heartbeat path reads and writes plain rows
(heartbeat_state.py) in a few statements per batch, never per heartbeat."""
from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import bindparam, delete, func, or_, select, tuple_, update

from common.db import Repository, escape_like
from common.messaging import first_delivery
from services.devices.heartbeat_state import BatchChanges, InventoryRow, PolicyRow, StateRow
from services.devices.history import HistoryBatch, merge_day
from services.devices.software_index import SoftwareIndexQueries
from services.devices.storage import (Alert, HeartbeatState, Inventory, Machine, MachineDay, MachineIdentifier,
                                      MachineLink, MachineToken, UsbPolicy, inbox)


class DevicesRepository(SoftwareIndexQueries, Repository):
    # machines, enrolment, tokens ----------------------------------------------------------

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

    def add_machine(self, machine: Machine) -> Machine:
        """A new machine (inserted now: its id is known) and its empty heartbeat state."""
        self.add(machine)
        self.session.add(HeartbeatState(machine_id=machine.id, heartbeats=0, need_inventory=True,
                                        reported_online=False, open_alert_kinds="", agg_samples=0,
                                        agg_cpu_sum=0.0, agg_memory_sum=0.0))
        return machine

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
                   Machine.created_at.label("registered_at"), HeartbeatState.inventory_hash,
                   UsbPolicy.mode.label("usb_mode"), UsbPolicy.status.label("usb_status"))
            .join(Machine, Machine.id == MachineToken.machine_id)
            .outerjoin(HeartbeatState, HeartbeatState.machine_id == MachineToken.machine_id)
            .outerjoin(UsbPolicy, UsbPolicy.machine_id == MachineToken.machine_id)
            .where(MachineToken.token_hash == token_hash)).first()

    # the heartbeat path ---------------------------------------------------------------------

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

    def usb_policies(self, machine_ids) -> dict:
        """{machine_id: PolicyRow} of the machines that have a USB policy."""
        if not machine_ids:
            return {}
        table = UsbPolicy.__table__
        return {row.machine_id: PolicyRow(machine_id=row.machine_id, mode=row.mode, status=row.status,
                                          applied_at=row.applied_at)
                for row in self.session.execute(select(table.c.machine_id, table.c.mode, table.c.status,
                                                       table.c.applied_at)
                                                .where(table.c.machine_id.in_(sorted(machine_ids))))}

    def inventories(self, machine_ids) -> dict:
        """{machine_id: InventoryRow} of the machines' stored inventories, in one query."""
        if not machine_ids:
            return {}
        table = Inventory.__table__
        return {row.machine_id: InventoryRow(**row._mapping) for row in self.session.execute(
            select(table.c.machine_id, table.c.hash, table.c.document, table.c.version)
            .where(table.c.machine_id.in_(sorted(machine_ids))))}

    def write_changes(self, changes: BatchChanges) -> None:
        """What a heartbeat batch changed besides its state rows (`save_states`): a few
        statements per batch, none when nothing but the state rows changed."""
        self.write_inventories(changes.inventories)
        self.write_alerts(changes.alerts)
        if changes.applied_policies:
            table = UsbPolicy.__table__
            self.session.execute(update(table).where(table.c.machine_id == bindparam("key_machine_id"))
                                 .values(status=bindparam("status"), applied_at=bindparam("applied_at")),
                                 [{"key_machine_id": policy.machine_id, "status": policy.status,
                                   "applied_at": policy.applied_at} for policy in changes.applied_policies])
        self.write_history(changes.history)
        self.write_software(changes.software)

    def write_inventories(self, versions: dict) -> None:
        """{machine_id: InventoryVersion}: new ones inserted, the others replaced."""
        table = Inventory.__table__
        inserts = [{"machine_id": machine_id, "hash": held.hash, "document": held.document,
                    "updated_at": held.updated_at, "version": held.version}
                   for machine_id, held in sorted(versions.items()) if held.new]
        updates = [{"key_machine_id": machine_id, "hash": held.hash, "document": held.document,
                    "updated_at": held.updated_at, "version": held.version}
                   for machine_id, held in sorted(versions.items()) if not held.new]
        if inserts:
            self.session.execute(table.insert(), inserts)
        if updates:
            self.session.execute(update(table).where(table.c.machine_id == bindparam("key_machine_id")).values(
                hash=bindparam("hash"), document=bindparam("document"), updated_at=bindparam("updated_at"),
                version=bindparam("version")), updates)

    def write_alerts(self, changes) -> None:
        """AlertChanges in their order: openings inserted together until a closing, which
        must follow the opening it closes (one open alert per machine and kind)."""
        table = Alert.__table__
        opening: list = []
        for change in changes:
            if change.details is not None:
                opening.append({"machine_id": change.machine_id, "kind": change.kind,
                                "opened_at": change.at, "details": change.details})
                continue
            if opening:
                self.session.execute(table.insert(), opening)
                opening = []
            self.session.execute(update(table).where(
                table.c.machine_id == change.machine_id, table.c.kind == change.kind,
                table.c.closed_at.is_(None)).values(closed_at=change.at))
        if opening:
            self.session.execute(table.insert(), opening)

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

    # reads -------------------------------------------------------------------------------

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

    def state(self, machine_id) -> HeartbeatState | None:
        return self.session.get(HeartbeatState, machine_id)

    def usb_policy(self, machine_id) -> UsbPolicy | None:
        return self.session.get(UsbPolicy, machine_id)

    def inventory(self, machine_id) -> Inventory | None:
        return self.session.get(Inventory, machine_id)

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

    def user_machines(self, tenant_id, user_id, limit: int) -> list:
        """(machine, last seen) of the tenant's machines assigned to or linked with the user."""
        linked = select(MachineLink.machine_id).where(MachineLink.user_id == user_id)
        return self.session.execute(
            select(Machine, HeartbeatState.last_seen_at)
            .join(HeartbeatState, HeartbeatState.machine_id == Machine.id, isouter=True)
            .where(Machine.tenant_id == tenant_id,
                   or_(Machine.assigned_user_id == user_id, Machine.id.in_(linked)))
            .order_by(Machine.hostname, Machine.id).limit(limit)).all()

    def last_seen_all(self, tenant_id=None):
        """The last heartbeat (or None) of every machine, of one tenant or of all."""
        query = select(HeartbeatState.last_seen_at).join(Machine, Machine.id == HeartbeatState.machine_id)
        if tenant_id is not None:
            query = query.where(Machine.tenant_id == tenant_id)
        return self.session.scalars(query)

    def last_seen(self, machine_ids) -> list:
        """(machine id, last heartbeat or None) of the machines among these that exist."""
        if not machine_ids:
            return []
        return self.session.execute(select(HeartbeatState.machine_id, HeartbeatState.last_seen_at)
                                    .where(HeartbeatState.machine_id.in_(sorted(machine_ids)))).all()

    def list_machines(self, tenant_id, filters: dict, now, thresholds, after, limit: int) -> list:
        return self.session.execute(self.list_query(tenant_id, filters, now, thresholds, after, limit)).all()

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

    # links and their people -----------------------------------------------------------------

    def link(self, machine_id, user_id) -> MachineLink | None:
        return self.session.get(MachineLink, (machine_id, user_id))

    def links_of_user(self, user_id) -> list[MachineLink]:
        return list(self.session.scalars(select(MachineLink).where(MachineLink.user_id == user_id)))

    def delete(self, row) -> None:
        self.session.delete(row)

    def unlink(self, machine_id, user_id) -> None:
        self.session.query(MachineLink).filter(MachineLink.machine_id == machine_id,
                                               MachineLink.user_id == user_id).delete()

    def rename_user(self, user_id, version, email: str, name: str) -> None:
        """A person's newer email and name on the machines assigned to them and their links;
        WHERE version < :new: an older change arriving late (a retry after an outage) leaves
        the newer name it finds (issue 26)."""
        self.session.execute(update(Machine).where(
            Machine.assigned_user_id == user_id, Machine.assigned_user_version < version.applies_below).values(
            assigned_user_email=email, assigned_user_name=name, assigned_user_version=version.stored))
        self.session.execute(update(MachineLink).where(
            MachineLink.user_id == user_id, MachineLink.user_version < version.applies_below).values(
            user_email=email, user_name=name, user_version=version.stored))

    def reassign_machines(self, old_user_id, user_id, email: str, name: str, version: int) -> None:
        """The machines assigned to `old_user_id` now assigned to `user_id` (a merge)."""
        self.session.execute(update(Machine).where(Machine.assigned_user_id == old_user_id).values(
            assigned_user_id=user_id, assigned_user_email=email, assigned_user_name=name,
            assigned_user_version=version))

    # events and sweeps --------------------------------------------------------------------

    def first_delivery(self, event: dict, event_type: str) -> bool:
        """Record the event as handled in this transaction; False if it already was."""
        return first_delivery(self, inbox, event, event_type)  # it needs only our `.session`

    def handled(self, event: dict) -> bool:
        """Whether the event was handled already (a look before a lookup elsewhere)."""
        return self.session.execute(select(inbox.c.event_id).where(
            inbox.c.event_id == uuid.UUID(str(event["event_id"])))).first() is not None

    def silent_states_for_update(self, seen_before) -> list[HeartbeatState]:
        """The state rows of machines reported online but silent since `seen_before`, locked
        (those another transaction holds are skipped: a heartbeat batch is at them)."""
        return list(self.session.scalars(select(HeartbeatState).where(
            HeartbeatState.reported_online.is_(True),
            HeartbeatState.last_seen_at <= seen_before).with_for_update(skip_locked=True)))

    def pending_usb_policies(self, requested_before) -> list[UsbPolicy]:
        return list(self.session.scalars(select(UsbPolicy).where(
            UsbPolicy.status == "PENDING", UsbPolicy.requested_at <= requested_before)))

    def metrics_before(self, day: date, tenant_id=None) -> tuple:
        """(how many, the oldest) day rows holding metrics of days before `day` (of the
        tenant's machines, or of all)."""
        days = MachineDay.__table__
        return self.session.execute(select(func.count(), func.min(days.c.day)).where(
            *self._metrics_before(day, tenant_id))).one()

    def clear_metrics_before(self, day: date) -> None:
        """Metrics of days before `day` cleared; day rows left with nothing deleted."""
        days = MachineDay.__table__
        self.session.execute(update(days).where(*self._metrics_before(day, None)).values(metrics=None))
        self.session.execute(delete(days).where(days.c.metrics.is_(None), days.c.changes.is_(None)))

    def alerts_closed_before(self, moment, tenant_id=None) -> tuple:
        """(how many, the oldest closing) of the alerts closed before `moment` (of the
        tenant's machines, or of all)."""
        alerts = Alert.__table__
        return self.session.execute(select(func.count(), func.min(alerts.c.closed_at)).where(
            *self._alerts_closed_before(moment, tenant_id))).one()

    def delete_alerts_closed_before(self, moment) -> None:
        self.session.execute(delete(Alert.__table__).where(*self._alerts_closed_before(moment, None)))

    @staticmethod
    def _metrics_before(day: date, tenant_id) -> list:
        days = MachineDay.__table__
        return [days.c.day < day, days.c.metrics.is_not(None),
                *_of_tenant(days.c.machine_id, tenant_id)]

    @staticmethod
    def _alerts_closed_before(moment, tenant_id) -> list:
        alerts = Alert.__table__
        return [alerts.c.closed_at < moment, alerts.c.closed_at.is_not(None),
                *_of_tenant(alerts.c.machine_id, tenant_id)]


def _of_tenant(machine_id_column, tenant_id) -> list:
    """The condition that a row's machine is the tenant's; none for every tenant."""
    if tenant_id is None:
        return []
    return [machine_id_column.in_(select(Machine.id).where(Machine.tenant_id == tenant_id))]
