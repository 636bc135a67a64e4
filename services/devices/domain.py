"""Device rules as plain Python: identifier normalisation, OS labels, status and health,
posture alerts, what a heartbeat changes. No nameko, SQLAlchemy, kombu or werkzeug here."""
from __future__ import annotations

import re
import sys
from array import array
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from common.snapshot_version import SnapshotVersion  # noqa: F401  (domain.SnapshotVersion)
from services.devices.history import HourMetrics

# --- identifiers -------------------------------------------------------------------------

PLACEHOLDER_SERIALS = frozenset({
    "tobefilledbyoem", "defaultstring", "0", "none", "na", "null", "notapplicable",
    "notspecified", "systemserialnumber", "chassisserialnumber", "serialnumber",
    "0123456789", "123456789", "1234567890", "oem", "unknown", "invalid",
})
# hypervisors' organisationally unique identifiers: a VM's MAC says nothing about the host
VIRTUAL_MAC_PREFIXES = ("005056", "000c29", "000569", "001c14", "080027", "00155d", "001c42",
                        "00163e", "525400")


def normalize_mac(mac: str) -> str | None:
    """Lower-case hex without separators, or None for what does not identify hardware:
    empty, all-zero, broadcast, multicast, locally administered, virtual."""
    value = re.sub(r"[^0-9a-f]", "", (mac or "").lower())
    if len(value) != 12 or value in ("000000000000", "ffffffffffff"):
        return None
    first_octet = int(value[:2], 16)
    if first_octet & 0b01 or first_octet & 0b10:  # multicast / locally administered
        return None
    if value.startswith(VIRTUAL_MAC_PREFIXES):
        return None
    return value


def normalize_serial(serial: str) -> str | None:
    """Lower-case letters and digits, or None for the placeholders firmware ships with."""
    value = re.sub(r"[^0-9a-z]", "", (serial or "").lower())
    if not value or value in PLACEHOLDER_SERIALS or len(set(value)) == 1:
        return None
    return value


def identifiers(mac_addresses, serial_numbers) -> set[tuple[str, str]]:
    found = {("mac", m) for m in map(normalize_mac, mac_addresses) if m}
    found |= {("serial", s) for s in map(normalize_serial, serial_numbers) if s}
    return found


# --- OS label ----------------------------------------------------------------------------

def os_label(name: str, version: str = "", build: str = "") -> str:
    """"Windows 11 Pro (26100)", never "Windows 11 Pro 11 (26100)"; "macOS 14.5 (23F79)";
    "Ubuntu 22.04.4 LTS". The version is added only when the name does not already say it
    (its major part included); the build goes in parentheses when it adds something."""
    name, version, build = (name or "").strip(), (version or "").strip(), (build or "").strip()
    words = name.split()
    label = name or "Unknown OS"
    if version:
        major = version.split(".")[0]
        says_version = version in name or major in words or (
            name.lower().startswith("windows") and re.match(r"^10\.0(\.|$)", version))
        if not says_version:
            label = f"{label} {version}"
    if build and build not in label:
        label = f"{label} ({build})"
    return label


# --- status ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StatusThresholds:
    """MACHINE_ONLINE_SECONDS and MACHINE_STALE_SECONDS: a machine is online while its last
    heartbeat is younger than `online`, stale while younger than `stale`, offline after."""
    online: timedelta = timedelta(minutes=5)
    stale: timedelta = timedelta(minutes=30)

    def __post_init__(self):
        if not timedelta(0) < self.online < self.stale:
            raise ValueError("the stale threshold must be greater than the online one, both positive")


# Health buckets, in order of age. Their edges are the status thresholds, so every bucket
# belongs to exactly one status (a machine counted `online` in the health snapshot is shown
# online on its page; fixed 5 min / 60 min edges contradicted configured thresholds); only
# the offline machines are split further, by a silence of a day.
HEALTH_BUCKETS = ("online", "stale", "offline_lt_24h", "offline_gt_24h", "never")
BUCKET_STATUS = {"online": "online", "stale": "stale", "offline_lt_24h": "offline",
                 "offline_gt_24h": "offline", "never": "offline"}
LONG_SILENCE = timedelta(hours=24)


def heartbeat_health(last_seen_at: datetime | None, now: datetime,
                     thresholds: StatusThresholds) -> tuple[str, str]:
    """(status, health bucket) from the last heartbeat: the one place both are decided."""
    if last_seen_at is None:
        return "offline", "never"
    age = now - last_seen_at
    if age < thresholds.online:
        return "online", "online"
    if age < thresholds.stale:
        return "stale", "stale"
    return "offline", "offline_lt_24h" if age < LONG_SILENCE else "offline_gt_24h"


def machine_status(last_seen_at: datetime | None, now: datetime,
                   thresholds: StatusThresholds) -> str:
    return heartbeat_health(last_seen_at, now, thresholds)[0]


def health_bucket(last_seen_at: datetime | None, now: datetime,
                  thresholds: StatusThresholds) -> str:
    return heartbeat_health(last_seen_at, now, thresholds)[1]


# --- posture -----------------------------------------------------------------------------

DISK_FULL_PERCENT, MEMORY_FULL_PERCENT = 90.0, 95.0
DISK_ALMOST_FULL, MEMORY_PRESSURE, USB_POLICY_STALE = (
    "DISK_ALMOST_FULL", "MEMORY_PRESSURE", "USB_POLICY_STALE")
