"""The packed day row (services/devices/history.py): what goes in comes back out, merging
is the same arithmetic whatever the order, and a value this code did not write is refused."""
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.devices.history import (HOURS, ChangeRecord, HistoryBatch, HistoryFormatError, HourMetrics, day_start,
                                      newest_changes,
                                      merge_day, pack_changes, pack_metrics, unpack_changes, unpack_metrics)

DAY = date(2026, 12, 4)
MIDNIGHT = datetime(2026, 12, 4, tzinfo=timezone.utc)
percent = st.one_of(st.none(), st.integers(0, 1000).map(lambda tenths: tenths / 10))
hour_metrics = st.builds(HourMetrics, samples=st.integers(1, 16_383), cpu_avg=percent, cpu_max=percent,
                         memory_avg=percent, memory_max=percent, disk_max=percent)


@given(st.dictionaries(st.integers(0, HOURS - 1), hour_metrics, max_size=HOURS))
def test_metrics_in_tenths_of_a_percent_come_back_as_they_went_in(hours):
    assert unpack_metrics(pack_metrics(hours)) == hours


def test_a_full_day_of_metrics_is_196_bytes_and_no_hour_is_nothing():
    day = {hour: HourMetrics(12, 10.0, 50.0, 40.0, 41.5, 80.0) for hour in range(HOURS)}
    assert len(pack_metrics(day)) == 4 + 8 * HOURS
    assert pack_metrics({}) is None and unpack_metrics(None) == {}


def test_values_are_kept_to_a_tenth_and_within_0_to_100():
    (hour,) = unpack_metrics(pack_metrics({3: HourMetrics(2, 12.34, 120.0, -1.0, None, 99.96)})).values()
    assert hour == HourMetrics(2, 12.3, 100.0, 0.0, None, 100.0)
    (busy,) = unpack_metrics(pack_metrics({0: HourMetrics(70_000, None, None, None, None, None)})).values()
    assert busy.samples == 16_383  # the count saturates rather than wrapping into the values


def test_merging_weighs_averages_by_samples_and_keeps_the_largest_maximum():
    early, late = HourMetrics(3, 10.0, 20.0, None, None, 50.0), HourMetrics(1, 30.0, 90.0, 40.0, 40.0, None)
    assert early.merged(late) == late.merged(early) == HourMetrics(4, 15.0, 90.0, 40.0, 40.0, 50.0)


changes = st.dictionaries(st.sampled_from(["added", "removed", "changed"]),
                          st.dictionaries(st.text(min_size=1, max_size=40), st.text(max_size=20), max_size=4))


@given(st.lists(st.tuples(st.integers(0, 86_399), changes), max_size=12))
def test_a_days_change_records_come_back_in_version_order_to_the_second(found):
    records = [ChangeRecord(version, MIDNIGHT + timedelta(seconds=second), change)
               for version, (second, change) in enumerate(sorted(found, key=lambda pair: pair[0]), start=1)]
    assert unpack_changes(pack_changes(records, DAY), DAY) == records


def test_a_batch_folds_into_what_the_day_row_holds():
    stored_metrics = pack_metrics({5: HourMetrics(6, 10.0, 10.0, None, None, None)})
    stored_changes = pack_changes([ChangeRecord(1, MIDNIGHT + timedelta(hours=1), {})], DAY)
    batch = HistoryBatch()
    batch.add_hours("m", DAY, {5: HourMetrics(2, 30.0, 30.0, None, None, None)})
    batch.add_hours("m", DAY, {5: HourMetrics(2, 30.0, 40.0, None, None, None),
                               6: HourMetrics(1, 1.0, 1.0, None, None, None)})
    upgrade = {"changed": {"software/packages[name=curl]/version": ["7.1", "8.0"]}}
    batch.add_change("m", ChangeRecord(2, MIDNIGHT + timedelta(hours=7, seconds=5), upgrade))
    ((machine, day), additions), = batch.days.items()
    metrics, records = merge_day(stored_metrics, stored_changes, day, additions)
    assert (machine, day) == ("m", DAY)
    assert unpack_metrics(metrics) == {5: HourMetrics(10, 18.0, 40.0, None, None, None),
                                       6: HourMetrics(1, 1.0, 1.0, None, None, None)}
    assert [(record.version, record.changed_at.hour, record.changes) for record in unpack_changes(records, DAY)] == \
        [(1, 1, {}), (2, 7, upgrade)]


def test_changes_on_two_days_go_to_two_rows():
    batch = HistoryBatch()
    batch.add_change("m", ChangeRecord(2, MIDNIGHT - timedelta(seconds=1), {}))
    batch.add_change("m", ChangeRecord(3, MIDNIGHT, {}))
    assert sorted(day for _, day in batch.days) == [DAY - timedelta(days=1), DAY]


@pytest.mark.parametrize("value", [b"\x09" + bytes(10), b"\x01\x01\x00\x00" + bytes(5)])
def test_metrics_this_code_did_not_write_are_refused(value):
    with pytest.raises(HistoryFormatError):
        unpack_metrics(value)


@pytest.mark.parametrize("value", [b"\x07abc", b"\x01not zlib"])
def test_changes_this_code_did_not_write_are_refused(value):
    with pytest.raises(HistoryFormatError):
        unpack_changes(value, DAY)


def test_pages_of_changes_run_across_days_without_skipping_or_repeating():
    """Each day's records newest first, days newest first; a page may end on a day's last
    record, and the next one must still find the older days."""
    by_day = {DAY - timedelta(days=offset): versions for offset, versions in ((0, [5]), (1, [4]), (2, [2, 3]), (5, [1]))}
    rows = [(day, pack_changes([ChangeRecord(v, day_start(day) + timedelta(hours=v), {}) for v in versions], day))
            for day, versions in sorted(by_day.items(), reverse=True)]
    for limit in (1, 2, 3, 10):
        seen, before = [], None
        while True:
            until = before[0] if before else None
            page, more = newest_changes([row for row in rows if until is None or row[0] <= until][:limit + 2],
                                        before, limit)
            seen += [record.version for record in page]
            if not more:
                break
            before = (page[-1].changed_at.date(), page[-1].version)
        assert seen == [5, 4, 3, 2, 1], (limit, seen)
