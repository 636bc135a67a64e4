"""A machine's status and its health bucket come from one rule and the same thresholds
(MACHINE_ONLINE_SECONDS, MACHINE_STALE_SECONDS): a machine counted in a bucket is shown with
that bucket's status, whatever the thresholds (issue 13, item 4)."""
from datetime import datetime, timedelta, timezone

import pytest

from services.devices import domain
from services.gateway.console import catalogue

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=timezone.utc)
THRESHOLDS = [
    domain.StatusThresholds(),  # 5 min / 30 min
    domain.StatusThresholds(timedelta(seconds=60), timedelta(minutes=10)),
    domain.StatusThresholds(timedelta(seconds=2), timedelta(hours=1)),
    domain.StatusThresholds(timedelta(minutes=15), timedelta(hours=2)),
    domain.StatusThresholds(timedelta(hours=1), timedelta(days=2)),  # stale beyond a day
]


def ages(thresholds: domain.StatusThresholds):
    """Every edge, a microsecond either side, and a spread of ages from seconds to weeks."""
    edges = [thresholds.online, thresholds.stale, domain.LONG_SILENCE, timedelta(0)]
    for edge in edges:
        for delta in (-1, 0, 1):
            yield edge + timedelta(microseconds=delta)
    age = timedelta(seconds=1)
    while age < timedelta(days=30):
        yield age
        age *= 1.37


@pytest.mark.parametrize("thresholds", THRESHOLDS, ids=lambda t: f"{t.online}-{t.stale}")
def test_every_bucket_has_the_status_of_the_machines_in_it(thresholds):
    for age in ages(thresholds):
        seen = NOW - age
        status = domain.machine_status(seen, NOW, thresholds)
        bucket = domain.health_bucket(seen, NOW, thresholds)
        assert bucket in domain.HEALTH_BUCKETS
        assert domain.BUCKET_STATUS[bucket] == status, (age, bucket, status)
        assert domain.heartbeat_health(seen, NOW, thresholds) == (status, bucket)
    assert domain.heartbeat_health(None, NOW, thresholds) == ("offline", "never")
    assert domain.BUCKET_STATUS["never"] == "offline"


def test_a_machine_stale_under_short_thresholds_is_in_the_stale_bucket():
    """The report: with MACHINE_ONLINE_SECONDS=60 a machine silent for 2 minutes was shown
    `stale` with the bucket `lt_5m`."""
    short = domain.StatusThresholds(timedelta(seconds=60), timedelta(minutes=30))
    seen = NOW - timedelta(minutes=2)
    assert domain.heartbeat_health(seen, NOW, short) == ("stale", "stale")


@pytest.mark.parametrize("age, bucket", [
    (timedelta(minutes=4, seconds=59), "online"),
    (timedelta(minutes=5), "stale"),
    (timedelta(minutes=30), "offline_lt_24h"),
    (timedelta(hours=24), "offline_gt_24h"),
])
def test_an_edge_belongs_to_the_older_bucket(age, bucket):
    assert domain.health_bucket(NOW - age, NOW, domain.StatusThresholds()) == bucket


def test_stale_beyond_a_day_leaves_the_day_bucket_empty():
    lenient = domain.StatusThresholds(timedelta(hours=1), timedelta(days=2))
    assert domain.heartbeat_health(NOW - timedelta(hours=30), NOW, lenient) == ("stale", "stale")
    assert domain.heartbeat_health(NOW - timedelta(days=3), NOW, lenient) == ("offline", "offline_gt_24h")


def test_the_thresholds_must_be_ordered():
    with pytest.raises(ValueError):
        domain.StatusThresholds(timedelta(minutes=30), timedelta(minutes=5))
    with pytest.raises(ValueError):
        domain.StatusThresholds(timedelta(0), timedelta(minutes=5))


def test_every_bucket_reads_in_portuguese_on_the_health_and_device_pages():
    assert set(domain.BUCKET_STATUS) == set(domain.HEALTH_BUCKETS)
    missing = [key for bucket in domain.HEALTH_BUCKETS
               for key in (f"health.bucket.{bucket}", f"devices.health.{bucket}") if not catalogue.has(key)]
    assert missing == []