METRIC_ALERTS = (DISK_ALMOST_FULL, MEMORY_PRESSURE)


def posture_alerts(metrics: dict) -> dict[str, dict]:
    """The metric-driven alert kinds that hold now, with what raised them."""
    alerts = {}
    full = [d for d in metrics.get("disks") or [] if d["percent"] > DISK_FULL_PERCENT]
    if full:
        alerts[DISK_ALMOST_FULL] = {"disks": [{"mount": d["mount"], "percent": d["percent"]} for d in full]}
    memory = metrics.get("memory_percent")
    if memory is not None and memory > MEMORY_FULL_PERCENT:
        alerts[MEMORY_PRESSURE] = {"memory_percent": memory}
    return alerts


# --- heartbeats ----------------------------------------------------------------------------

def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def fullest_disk(metrics: dict) -> float | None:
    return max((d["percent"] for d in metrics.get("disks") or []), default=None)


def one_sample(metrics: dict) -> HourMetrics:
    """One heartbeat's metrics as an hour's aggregate of one sample."""
    cpu, memory = metrics.get("cpu_percent"), metrics.get("memory_percent")
    return HourMetrics(1, cpu, cpu, memory, memory, fullest_disk(metrics))


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# A copy comes back within minutes of its original being applied (the broker redelivers a
# batch whose consumer died between commit and ack once it notices, behind at most what the
# other consumers had already prefetched; a publisher re-sends an unconfirmed message at
# once). What was applied in the last RECENT_WINDOW is remembered, at least the last
# RECENT_KEEP, at most RECENT_MAX: ~0.5 KB per machine at one heartbeat each 5 minutes,
# more only for the minutes after a burst (a backlog, a spool replay).
RECENT_WINDOW = timedelta(minutes=15)
RECENT_KEEP = 32
RECENT_MAX = 4096


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


class RecentHeartbeats:
    """The `sent_at` of a machine's recently applied heartbeats, with when they were
    applied, in that order: how a redelivered copy is recognised whatever the number of
    consumers and the order in which their transactions commit (a heartbeat is its
    machine's `sent_at`, to the microsecond). Bounded by time and count, 16 bytes an entry."""

    def __init__(self, packed: bytes | None = None, window: timedelta = RECENT_WINDOW,
                 keep: int = RECENT_KEEP, maximum: int = RECENT_MAX):
        self.window_us, self.keep, self.maximum = window // timedelta(microseconds=1), keep, maximum
        pairs = array("q")  # sent_at, applied_at (µs since the epoch), interleaved
        if packed:
            pairs.frombytes(packed[:len(packed) - len(packed) % 16])
            if sys.byteorder != "little":
                pairs.byteswap()
        self._sent, self._applied = pairs[0::2], pairs[1::2]
        self._seen = Counter(self._sent)  # a sent_at may be applied twice (a clock's repeat)

    def __contains__(self, moment: datetime) -> bool:
        return micros(moment) in self._seen

    def __len__(self) -> int:
        return len(self._sent)

    def add(self, moment: datetime, applied_at: datetime) -> None:
        value, now = micros(moment), micros(applied_at)
        self._sent.append(value)
        self._applied.append(now)
        self._seen[value] += 1
        drop = 0
        while len(self._sent) - drop > self.maximum or (
                len(self._sent) - drop > self.keep and self._applied[drop] < now - self.window_us):
            drop += 1
        if drop:
            for gone in self._sent[:drop]:
                self._seen[gone] -= 1
                if not self._seen[gone]:
                    del self._seen[gone]
            del self._sent[:drop], self._applied[:drop]

    def packed(self) -> bytes:
        pairs = array("q", bytes(16 * len(self._sent)))
        pairs[0::2], pairs[1::2] = self._sent, self._applied
        if sys.byteorder != "little":
            pairs.byteswap()
        return pairs.tobytes()


APPLY, LATE, DUPLICATE = "apply", "late", "duplicate"


def heartbeat_role(sent_at: datetime, last_sent_at: datetime | None,
                   recent: RecentHeartbeats) -> str:
    """DUPLICATE: a copy of one already counted; LATE: counted (its metrics fold into the
    hour it was measured), but older than the machine's current state, which it must not
    roll back; APPLY: the machine's newest news."""
    if sent_at in recent or sent_at == last_sent_at:  # a heartbeat is its sent_at
        return DUPLICATE
    if last_sent_at is not None and sent_at <= last_sent_at:
        return LATE
    return APPLY


@dataclass(frozen=True)
class InventoryDecision:
    new_hash: str | None  # set when the inventory changed: replace it, record the change
    need_inventory: bool


def decide_inventory(current_hash: str | None, sent_hash: str | None,
                     computed_hash: str | None) -> InventoryDecision:
    """`computed_hash` when the heartbeat carried the inventory, else the agent's `sent_hash`.
    A hash we do not hold (changed, or never seen) asks the agent for the full inventory."""
    if computed_hash is not None:
        return InventoryDecision(computed_hash if computed_hash != current_hash else None, False)
    return InventoryDecision(None, needs_inventory(current_hash, sent_hash, carries_inventory=False))


def needs_inventory(current_hash: str | None, sent_hash: str | None, carries_inventory: bool) -> bool:
    """Whether to ask the agent for its full inventory: the heartbeat carries none, and its
    hash is not the one we hold (the HTTP route answers this before the heartbeat is folded)."""
    return not carries_inventory and sent_hash != current_hash
