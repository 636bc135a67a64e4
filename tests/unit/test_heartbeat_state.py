"""The heartbeat folding (services/devices/heartbeat_state.py) on plain values: metrics into
the current hour, its day and the day rows; inventories replaced only when they change;
alerts opened and closed only when a condition changes."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from services.devices import domain
from services.devices.heartbeat_state import (USB_ALERTS, AlertChange, BatchChanges, InventoryRow, StateRow,
                                              count_heartbeat, fold_alerts, fold_heartbeat, fold_inventory,
                                              open_hour)
from services.devices.history import HourMetrics, unpack_metrics

DAY_START = datetime(2026, 11, 30, tzinfo=timezone.utc)
MACHINE = uuid.uuid4()


def fresh_state(**fields) -> StateRow:
    return StateRow(**{"machine_id": MACHINE, "last_seen_at": None, "last_sent_at": None, "last_message_id": None,
                       "recent_sent": None, "heartbeats": 0, "last_metrics": None, "inventory_hash": None,
                       "need_inventory": True, "reported_online": False, "open_alert_kinds": "",
                       "agg_hour": None, "agg_samples": 0, "agg_cpu_sum": 0.0, "agg_cpu_max": None,
                       "agg_memory_sum": 0.0, "agg_memory_max": None, "agg_disk_max": None, "day_metrics": None,
                       **fields})


def beat(sent_at: datetime, cpu: float = 10.0, **fields) -> dict:
    return {"sent_at": sent_at, "metrics": {"cpu_percent": cpu, "memory_percent": 50.0,
                                            "disks": [{"mount": "/", "percent": 20.0}]},
            "inventory": None, "inventory_hash": None, "usb_policy_ack": None, **fields}


def test_the_usual_heartbeat_touches_no_alert_and_makes_nothing():
    alerts: list = []
    kinds = ""
    assert fold_alerts(alerts, MACHINE, kinds, {}, DAY_START) is kinds and alerts == []


def test_alerts_open_and_close_only_when_their_condition_changes():
    alerts: list = []
    holding = {domain.DISK_ALMOST_FULL: {"disks": [{"mount": "/", "percent": 95.0}]},
               domain.MEMORY_PRESSURE: {"memory_percent": 97.0}}
    kinds = fold_alerts(alerts, MACHINE, "", holding, DAY_START)
    assert kinds == "DISK_ALMOST_FULL,MEMORY_PRESSURE"
    assert [(a.kind, a.details is not None) for a in alerts] == \
        [("DISK_ALMOST_FULL", True), ("MEMORY_PRESSURE", True)]
    assert fold_alerts(alerts, MACHINE, kinds, holding, DAY_START) == kinds and len(alerts) == 2  # still holding
    later = DAY_START + timedelta(minutes=5)
    kinds = fold_alerts(alerts, MACHINE, kinds, {domain.MEMORY_PRESSURE: {"memory_percent": 96.0}}, later)
    assert kinds == "MEMORY_PRESSURE" and alerts[-1] == AlertChange(MACHINE, "DISK_ALMOST_FULL", later, None)
    # a USB acknowledgement closes only the USB kind, whatever else is open
    assert fold_alerts(alerts, MACHINE, "MEMORY_PRESSURE,USB_POLICY_STALE", {}, later, kinds=USB_ALERTS) == \
        "MEMORY_PRESSURE"
    assert alerts[-1] == AlertChange(MACHINE, "USB_POLICY_STALE", later, None)


def test_metrics_fold_into_the_hour_then_its_day_then_the_day_row():
    changes, state = BatchChanges(), fresh_state()
    for minute, cpu in ((5, 10.0), (35, 30.0)):
        moment = DAY_START + timedelta(hours=3, minutes=minute)
        count_heartbeat(changes.history, state, beat(moment, cpu), moment)
    assert open_hour(state) == HourMetrics(2, 20.0, 30.0, 50.0, 50.0, 20.0)
    next_hour = DAY_START + timedelta(hours=4, minutes=1)
    count_heartbeat(changes.history, state, beat(next_hour, 50.0), next_hour)
    assert unpack_metrics(state.day_metrics) == {3: HourMetrics(2, 20.0, 30.0, 50.0, 50.0, 20.0)}
    assert not changes.history and state.agg_hour == DAY_START + timedelta(hours=4)
    late = DAY_START + timedelta(hours=1, minutes=10)  # measured earlier the same day, arriving now
    count_heartbeat(changes.history, state, beat(late, 90.0), next_hour)
    assert set(unpack_metrics(state.day_metrics)) == {1, 3} and state.heartbeats == 4
    next_day = DAY_START + timedelta(days=1, minutes=2)
    count_heartbeat(changes.history, state, beat(next_day), next_day)
    [(key, additions)] = changes.history.days.items()
    assert key == (MACHINE, DAY_START.date()) and set(additions.hours) == {1, 3, 4}
    assert state.day_metrics is None and state.agg_samples == 1


def test_an_inventory_is_written_once_per_change_even_twice_in_one_batch():
    changes, state = BatchChanges(), fresh_state()
    now = DAY_START + timedelta(hours=1)
    first = {"software": {"packages": [{"name": "curl", "version": "8.5"}]}}
    second = {"software": {"packages": [{"name": "curl", "version": "8.6"}]}}
    fold_inventory(changes, state, {}, beat(now, inventory=first), now)
    fold_inventory(changes, state, {}, beat(now, inventory=second), now)
    written = changes.inventories[MACHINE]
    assert (written.version, written.new) == (2, True)  # one INSERT, of the last version
    [additions] = changes.history.days.values()
    assert [record.version for record in additions.changes] == [1, 2]
    assert additions.changes[1].changes["changed"] == {"software/packages[name=curl]/version": ["8.5", "8.6"]}
    fold_inventory(changes, state, {}, beat(now, inventory=second), now)  # unchanged: nothing more
    assert (changes.inventories_written, changes.inventories_skipped) == (2, 1)
    assert changes.software[MACHINE] == {("curl", "8.6")} and not state.need_inventory


def test_a_stored_inventory_is_replaced_not_inserted_and_a_hash_we_do_not_hold_asks_for_it():
    changes, state = BatchChanges(), fresh_state(inventory_hash="c" * 64)
    stored = {MACHINE: InventoryRow(machine_id=MACHINE, hash="c" * 64, document='{"software":{"packages":[]}}',
                                    version=7)}
    now = DAY_START
    fold_inventory(changes, state, stored, beat(now, inventory_hash="d" * 64), now)
    assert state.need_inventory and not changes.inventories
    renamed = {"software": {"packages": []}, "hostname": "x"}
    fold_inventory(changes, state, stored, beat(now, inventory=renamed), now)
    assert (changes.inventories[MACHINE].version, changes.inventories[MACHINE].new) == (8, False)


def test_a_copy_changes_nothing_and_the_first_heartbeat_brings_the_machine_online():
    changes, state = BatchChanges(), fresh_state()
    recent = domain.RecentHeartbeats()
    now = DAY_START + timedelta(hours=2)
    heartbeat = beat(now - timedelta(minutes=1), inventory_hash="a" * 64)
    assert fold_heartbeat(changes, state, recent, None, {}, heartbeat, "m-1", now) == domain.APPLY
    assert changes.came_online == [MACHINE] and state.last_message_id == "m-1"
    assert fold_heartbeat(changes, state, recent, None, {}, heartbeat, "m-1", now) == domain.DUPLICATE
    assert state.heartbeats == 1 and changes.came_online == [MACHINE]
