"""What heartbeats do to their machines' state, as plain Python: metrics folded into the
current hour and day, the inventory replaced when it changed, posture alerts opened and
closed, a USB policy acknowledged.

The heartbeat handler (heartbeats.py) reads a batch's rows as the plain objects below, folds
each heartbeat into them here, and gathers everything else the batch changes (ended hours,
change records, inventories, alerts, policies) into one `BatchChanges`, which the repository
writes once per batch. Pure: no database, no clock, no broker.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace

import orjson

from chamados_protocol.inventory import canonical_form, diff_canonical
from services.devices import domain
from services.devices.history import (ChangeRecord, HistoryBatch, HourMetrics, day_of, fold_hours, pack_metrics,
                                      unpack_metrics)
from services.devices.software import packages

USB_ALERTS = (domain.USB_POLICY_STALE,)
NO_INVENTORY = (None, None, None)


class StateRow(SimpleNamespace):
    """A `heartbeat_state` row read for the heartbeat path: its columns as attributes, no ORM
    tracking (the repository writes the batch's rows back in one statement)."""


class PolicyRow(SimpleNamespace):
    """A machine's USB policy as the heartbeat path reads it: machine_id, mode, status,
    applied_at."""


class InventoryRow(SimpleNamespace):
    """A machine's stored inventory as the heartbeat path reads it: machine_id, hash,
    document (canonical JSON), version."""


@dataclass
class InventoryVersion:
    """A machine's inventory as the batch leaves it, written once after the batch."""

    hash: str
    document: str  # canonical JSON
    version: int
    updated_at: datetime
    new: bool  # the machine had none before the batch: an INSERT


@dataclass(frozen=True)
class AlertChange:
    """An alert to open (`details`, JSON) or to close (`details` None), in the order decided."""

    machine_id: object
    kind: str
    at: datetime
    details: str | None


class BatchChanges:
    """What a batch changes besides its state rows, gathered so that each table is written
    once per batch."""

    def __init__(self):
        self.history = HistoryBatch()  # ended hours and inventory changes
        self.software: dict = {}  # {machine_id: packages} of machines whose inventory changed
        self.inventories: dict = {}  # {machine_id: InventoryVersion}
        self.alerts: list[AlertChange] = []
        self.applied_policies: list[PolicyRow] = []
        self.came_online: list = []  # machine ids: `machine_online` to emit
        self.inventories_written = self.inventories_skipped = 0


def open_hour(state) -> HourMetrics | None:
    """The hour still being folded in a machine's state row (it starts at `state.agg_hour`);
    None when nothing was folded yet."""
    if state.agg_hour is None or not state.agg_samples:
        return None
    return HourMetrics(
        samples=state.agg_samples,
        cpu_avg=state.agg_cpu_sum / state.agg_samples if state.agg_cpu_max is not None else None,
        cpu_max=state.agg_cpu_max,
        memory_avg=state.agg_memory_sum / state.agg_samples if state.agg_memory_max is not None else None,
        memory_max=state.agg_memory_max, disk_max=state.agg_disk_max)


def fold_heartbeat(changes: BatchChanges, state: StateRow, recent: domain.RecentHeartbeats,
                   policy: PolicyRow | None, inventories: dict, heartbeat: dict, message_id: str | None,
                   now: datetime) -> str:
    """One heartbeat of the batch (the batch taken in `sent_at` order): its role
    (domain.APPLY, LATE or DUPLICATE), with what it changed folded into `state`, `policy`
    and `changes`. `inventories`: the machines' stored inventories as the batch began."""
    role = domain.heartbeat_role(heartbeat["sent_at"], state.last_sent_at, recent)
    if role != domain.DUPLICATE:  # a redelivery or a re-sent copy changes nothing
        recent.add(heartbeat["sent_at"], now)
        count_heartbeat(changes.history, state, heartbeat, now)
        if role == domain.APPLY:
            apply_newest(changes, state, policy, inventories, heartbeat, message_id, now)
        if not state.reported_online:
            state.reported_online = True
            changes.came_online.append(state.machine_id)
    return role


def answer(state: StateRow, policy: PolicyRow | None) -> dict:
    """What the agent is told back: whether to send its inventory, any USB policy waiting."""
    return {"need_inventory": state.need_inventory,
            "usb_policy": policy.mode if policy and policy.status == "PENDING" else None}


def count_heartbeat(history: HistoryBatch, state: StateRow, heartbeat: dict, now: datetime) -> None:
    """What every heartbeat of a machine does, late or not: it is counted, shows the
    machine alive now, and its metrics fold into the hour the agent measured them in
    (a replayed heartbeat belongs to its own hour, never in the future whatever the
    agent's clock says)."""
    state.heartbeats += 1
    state.last_seen_at = max(now, state.last_seen_at) if state.last_seen_at else now
    metrics = heartbeat["metrics"]
    measured_at = min(heartbeat["sent_at"], now)
    if state.agg_hour is not None and domain.hour_of(measured_at) < state.agg_hour:
        fold_ended_hour(history, state, domain.hour_of(measured_at), domain.one_sample(metrics))
    else:
        fold_metrics(history, state, metrics, measured_at)


def apply_newest(changes: BatchChanges, state: StateRow, policy: PolicyRow | None, inventories: dict,
                 heartbeat: dict, message_id: str | None, now: datetime) -> None:
    """The machine's newest heartbeat: it becomes the machine's current state."""
    metrics = heartbeat["metrics"]
    state.last_sent_at = heartbeat["sent_at"]
    state.last_message_id = message_id
    state.last_metrics = orjson.dumps(metrics).decode()
    fold_inventory(changes, state, inventories, heartbeat, now)
    state.open_alert_kinds = fold_alerts(changes.alerts, state.machine_id, state.open_alert_kinds,
                                         domain.posture_alerts(metrics), now)
    ack = heartbeat.get("usb_policy_ack")
    if policy is not None and ack and policy.status != "APPLIED" and ack["mode"] == policy.mode:
        policy.status, policy.applied_at = "APPLIED", now
        changes.applied_policies.append(policy)
        state.open_alert_kinds = fold_alerts(changes.alerts, state.machine_id, state.open_alert_kinds, {}, now,
                                             kinds=USB_ALERTS)


def fold_metrics(history: HistoryBatch, state: StateRow, metrics: dict, measured_at: datetime) -> None:
    hour = domain.hour_of(measured_at)
    if state.agg_hour != hour:
        if ended := open_hour(state):
            fold_ended_hour(history, state, state.agg_hour, ended)
        if state.agg_hour is not None and day_of(hour) != day_of(state.agg_hour) and state.day_metrics:
            # the day is over: its hours go to its day row, once
            history.add_hours(state.machine_id, day_of(state.agg_hour), unpack_metrics(state.day_metrics))
            state.day_metrics = None
        state.agg_hour, state.agg_samples = hour, 0
        state.agg_cpu_sum = state.agg_memory_sum = 0.0
        state.agg_cpu_max = state.agg_memory_max = state.agg_disk_max = None
    state.agg_samples += 1
    cpu, memory = metrics.get("cpu_percent"), metrics.get("memory_percent")
    disk = domain.fullest_disk(metrics)
    if cpu is not None:
        state.agg_cpu_sum += cpu
        state.agg_cpu_max = max(cpu, state.agg_cpu_max or 0.0)
    if memory is not None:
        state.agg_memory_sum += memory
        state.agg_memory_max = max(memory, state.agg_memory_max or 0.0)
    if disk is not None:
        state.agg_disk_max = max(disk, state.agg_disk_max or 0.0)


def fold_ended_hour(history: HistoryBatch, state: StateRow, hour: datetime, metrics: HourMetrics) -> None:
    """An hour before the current one: into the state row's day while it is the
    current hour's day, else into its own day row."""
    slot = {hour.astimezone(timezone.utc).hour: metrics}
    if state.agg_hour is not None and day_of(hour) == day_of(state.agg_hour):
        state.day_metrics = pack_metrics(fold_hours(unpack_metrics(state.day_metrics), slot))
    else:
        history.add_hours(state.machine_id, day_of(hour), slot)


def fold_inventory(changes: BatchChanges, state: StateRow, inventories: dict, heartbeat: dict,
                   now: datetime) -> None:
    """Canonicalised once; the stored document is already canonical, so a change is
    diffed by flattening each side once; a first inventory is its own record. A second
    change in the same batch is diffed against the first."""
    inventory = heartbeat.get("inventory")
    document, encoded, computed = canonical_form(inventory) if inventory is not None else NO_INVENTORY
    decision = domain.decide_inventory(state.inventory_hash, heartbeat.get("inventory_hash"), computed)
    state.need_inventory = decision.need_inventory
    if inventory is not None:
        if decision.new_hash:
            changes.inventories_written += 1
        else:
            changes.inventories_skipped += 1
    if decision.new_hash is None:
        return
    machine_id = state.machine_id
    written = changes.inventories.get(machine_id)
    current = written or inventories.get(machine_id)
    if current is None:  # the first inventory: the document is the record, not its paths
        version, diff = 1, {}
    else:
        version, diff = current.version + 1, diff_canonical(orjson.loads(current.document), document)
    # dated when the agent saw it (a replayed spool keeps its days), never in the future
    changes.history.add_change(machine_id, ChangeRecord(version, min(heartbeat["sent_at"], now), diff))
    changes.software[machine_id] = packages(document)
    changes.inventories[machine_id] = InventoryVersion(decision.new_hash, encoded.decode(), version, now,
                                                       new=written.new if written else current is None)
    state.inventory_hash = decision.new_hash


def fold_alerts(alerts: list, machine_id, open_alert_kinds: str, holding: dict, now: datetime,
                kinds=domain.METRIC_ALERTS) -> str:
    """The alerts of `kinds` that now hold opened, those that cleared closed (appended to
    `alerts`); the machine's open kinds after that. The alerts table is only touched when
    something changes: the state row remembers what is open."""
    if not holding and not open_alert_kinds:  # the usual heartbeat: nothing holds, nothing open
        return open_alert_kinds
    open_kinds = set(filter(None, open_alert_kinds.split(",")))
    for kind in kinds:
        if kind in holding and kind not in open_kinds:
            alerts.append(AlertChange(machine_id, kind, now, orjson.dumps(holding[kind]).decode()))
            open_kinds.add(kind)
        elif kind not in holding and kind in open_kinds:
            alerts.append(AlertChange(machine_id, kind, now, None))
            open_kinds.discard(kind)
    return ",".join(sorted(open_kinds))
