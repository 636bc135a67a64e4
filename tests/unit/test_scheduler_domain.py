"""The job table and its clock: absolute ticks, time zones, coalescing, validation."""
from datetime import datetime, timedelta, timezone

import pytest

from services.scheduler.domain import DEFAULT_JOBS, Job, JobClock, JobConfigError, configure_jobs

T0 = datetime(2026, 11, 28, 14, 59, 30, tzinfo=timezone.utc)


def test_defaults_match_the_product():
    jobs = configure_jobs(None)
    assert jobs["chat-cleanup"].interval_seconds == 60 and jobs["chat-cleanup"].enabled
    assert jobs["usb-cleanup"].interval_seconds == 1800
    assert jobs["offline-sweep"].targets == ("devices.mark_offline",)
    assert not jobs["report-export-runner"].enabled and jobs["report-export-runner"].interval_seconds == 900
    assert not jobs["lunch-pause"].enabled and jobs["lunch-pause"].timezone == "America/Sao_Paulo"
    assert not jobs["retention-sweep"].enabled and jobs["retention-sweep"].cron == "0 3 * * *"


def test_interval_ticks_are_absolute():
    job = Job("j", ("a.b",), interval_seconds=60)
    assert job.next_tick(T0) == datetime(2026, 11, 28, 15, 0, tzinfo=timezone.utc)
    assert job.next_tick(datetime(2026, 11, 28, 15, 0, tzinfo=timezone.utc)) == datetime(
        2026, 11, 28, 15, 1, tzinfo=timezone.utc)


def test_lunch_is_noon_in_sao_paulo():
    tick = DEFAULT_JOBS["lunch-pause"].next_tick(T0)
    assert tick == datetime(2026, 11, 28, 15, 0, tzinfo=timezone.utc)  # 12:00 at UTC-3


def test_missed_ticks_coalesce_into_one_run():
    clock = JobClock.starting({"j": Job("j", ("a.b",), interval_seconds=60)}, T0)
    assert clock.due(T0) == []
    later = T0 + timedelta(minutes=10, seconds=5)  # ten ticks missed
    due = clock.due(later)
    assert due == [("j", datetime(2026, 11, 28, 15, 9, tzinfo=timezone.utc))]
    assert clock.due(later) == []  # not again until the next tick
    assert clock.next_due["j"] == datetime(2026, 11, 28, 15, 10, tzinfo=timezone.utc)


def test_disabled_jobs_never_come_due():
    clock = JobClock.starting(configure_jobs(None), T0)
    names = {name for name, _ in clock.due(T0 + timedelta(days=2))}
    assert names == {"chat-cleanup", "usb-cleanup", "offline-sweep", "storage-maintenance"}


def test_overrides_enable_change_and_add_jobs():
    jobs = configure_jobs({"lunch-pause": {"enabled": True},
                           "chat-cleanup": {"interval_seconds": 30},
                           "nightly": {"cron": "0 1 * * *", "targets": ["tickets.run_report_exports"]}})
    assert jobs["lunch-pause"].enabled
    assert jobs["chat-cleanup"].interval_seconds == 30
    assert jobs["nightly"].cron == "0 1 * * *" and jobs["nightly"].interval_seconds is None
    switched = configure_jobs({"chat-cleanup": {"cron": "*/5 * * * *"}})["chat-cleanup"]
    assert switched.cron == "*/5 * * * *" and switched.interval_seconds is None


@pytest.mark.parametrize("overrides, message", [
    ([], "JSON object"),
    ({"x": 1}, "settings must be an object"),
    ({"chat-cleanup": {"every": 5}}, "unknown keys"),
    ({"new-job": {"interval_seconds": 5}}, "targets"),
    ({"chat-cleanup": {"interval_seconds": 0}}, "positive whole number"),
    ({"chat-cleanup": {"interval_seconds": True}}, "positive whole number"),
    ({"chat-cleanup": {"cron": "every day"}}, "not a cron expression"),
    ({"lunch-pause": {"timezone": "Mars/Olympus"}}, "unknown time zone"),
    ({"chat-cleanup": {"enabled": "yes"}}, "true or false"),
    ({"chat-cleanup": {"timeout_seconds": -1}}, "positive number"),
    ({"chat-cleanup": {"targets": ["no-dot"]}}, "service.method"),
    ({"chat-cleanup": {"targets": "tickets.x"}}, "service.method"),
])
def test_bad_overrides_name_the_problem(overrides, message):
    with pytest.raises(JobConfigError, match=message):
        configure_jobs(overrides)
