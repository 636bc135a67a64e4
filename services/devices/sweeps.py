"""The sweeps the scheduler calls: silent machines marked offline, unacknowledged USB
policies marked stale, old metrics and alerts dropped. Each commits only when it changed
something."""
from __future__ import annotations

from datetime import datetime, timedelta

from common.contracts import devices as contract
from common.unit_of_work import UnitOfWorkSource
from services.devices import domain
from services.devices.heartbeat_state import USB_ALERTS, fold_alerts
from services.devices.history import day_of, day_start

# a heartbeat older than the metrics' retention is refused at the contract (nothing of it kept)
METRICS_RETENTION, ALERT_RETENTION = contract.HEARTBEAT_MAX_AGE, timedelta(days=180)


def mark_offline(store: UnitOfWorkSource, thresholds: domain.StatusThresholds, now: datetime) -> dict:
    """Machines silent past the stale threshold become offline (`machine_offline`);
    nothing is written when no machine changed."""
    with store.unit_of_work() as uow:
        states = uow.repo.silent_states_for_update(now - thresholds.stale)
        machines = uow.repo.machines({s.machine_id for s in states})
        for state in states:
            state.reported_online = False
            machine = machines[state.machine_id]
            uow.emit("machine_offline", {"tenant_id": machine.tenant_id, "machine_id": machine.id,
                                         "company_id": machine.company_id})
        if states:
            uow.commit()
        return {"marked_offline": len(states)}


def expire_stale_usb_policies(store: UnitOfWorkSource, ttl: timedelta, now: datetime) -> dict:
    """Pending USB policies not acknowledged within the TTL become STALE, with an alert."""
    with store.unit_of_work() as uow:
        stale = uow.repo.pending_usb_policies(now - ttl)
        alerts: list = []
        for policy in stale:
            policy.status = "STALE"
            state = uow.repo.state(policy.machine_id)
            state.open_alert_kinds = fold_alerts(alerts, state.machine_id, state.open_alert_kinds,
                                                 {domain.USB_POLICY_STALE: {"mode": policy.mode}}, now,
                                                 kinds=USB_ALERTS)
        uow.repo.write_alerts(alerts)
        if stale:
            uow.commit()
        return {"marked_stale": len(stale)}


def apply_retention(store: UnitOfWorkSource, now: datetime, dry_run: bool = False, tenant_id=None) -> dict:
    """Hourly metrics go after 90 days (a whole day at a time: a day's hours are one
    value), closed alerts after 180; machines, their current inventory and its change
    history stay (a day row with changes loses only its metrics). With `tenant_id` (a
    dry run only: common.retention.retention_scope), that tenant's machines alone."""
    metrics_before, alerts_before = day_of(now - METRICS_RETENTION), now - ALERT_RETENTION
    kinds = {}
    with store.unit_of_work() as uow:
        count, oldest = uow.repo.metrics_before(metrics_before, tenant_id)
        if count and not dry_run:
            uow.repo.clear_metrics_before(metrics_before)
        kinds["metrics_hourly"] = {"past_policy": count, "deleted": 0 if dry_run else count,
                                   "oldest": day_start(oldest).isoformat() if oldest else None}
        count, oldest = uow.repo.alerts_closed_before(alerts_before, tenant_id)
        if count and not dry_run:
            uow.repo.delete_alerts_closed_before(alerts_before)
        kinds["alerts"] = {"past_policy": count, "deleted": 0 if dry_run else count,
                           "oldest": oldest.isoformat() if oldest else None}
        if not dry_run and any(k["past_policy"] for k in kinds.values()):
            uow.commit()
    return {"dry_run": dry_run, "kinds": kinds}
