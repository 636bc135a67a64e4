"""A machine's history, one row per machine and UTC day (`machine_days`): that day's hourly
metrics and its inventory changes, each packed into one value.

Why packed: a row costs ~60 bytes of overhead and an index entry before it holds anything,
so a row per machine-hour (24 a day) or per change (~6 a day at a 2 % change rate) is most
of what a fleet's history weighs. One row a day holding both keeps growth to what changed
(bench/growth.py measures it).

Metrics: up to 24 hour slots; each holds its sample count and CPU/memory average and maximum
and the fullest disk's maximum, in tenths of a percent (what agents measure: psutil reports
one decimal). Format 1: one format byte, a 24-bit mask of the hours present, then one 64-bit
little-endian word per present hour, in hour order: the sample count in the low 14 bits
(at most 16,383: one every 0.22 s), then the five values, 10 bits each (0–1000; 1023 for
"not measured").

Changes: the day's inventory change records in version order, each
`[version, second of the day, changes]` with `changes` as `chamados_protocol.inventory.diff` writes
it ({"added", "removed", "changed"}, or {} for a machine's first inventory). Format 1: one
format byte, then the records' JSON deflated (raw, level 9) with CHANGES_DICTIONARY as the
preset dictionary: a day's few hundred bytes of records compress together, and the
dictionary supplies the paths they share with every inventory our agent sends (18 % smaller
than zlib alone on bench/fleet.py's upgrades).

Pure: no database, no clock.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import orjson

HOURS = 24
METRICS_FORMAT = 1
CHANGES_FORMAT = 1
NOT_MEASURED = 0x3FF
SAMPLE_BITS, VALUE_BITS = 14, 10
MAX_SAMPLES = (1 << SAMPLE_BITS) - 1
_SLOT = struct.Struct("<Q")
_VALUES = ("cpu_avg", "cpu_max", "memory_avg", "memory_max", "disk_max")  # in this order above the count
# Part of changes format 1: never edit it (records written with it could not be read); a
# better dictionary is a new format number. The vocabulary of agent/chamados_agent/collect.py's inventory
# paths and chamados_protocol.inventory's records, the most frequent last (deflate reaches it cheapest).
CHANGES_DICTIONARY = (
    b'"hardware/serial_numbers[0]"network[name=wlp2s0]/ipv4[0]"partitions[mount=/]/total_bytes'
    b'"disks[name=sda]/size_bytes"os/version"os/build"os/kernel"hostname"'
    b',"vendor":"","version":"'
    b'"software/packages[name=local-tool-1,arch=amd64]/vendor":"local"'
    b'"software/packages[name=lib,arch=all]/version":["'
    b'"software/packages[name=lib,arch=i386]/version":["'
    b'{"added":{},"removed":{},"changed":{"software/packages[name=lib,arch=amd64]/version":["1.0.0-1ubuntu1","')


class HistoryFormatError(ValueError):
    """A stored value this code cannot read (a newer format, or damage)."""


def day_of(moment: datetime) -> date:
    return moment.astimezone(timezone.utc).date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


# metrics -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class HourMetrics:
    """One machine-hour's aggregate; percentages, None when not measured."""
    samples: int
    cpu_avg: float | None = None
    cpu_max: float | None = None
    memory_avg: float | None = None
    memory_max: float | None = None
    disk_max: float | None = None

    def merged(self, other: "HourMetrics") -> "HourMetrics":
        """Both aggregates as one: averages weighted by samples, the larger maximum (late
        heartbeats of an hour may be folded in before or after the rest of it)."""
        samples = self.samples + other.samples

        def average(mine, theirs):
            if mine is None or theirs is None:
                return theirs if mine is None else mine
            return (mine * self.samples + theirs * other.samples) / samples if samples else mine

        def greatest(mine, theirs):
            return theirs if mine is None else mine if theirs is None else max(mine, theirs)

        return HourMetrics(samples, average(self.cpu_avg, other.cpu_avg), greatest(self.cpu_max, other.cpu_max),
                           average(self.memory_avg, other.memory_avg),
                           greatest(self.memory_max, other.memory_max), greatest(self.disk_max, other.disk_max))


def fold_hours(into: dict, added: dict) -> dict:
    """Each added hour merged into the one `into` already holds under the same key (an hour
    of the day, or its start), or put there; `into`, changed."""
    for key, metrics in added.items():
        into[key] = into[key].merged(metrics) if key in into else metrics
    return into


def hour_starts(day: date, packed: bytes | None) -> dict[datetime, HourMetrics]:
    """A day's packed metrics by the start of each hour (UTC)."""
    start = day_start(day)
    return {start + timedelta(hours=hour): metrics for hour, metrics in unpack_metrics(packed).items()}


def _tenths(value: float | None) -> int:
    if value is None:
        return NOT_MEASURED
    return min(max(round(value * 10), 0), 1000)


def _percent(tenths: int) -> float | None:
    return None if tenths == NOT_MEASURED else tenths / 10


