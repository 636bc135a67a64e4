"""An in-memory stand-in for services/devices/repository.py's DevicesRepository, for the
handlers' fast unit tests (with tests/support/fake_uow.py's FakeStore): the methods the
handlers call, over dicts. ORM row classes are instantiated without a session; ids and the
defaults a database would fill are set here. Like the real repository, the heartbeat path
gets copies of the state rows and sees its changes only once it saves them."""
from __future__ import annotations

import uuid
from types import SimpleNamespace

from services.devices.heartbeat_state import BatchChanges, InventoryRow, PolicyRow, StateRow
from services.devices.history import merge_day
from services.devices.software import version_key
from services.devices.storage import Alert, HeartbeatState

STATE_COLUMNS = [column.name for column in HeartbeatState.__table__.columns]


class FakeDevicesRepository:
    def __init__(self):
        self.machine_rows: dict = {}  # id -> Machine
        self.identifiers: dict = {}  # (company_id, kind, value) -> machine id
        self.tokens: list = []  # MachineToken
        self.states: dict = {}  # machine id -> StateRow (as stored)
        self.policies: dict = {}  # machine id -> UsbPolicy
        self.inventory_rows: dict = {}  # machine id -> InventoryRow
        self.inventory_writes: list = []  # (machine id, version) of every inventory written
        self.alerts: list = []  # Alert
        self.days: dict = {}  # (machine id, day) -> (packed metrics, packed changes)
        self.software: dict = {}  # machine id -> {(name, version)}
        self.link_rows: dict = {}  # (machine id, user id) -> MachineLink
        self.inbox: set = set()
        self.version_ids: dict = {}  # (name, version) -> id, as software_versions' table

    def add(self, row):
        if hasattr(row, "id") and row.id is None:
            row.id = uuid.uuid4()
        if type(row).__name__ == "MachineToken":
            self.tokens.append(row)
        elif type(row).__name__ == "MachineLink":
            self.link_rows[(row.machine_id, row.user_id)] = row
        elif type(row).__name__ == "UsbPolicy":
            self.policies[row.machine_id] = row
        return row

    # machines, enrolment, tokens

    def machine(self, tenant_id, machine_id):
        machine = self.machine_rows.get(machine_id)
        return machine if machine is not None and machine.tenant_id == tenant_id else None

    def is_users_machine(self, machine, user_id) -> bool:
        return machine.assigned_user_id == user_id or (machine.id, user_id) in self.link_rows

    def machine_matching(self, company_id, found: set):
        for kind, value in sorted(found):
            owner = self.identifiers.get((company_id, kind, value))
            if owner is not None:
                return self.machine_rows[owner]
        return None

    def add_machine(self, machine):
        machine.id = machine.id or uuid.uuid4()
        machine.assigned_user_version = machine.assigned_user_version or 0
        self.machine_rows[machine.id] = machine
        self.states[machine.id] = StateRow(**{**dict.fromkeys(STATE_COLUMNS), "machine_id": machine.id,
                                              "heartbeats": 0, "need_inventory": True, "reported_online": False,
                                              "open_alert_kinds": "", "agg_samples": 0, "agg_cpu_sum": 0.0,
                                              "agg_memory_sum": 0.0})
        return machine

    def replace_identifiers(self, machine, found: set, new_machine: bool = False) -> None:
        for key in [key for key, owner in self.identifiers.items()
                    if key[0] == machine.company_id and (owner == machine.id or key[1:] in found)]:
            del self.identifiers[key]
        for kind, value in found:
            self.identifiers[(machine.company_id, kind, value)] = machine.id

    def revoke_tokens(self, machine_id, now) -> int:
        live = [token for token in self.tokens if token.machine_id == machine_id and token.revoked_at is None]
        for token in live:
            token.revoked_at = now
        return len(live)

    def tokens_by_hash(self, hashes) -> dict:
        return {token.token_hash: SimpleNamespace(
            token_hash=token.token_hash, machine_id=token.machine_id, revoked_at=token.revoked_at,
            expires_at=token.expires_at, machine_created_at=self.machine_rows[token.machine_id].created_at)
            for token in self.tokens if token.token_hash in hashes}

    # the heartbeat path

    def states_for_update(self, machine_ids) -> dict:
        return {machine_id: StateRow(**vars(self.states[machine_id])) for machine_id in machine_ids}

    def save_states(self, states) -> None:
        for state in states:
            self.states[state.machine_id] = StateRow(**vars(state))

    def usb_policies(self, machine_ids) -> dict:
        return {machine_id: PolicyRow(machine_id=machine_id, mode=policy.mode, status=policy.status,
                                      applied_at=policy.applied_at)
                for machine_id, policy in self.policies.items() if machine_id in machine_ids}

    def inventories(self, machine_ids) -> dict:
        return {machine_id: InventoryRow(**vars(row)) for machine_id, row in self.inventory_rows.items()
                if machine_id in machine_ids}

    def write_changes(self, changes: BatchChanges) -> None:
        for machine_id, held in changes.inventories.items():
            assert held.new == (machine_id not in self.inventory_rows), "an INSERT of a row that exists"
            self.inventory_rows[machine_id] = InventoryRow(machine_id=machine_id, hash=held.hash,
                                                           document=held.document, version=held.version,
                                                           updated_at=held.updated_at)
            self.inventory_writes.append((machine_id, held.version))
        self.write_alerts(changes.alerts)
        for policy in changes.applied_policies:
            self.policies[policy.machine_id].status = policy.status
            self.policies[policy.machine_id].applied_at = policy.applied_at
        for key, additions in changes.history.days.items():
            self.days[key] = merge_day(*self.days.get(key, (None, None)), key[1], additions)
        self.software.update(changes.software)

    def write_alerts(self, changes) -> None:
        for change in changes:
            if change.details is not None:
                assert not self.open_alerts(change.machine_id, change.kind), "two open alerts of a kind"
                self.alerts.append(Alert(id=uuid.uuid4(), machine_id=change.machine_id, kind=change.kind,
                                         opened_at=change.at, details=change.details, closed_at=None))
            else:
                for alert in self.open_alerts(change.machine_id, change.kind):
                    alert.closed_at = change.at

    def machines(self, ids) -> dict:
        return {machine_id: self.machine_rows[machine_id] for machine_id in ids}

    # reads

    def state(self, machine_id):
        return self.states.get(machine_id)

    def usb_policy(self, machine_id):
        return self.policies.get(machine_id)

    def open_alerts(self, machine_id, kind=None) -> list:
        return [alert for alert in self.alerts if alert.machine_id == machine_id and alert.closed_at is None
                and kind in (None, alert.kind)]

    def links(self, machine_id) -> list:
        return [link for (machine, _), link in self.link_rows.items() if machine == machine_id]

    def inventory(self, machine_id):
        return self.inventory_rows.get(machine_id)

    def change_days(self, machine_id, until, limit: int) -> list:
        return sorted(((day, changes) for (machine, day), (_, changes) in self.days.items()
                       if machine == machine_id and changes is not None and (until is None or day <= until)),
                      reverse=True)[:limit]

    def metric_days(self, machine_id, since) -> list:
        return [(day, metrics) for (machine, day), (metrics, _) in self.days.items()
                if machine == machine_id and day >= since and metrics is not None]

    def _with_last_seen(self, machines) -> list:
        """(machine, last seen) by hostname and id, as the real queries order them."""
        return [(machine, self.states[machine.id].last_seen_at if machine.id in self.states else None)
                for machine in sorted(machines, key=lambda m: (m.hostname, m.id))]

    def user_machines(self, tenant_id, user_id, limit: int) -> list:
        return self._with_last_seen(
            machine for machine in self.machine_rows.values()
            if machine.tenant_id == tenant_id and self.is_users_machine(machine, user_id))[:limit]

    def list_machines(self, tenant_id, filters: dict, now, thresholds, after, limit: int) -> list:
        def wanted(machine, seen) -> bool:
            status = filters.get("status")
            return ((not filters.get("company_id") or machine.company_id == filters["company_id"])
                    and (not filters.get("q") or filters["q"].lower() in machine.hostname.lower())
                    and (status != "online" or (seen is not None and seen > now - thresholds.online))
                    and (status != "stale" or (seen is not None and now - thresholds.stale < seen
                                               <= now - thresholds.online))
                    and (status != "offline" or seen is None or seen <= now - thresholds.stale)
                    and (after is None or (machine.hostname, machine.id) > tuple(after)))
        return [(machine, seen) for machine, seen in self._with_last_seen(
            m for m in self.machine_rows.values() if m.tenant_id == tenant_id) if wanted(machine, seen)][:limit]

    def last_seen_all(self, tenant_id=None) -> list:
        return [state.last_seen_at for machine_id, state in self.states.items()
                if tenant_id is None or self.machine_rows[machine_id].tenant_id == tenant_id]

    def last_seen(self, machine_ids) -> list:
        return [(machine_id, self.states[machine_id].last_seen_at) for machine_id in sorted(machine_ids)
                if machine_id in self.states]

    def token_hint(self, token_hash: str):
        token = next((token for token in self.tokens if token.token_hash == token_hash), None)
        if token is None:
            return None
        state, policy = self.states.get(token.machine_id), self.policies.get(token.machine_id)
        return SimpleNamespace(machine_id=token.machine_id, revoked_at=token.revoked_at,
                               expires_at=token.expires_at,
                               registered_at=self.machine_rows[token.machine_id].created_at,
                               inventory_hash=state.inventory_hash if state else None,
                               usb_mode=policy.mode if policy else None, usb_status=policy.status if policy else None)

    # the software index: (name, version) pairs get ids in the order first asked about

    def _version_ids(self) -> dict:
        for pair in sorted(set().union(*self.software.values())):
            self.version_ids.setdefault(pair, len(self.version_ids) + 1)
        return self.version_ids

    def software_versions(self, name: str, exact, older_than_key) -> dict:
        return {held: version for (package, version), held in self._version_ids().items()
                if package == name and exact in (None, version)
                and (older_than_key is None or version_key(version) < older_than_key)}

    def software_holders(self, tenant_id, company_id, version_ids: list, after, limit: int) -> list:
        ids, wanted = self._version_ids(), set(version_ids)
        found = []
        for machine, _ in self._with_last_seen(self.machine_rows.values()):
            held = sorted(ids[pair] for pair in self.software.get(machine.id, ()) if ids[pair] in wanted)
            if (machine.tenant_id == tenant_id and company_id in (None, machine.company_id) and held
                    and (after is None or (machine.hostname, machine.id) > tuple(after))):
                found.append((machine.id, machine.hostname, machine.company_id, held[0]))
        return found[:limit]

    def software_counts(self, tenant_id, company_id, version_ids: list) -> dict:
        counts: dict = {}
        for *_, held in self.software_holders(tenant_id, company_id, version_ids, None, 10 ** 9):
            counts[held] = counts.get(held, 0) + 1
        return counts

    # links and their people

    def link(self, machine_id, user_id):
        return self.link_rows.get((machine_id, user_id))

    def links_of_user(self, user_id) -> list:
        return [link for (_, user), link in self.link_rows.items() if user == user_id]

    def delete(self, row) -> None:
        del self.link_rows[(row.machine_id, row.user_id)]

    def unlink(self, machine_id, user_id) -> None:
        self.link_rows.pop((machine_id, user_id), None)

    def rename_user(self, user_id, version, email: str, name: str) -> None:
        for machine in self.machine_rows.values():
            if machine.assigned_user_id == user_id and machine.assigned_user_version < version.applies_below:
                machine.assigned_user_email, machine.assigned_user_name = email, name
                machine.assigned_user_version = version.stored
        for link in self.links_of_user(user_id):
            if link.user_version < version.applies_below:
                link.user_email, link.user_name, link.user_version = email, name, version.stored

    def reassign_machines(self, old_user_id, user_id, email: str, name: str, version: int) -> None:
        for machine in self.machine_rows.values():
            if machine.assigned_user_id == old_user_id:
                machine.assigned_user_id, machine.assigned_user_email = user_id, email
                machine.assigned_user_name, machine.assigned_user_version = name, version

    # events and sweeps

    def first_delivery(self, event: dict, event_type: str) -> bool:
        if event["event_id"] in self.inbox:
            return False
        self.inbox.add(event["event_id"])
        return True

    def handled(self, event: dict) -> bool:
        return event["event_id"] in self.inbox

    def silent_states_for_update(self, seen_before) -> list:
        return [state for state in self.states.values()
                if state.reported_online and state.last_seen_at is not None and state.last_seen_at <= seen_before]

    def pending_usb_policies(self, requested_before) -> list:
        return [policy for policy in self.policies.values()
                if policy.status == "PENDING" and policy.requested_at <= requested_before]

    def _metric_days_before(self, day, tenant_id) -> list:
        return [(key, metrics) for key, (metrics, _) in self.days.items()
                if key[1] < day and metrics is not None
                and (tenant_id is None or self.machine_rows[key[0]].tenant_id == tenant_id)]

    def metrics_before(self, day, tenant_id=None) -> tuple:
        found = self._metric_days_before(day, tenant_id)
        return len(found), min((key[1] for key, _ in found), default=None)

    def clear_metrics_before(self, day) -> None:
        for key, _ in self._metric_days_before(day, None):
            changes = self.days[key][1]
            if changes is None:
                del self.days[key]
            else:
                self.days[key] = (None, changes)

    def _alerts_closed_before(self, moment, tenant_id) -> list:
        return [alert for alert in self.alerts if alert.closed_at is not None and alert.closed_at < moment
                and (tenant_id is None or self.machine_rows[alert.machine_id].tenant_id == tenant_id)]

    def alerts_closed_before(self, moment, tenant_id=None) -> tuple:
        found = self._alerts_closed_before(moment, tenant_id)
        return len(found), min((alert.closed_at for alert in found), default=None)

    def delete_alerts_closed_before(self, moment) -> None:
        gone = {id(alert) for alert in self._alerts_closed_before(moment, None)}
        self.alerts = [alert for alert in self.alerts if id(alert) not in gone]
