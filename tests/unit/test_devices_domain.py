"""Devices rules, table-driven: identifiers, OS labels, status, posture, inventory decisions."""
from datetime import datetime, timedelta, timezone

import pytest

from services.devices import domain
from services.devices.history import HourMetrics

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("mac, expected", [
    ("00:1A:2B:3C:4D:5E", "001a2b3c4d5e"),
    ("00-1a-2b-3c-4d-5e", "001a2b3c4d5e"),
    ("001A.2B3C.4D5E", "001a2b3c4d5e"),
    ("", None), ("  ", None), ("00:00:00:00:00:00", None), ("FF:FF:FF:FF:FF:FF", None),
    ("02:42:ac:11:00:02", None),   # locally administered (docker)
    ("01:00:5e:00:00:01", None),   # multicast
    ("00:50:56:aa:bb:cc", None),   # VMware
    ("08:00:27:aa:bb:cc", None),   # VirtualBox
    ("00:15:5d:aa:bb:cc", None),   # Hyper-V
    ("00:1a:2b:3c:4d", None),      # too short
    ("00:1a:2b:3c:4d:5e:6f", None),
])
def test_normalize_mac(mac, expected):
    assert domain.normalize_mac(mac) == expected


@pytest.mark.parametrize("serial, expected", [
    ("PF-3ABC12", "pf3abc12"), (" 5CG1234XYZ ", "5cg1234xyz"),
    ("To be filled by O.E.M.", None), ("Default string", None), ("0", None), ("", None),
    ("00000000", None), ("System Serial Number", None), ("N/A", None), ("None", None),
])
def test_normalize_serial(serial, expected):
    assert domain.normalize_serial(serial) == expected


def test_identifiers_keep_only_real_ones():
    assert domain.identifiers(["00:1A:2B:3C:4D:5E", "02:42:ac:11:00:02"], ["Default string", "ABC123"]) == {
        ("mac", "001a2b3c4d5e"), ("serial", "abc123")}


@pytest.mark.parametrize("name, version, build, label", [
    ("Windows 11 Pro", "11", "26100", "Windows 11 Pro (26100)"),
    ("Windows 11 Pro", "10.0.26100", "26100", "Windows 11 Pro (26100)"),
    ("Windows 10 Pro", "10.0.19045", "19045", "Windows 10 Pro (19045)"),
    ("Windows 11 Pro", "", "", "Windows 11 Pro"),
    ("macOS", "14.5", "23F79", "macOS 14.5 (23F79)"),
    ("macOS Sonoma", "14.5", "23F79", "macOS Sonoma 14.5 (23F79)"),
    ("Ubuntu 22.04.4 LTS", "22.04", "", "Ubuntu 22.04.4 LTS"),
    ("Ubuntu", "22.04", "", "Ubuntu 22.04"),
    ("Debian GNU/Linux", "12", "", "Debian GNU/Linux 12"),
    ("Debian GNU/Linux 12 (bookworm)", "12", "", "Debian GNU/Linux 12 (bookworm)"),
    ("Fedora Linux", "40", "6.8.5", "Fedora Linux 40 (6.8.5)"),
    ("", "", "", "Unknown OS"),
])
def test_os_label(name, version, build, label):
    assert domain.os_label(name, version, build) == label


@pytest.mark.parametrize("age, status, bucket", [
    (None, "offline", "never"),
    (timedelta(seconds=10), "online", "online"),
    (timedelta(minutes=4, seconds=59), "online", "online"),
    (timedelta(minutes=5), "stale", "stale"),
    (timedelta(minutes=29), "stale", "stale"),
    (timedelta(minutes=30), "offline", "offline_lt_24h"),
    (timedelta(hours=2), "offline", "offline_lt_24h"),
    (timedelta(days=2), "offline", "offline_gt_24h"),
])
def test_status_and_health_bucket(age, status, bucket):
    seen = None if age is None else NOW - age
    defaults = domain.StatusThresholds()
    assert domain.machine_status(seen, NOW, defaults) == status
    assert domain.health_bucket(seen, NOW, defaults) == bucket


def test_thresholds_are_configurable():
    strict = domain.StatusThresholds(online=timedelta(seconds=30), stale=timedelta(minutes=2))
    assert domain.machine_status(NOW - timedelta(seconds=45), NOW, strict) == "stale"
    assert domain.machine_status(NOW - timedelta(minutes=3), NOW, strict) == "offline"


@pytest.mark.parametrize("metrics, kinds", [
    ({}, set()),
    ({"memory_percent": 95.0, "disks": [{"mount": "/", "percent": 90.0}]}, set()),
    ({"memory_percent": 95.1}, {"MEMORY_PRESSURE"}),
    ({"disks": [{"mount": "/", "percent": 20}, {"mount": "/data", "percent": 91}]}, {"DISK_ALMOST_FULL"}),
    ({"memory_percent": 99, "disks": [{"mount": "C:", "percent": 99}]}, {"MEMORY_PRESSURE", "DISK_ALMOST_FULL"}),
])
def test_posture_alerts(metrics, kinds):
    assert set(domain.posture_alerts(metrics)) == kinds