def pack_metrics(hours: dict[int, HourMetrics]) -> bytes | None:
    """{hour of the day: aggregate} packed; None when there is no hour."""
    present = sorted(hour for hour in hours if 0 <= hour < HOURS)
    if not present:
        return None
    mask = sum(1 << hour for hour in present)
    body = b"".join(_SLOT.pack(_slot(hours[hour])) for hour in present)
    return bytes([METRICS_FORMAT]) + mask.to_bytes(3, "little") + body


def _slot(metrics: HourMetrics) -> int:
    word = min(max(metrics.samples, 0), MAX_SAMPLES)
    for index, name in enumerate(_VALUES):
        word |= _tenths(getattr(metrics, name)) << (SAMPLE_BITS + VALUE_BITS * index)
    return word


def unpack_metrics(packed: bytes | None) -> dict[int, HourMetrics]:
    if not packed:
        return {}
    if packed[0] != METRICS_FORMAT:
        raise HistoryFormatError(f"metrics format {packed[0]} is not known")
    mask = int.from_bytes(packed[1:4], "little")
    present = [hour for hour in range(HOURS) if mask >> hour & 1]
    if len(packed) != 4 + _SLOT.size * len(present):
        raise HistoryFormatError("metrics value has the wrong length for its hours")
    hours = {}
    value_mask = (1 << VALUE_BITS) - 1
    for index, hour in enumerate(present):
        (word,) = _SLOT.unpack_from(packed, 4 + index * _SLOT.size)
        hours[hour] = HourMetrics(word & MAX_SAMPLES, *(
            _percent(word >> (SAMPLE_BITS + VALUE_BITS * position) & value_mask) for position in range(len(_VALUES))))
    return hours


# inventory changes ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ChangeRecord:
    version: int
    changed_at: datetime
    changes: dict  # {"added", "removed", "changed"}; {} for the first inventory

    @property
    def initial(self) -> bool:
        return self.version == 1 or not self.changes


def pack_changes(records: list[ChangeRecord], day: date) -> bytes | None:
    if not records:
        return None
    start = day_start(day)
    rows = [[record.version, int((record.changed_at - start).total_seconds()), record.changes]
            for record in records]
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, CHANGES_DICTIONARY)
    return bytes([CHANGES_FORMAT]) + deflate.compress(orjson.dumps(rows)) + deflate.flush()


def unpack_changes(packed: bytes | None, day: date) -> list[ChangeRecord]:
    if not packed:
        return []
    if packed[0] != CHANGES_FORMAT:
        raise HistoryFormatError(f"changes format {packed[0]} is not known")
    try:
        inflate = zlib.decompressobj(-15, CHANGES_DICTIONARY)
        rows = orjson.loads(inflate.decompress(packed[1:]) + inflate.flush())
    except (zlib.error, orjson.JSONDecodeError) as exc:
        raise HistoryFormatError(f"changes value cannot be read: {exc}") from None
    start = day_start(day)
    return [ChangeRecord(version, start + timedelta(seconds=second), changes)
            for version, second, changes in rows]


def newest_changes(day_rows, before: tuple | None, limit: int) -> tuple[list[ChangeRecord], bool]:
    """A page of change records, newest first, from (day, packed changes) rows newest first,
    after the cursor (day, version) of the previous page: (page, whether more follow). The
    cursor's own day may have nothing left, so a caller reads limit + 2 day rows (every
    other row with changes holds at least one record)."""
    records: list[ChangeRecord] = []
    for day, packed in day_rows:
        records.extend(record for record in reversed(unpack_changes(packed, day))
                       if before is None or record.version < before[1])
        if len(records) > limit:
            break
    return records[:limit], len(records) > limit


# a batch's additions -------------------------------------------------------------------------

@dataclass
class DayAdditions:
    hours: dict[int, HourMetrics]
    changes: list[ChangeRecord]


class HistoryBatch:
    """What a batch of heartbeats adds to machines' days, gathered so that each day row is
    read and written once per batch."""

    def __init__(self):
        self.days: dict[tuple, DayAdditions] = {}

    def __bool__(self) -> bool:
        return bool(self.days)

    def _day(self, machine_id, moment: datetime) -> DayAdditions:
        return self.days.setdefault((machine_id, day_of(moment)), DayAdditions({}, []))

    def add_hours(self, machine_id, day: date, hours: dict[int, HourMetrics]) -> None:
        fold_hours(self.days.setdefault((machine_id, day), DayAdditions({}, [])).hours, hours)

    def add_change(self, machine_id, record: ChangeRecord) -> None:
        self._day(machine_id, record.changed_at).changes.append(record)


def merge_day(stored_metrics: bytes | None, stored_changes: bytes | None, day: date,
              additions: DayAdditions) -> tuple[bytes | None, bytes | None]:
    """A day row's values with a batch's additions folded in."""
    metrics, changes = stored_metrics, stored_changes
    if additions.hours:
        metrics = pack_metrics(fold_hours(unpack_metrics(stored_metrics), additions.hours))
    if additions.changes:
        records = unpack_changes(stored_changes, day) + additions.changes
        records.sort(key=lambda record: record.version)
        changes = pack_changes(records, day)
    return metrics, changes
