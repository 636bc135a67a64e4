"""The job table and when each job is due, as plain Python (croniter for cron
expressions). No nameko, SQLAlchemy, kombu or werkzeug here.

Ticks are absolute: an interval job is due at every multiple of its interval since the
epoch, a cron job at each time its expression names in its time zone. Whoever leads sees
the same ticks, so a new leader carries on the same rhythm. After downtime, the missed
ticks of a job run once (coalesced): the next tick is always computed from *now*.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter


class JobConfigError(ValueError):
    """A job's configuration is malformed; the message names the job and the key."""


@dataclass(frozen=True)
class Job:
    name: str
    targets: tuple[str, ...]  # "service.method", called in order with the tick time
    interval_seconds: int | None = None
    cron: str | None = None
    timezone: str = "UTC"
    enabled: bool = True
    timeout_seconds: float = 60.0

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after `after` (timezone-aware)."""
        if self.interval_seconds:
            epoch = after.timestamp()
            ticks = math.floor(epoch / self.interval_seconds) + 1
            return datetime.fromtimestamp(ticks * self.interval_seconds, tz=timezone.utc)
        local = after.astimezone(ZoneInfo(self.timezone))
        return croniter(self.cron, local).get_next(datetime).astimezone(timezone.utc)


DEFAULT_JOBS = {job.name: job for job in (
    Job("chat-cleanup", ("tickets.end_inactive_chats",), interval_seconds=60, timeout_seconds=50),
    Job("usb-cleanup", ("devices.expire_stale_usb_policies",), interval_seconds=1800),
    Job("offline-sweep", ("devices.mark_offline",), interval_seconds=60, timeout_seconds=50),
    Job("report-export-runner", ("tickets.run_report_exports",), interval_seconds=900,
        enabled=False, timeout_seconds=600),
    Job("lunch-pause", ("tickets.lunch_pause",), cron="0 12 * * *",
        timezone="America/Sao_Paulo", enabled=False),
    Job("retention-sweep", ("tickets.apply_retention", "devices.apply_retention",
                            "accounts.apply_retention"),
        cron="0 3 * * *", enabled=False, timeout_seconds=600),
    # dead row versions are reclaimed whether or not the database runs autovacuum
    Job("storage-maintenance", ("devices.maintain_storage", "tickets.maintain_storage",
                                "accounts.maintain_storage", "notifications.maintain_storage"),
        interval_seconds=900, timeout_seconds=600),
)}

OVERRIDABLE = {"enabled", "interval_seconds", "cron", "timezone", "timeout_seconds", "targets"}


def configure_jobs(overrides: dict | None) -> dict[str, Job]:
    """The default table with operators' overrides (`SCHEDULER_JOBS`, a JSON object of
    job name -> settings); a new name adds a job, which must then name its targets."""
    jobs = dict(DEFAULT_JOBS)
    if overrides is None:
        return jobs
    if not isinstance(overrides, dict):
        raise JobConfigError("SCHEDULER_JOBS must be a JSON object of job name -> settings")
    for name, settings in overrides.items():
        if not isinstance(settings, dict):
            raise JobConfigError(f"job {name!r}: settings must be an object")
        unknown = set(settings) - OVERRIDABLE
        if unknown:
            raise JobConfigError(f"job {name!r}: unknown keys {sorted(unknown)}")
        base = jobs.get(name) or Job(name, ())
        values = dict(settings)
        if "targets" in values:
            values["targets"] = tuple(values["targets"]) if isinstance(values["targets"], list) else None
        if "cron" in values:
            values.setdefault("interval_seconds", None)
        if "interval_seconds" in values and values["interval_seconds"] is not None:
            values.setdefault("cron", None)
        jobs[name] = validate_job(replace(base, **values))
    return jobs


def validate_job(job: Job) -> Job:
    where = f"job {job.name!r}"
    if not job.targets or not all(isinstance(t, str) and t.count(".") == 1 and all(t.split("."))
                                  for t in job.targets):
        raise JobConfigError(f"{where}: targets must be a list of 'service.method'")
    if (job.interval_seconds is None) == (job.cron is None):
        raise JobConfigError(f"{where}: give exactly one of interval_seconds and cron")
    if job.interval_seconds is not None and (
            not isinstance(job.interval_seconds, int) or isinstance(job.interval_seconds, bool)
            or job.interval_seconds <= 0):
        raise JobConfigError(f"{where}: interval_seconds must be a positive whole number")
    if job.cron is not None and (not isinstance(job.cron, str) or not croniter.is_valid(job.cron)):
        raise JobConfigError(f"{where}: cron {job.cron!r} is not a cron expression")
    try:
        ZoneInfo(job.timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise JobConfigError(f"{where}: unknown time zone {job.timezone!r}") from None
    if not isinstance(job.enabled, bool):
        raise JobConfigError(f"{where}: enabled must be true or false")
    if isinstance(job.timeout_seconds, bool) or not isinstance(job.timeout_seconds, (int, float)) \
            or job.timeout_seconds <= 0:
        raise JobConfigError(f"{where}: timeout_seconds must be a positive number")
    return job


@dataclass
class JobClock:
    """When each enabled job is next due; `due(now)` coalesces missed ticks into one."""

    jobs: dict[str, Job]
    next_due: dict[str, datetime]

    @classmethod
    def starting(cls, jobs: dict[str, Job], now: datetime) -> "JobClock":
        enabled = {name: job for name, job in jobs.items() if job.enabled}
        return cls(enabled, {name: job.next_tick(now) for name, job in enabled.items()})

    def due(self, now: datetime) -> list[tuple[str, datetime]]:
        """(job, tick) for every job whose tick has come; each job at most once, at its
        latest passed tick, however many were missed."""
        ready = []
        for name, job in self.jobs.items():
            if self.next_due[name] <= now:
                latest = self.next_due[name]
                following = job.next_tick(latest)
                while following <= now:  # missed ticks: keep only the latest
                    latest, following = following, job.next_tick(following)
                ready.append((name, latest))
                self.next_due[name] = following
        return ready