def test_posture_alert_names_the_full_disk():
    alerts = domain.posture_alerts({"disks": [{"mount": "/", "percent": 20}, {"mount": "/data", "percent": 91}]})
    assert alerts["DISK_ALMOST_FULL"] == {"disks": [{"mount": "/data", "percent": 91}]}


@pytest.mark.parametrize("current, sent, computed, new_hash, need", [
    (None, None, "h1", "h1", False),      # first inventory
    ("h1", None, "h1", None, False),      # the same inventory again: nothing written
    ("h1", None, "h2", "h2", False),      # changed
    ("h1", "h1", None, None, False),      # hash only, matching: one small update
    ("h1", "h2", None, None, True),       # hash only, not ours: ask for the inventory
    (None, "h1", None, None, True),       # never had one
])
def test_decide_inventory(current, sent, computed, new_hash, need):
    decision = domain.decide_inventory(current, sent, computed)
    assert (decision.new_hash, decision.need_inventory) == (new_hash, need)
    # the HTTP route's answer (heartbeat_hint) asks for it exactly when the folding would
    assert domain.needs_inventory(current, sent, carries_inventory=computed is not None) == need


def test_hour_of():
    assert domain.hour_of(datetime(2026, 1, 1, 13, 59, 59, 999, tzinfo=timezone.utc)) == datetime(
        2026, 1, 1, 13, tzinfo=timezone.utc)


# --- heartbeats: copies, late ones, the current state --------------------------------------

def test_a_copy_is_recognised_among_the_recent_heartbeats_whatever_its_order():
    recent = domain.RecentHeartbeats()
    sent = [NOW - timedelta(minutes=m) for m in (0, 10, 5)]  # committed out of order
    for moment in sent:
        assert domain.heartbeat_role(moment, NOW, recent) in (domain.LATE, domain.DUPLICATE)
        recent.add(moment, NOW)
    assert all(domain.heartbeat_role(moment, NOW, recent) == domain.DUPLICATE for moment in sent)
    assert domain.heartbeat_role(NOW - timedelta(minutes=7), NOW, recent) == domain.LATE
    assert domain.heartbeat_role(NOW + timedelta(microseconds=1), NOW, recent) == domain.APPLY
    assert domain.heartbeat_role(NOW, None, domain.RecentHeartbeats()) == domain.APPLY


def test_the_same_sent_at_as_the_current_state_is_a_copy_even_with_no_recent_record():
    assert domain.heartbeat_role(NOW, NOW, domain.RecentHeartbeats()) == domain.DUPLICATE


def test_sent_at_in_another_offset_is_the_same_moment():
    recent = domain.RecentHeartbeats()
    recent.add(NOW, NOW)
    assert NOW.astimezone(timezone(timedelta(hours=-3))) in recent


def test_a_burst_is_remembered_for_the_whole_window_then_forgotten_down_to_the_last_few():
    """A backlog of one machine applied at once (2,000 heartbeats within a second) stays
    recognisable while copies can still come back, then shrinks to what a steady agent needs."""
    recent = domain.RecentHeartbeats(window=timedelta(minutes=15), keep=4, maximum=10_000)
    burst = [NOW - timedelta(days=1) + timedelta(seconds=s) for s in range(2000)]
    for moment in burst:
        recent.add(moment, NOW)
    assert all(moment in recent for moment in burst)
    later = NOW + timedelta(minutes=16)
    fresh = [later + timedelta(seconds=s) for s in range(3)]
    for moment in fresh:
        recent.add(moment, later)
    assert len(recent) == 4
    assert [m in recent for m in burst[-2:]] == [False, True] and all(m in recent for m in fresh)


def test_recent_heartbeats_are_bounded_and_survive_packing():
    recent = domain.RecentHeartbeats(keep=2, maximum=4)
    moments = [NOW + timedelta(seconds=s, microseconds=s) for s in range(6)]
    for moment in moments:
        recent.add(moment, NOW)
    assert len(recent) == 4
    assert len(recent.packed()) == 64
    unpacked = domain.RecentHeartbeats(recent.packed(), keep=2, maximum=4)
    assert [m in unpacked for m in moments] == [False, False, True, True, True, True]
    assert moments[0] not in domain.RecentHeartbeats(b"")
    assert len(domain.RecentHeartbeats(recent.packed() + b"\x01\x02")) == 4  # torn tail ignored


def test_a_sent_at_applied_twice_stays_known_until_both_are_forgotten():
    recent = domain.RecentHeartbeats(keep=1, maximum=2)
    recent.add(NOW, NOW)
    recent.add(NOW, NOW)
    recent.add(NOW + timedelta(seconds=1), NOW)
    assert NOW in recent
    recent.add(NOW + timedelta(seconds=2), NOW)
    assert NOW not in recent


def test_one_heartbeat_is_an_hour_of_one_sample():
    sample = domain.one_sample({"cpu_percent": 12.5, "memory_percent": None,
                                "disks": [{"mount": "/", "percent": 40.0}, {"mount": "/d", "percent": 91.0}]})
    assert sample == HourMetrics(samples=1, cpu_avg=12.5, cpu_max=12.5, memory_avg=None, memory_max=None,
                                 disk_max=91.0)

