"""scheduler: the in-database crons, replaced. One replica leads (a PostgreSQL advisory
lock, or a file lock on the embedded default); it fires each due job once per tick, never
while the same job still runs, and coalesces missed ticks. Nothing is stored per run:
outcomes go to metrics and one log line."""
from __future__ import annotations

import fcntl
import logging
import time
from datetime import datetime

import eventlet
import orjson
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
from nameko.extensions import DependencyProvider, Entrypoint, SharedExtension
from nameko.standalone.rpc import ClusterRpcProxy
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import text

from common.config import ConfigError, Settings
from common.db import Database, create_service_engine, utcnow
from common.errors import Conflict, DomainError, NotFound, ValidationFailed
from common.service_base import ServiceBase, rpc
from services.scheduler import domain

log = logging.getLogger(__name__)

JOB_RUNS = Counter("chamados_job_runs_total", "Scheduler job runs by outcome",
                   ["job", "outcome"])  # success | failure | timeout | overlap_skipped
JOB_DURATION = Histogram("chamados_job_duration_seconds", "Scheduler job run time", ["job"],
                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600))
JOB_LAST_SUCCESS = Gauge("chamados_job_last_success_timestamp_seconds",
                         "When each job last succeeded (Unix time)", ["job"])
JOB_INTERVAL = Gauge("chamados_job_interval_seconds",
                     "Seconds between a job's ticks (cron jobs: the current gap)", ["job"])
LEADER = Gauge("chamados_scheduler_leader", "1 while this replica leads the scheduler")

LEADER_LOCK_KEY = 7305871046  # any fixed bigint: "the Chamados scheduler's leader"


class Leadership:
    """Held for as long as this process keeps its lock; a dead leader's lock is freed by
    PostgreSQL (its session ends) or the kernel (its file closes), so another replica takes
    over on its next tick."""

    def __init__(self, settings):
        self.settings = settings
        self.engine = None if settings.is_sqlite else create_service_engine(settings, "scheduler")
        self.connection = None
        self.lock_file = None

    def hold(self) -> bool:
        try:
            return self._hold_file() if self.engine is None else self._hold_advisory()
        except Exception as exc:  # database gone: not leading until it is back
            log.warning("scheduler leadership check failed: %s", exc)
            self.release()
            return False

    def _hold_advisory(self) -> bool:
        if self.connection is not None:
            self.connection.execute(text("SELECT 1"))
            return True
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LEADER_LOCK_KEY}).scalar():
            self.connection = connection
            return True
        connection.close()
        return False

    def _hold_file(self) -> bool:
        if self.lock_file is not None:
            return True
        self.settings.var_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.settings.var_dir / "scheduler.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self.lock_file = handle
        return True

    def release(self) -> None:
        if self.connection is not None:
            try:
                self.connection.invalidate()  # never hand a lock-holding session back to the pool
            except Exception:
                pass
            self.connection = None
        if self.lock_file is not None:
            self.lock_file.close()
            self.lock_file = None


class JobTable(SharedExtension):
    """The configured jobs and which of them run now in this process: one instance per
    container, shared by the ticker and the on-demand RPC, so neither overlaps the other."""

    def setup(self):
        raw = Settings.from_mapping(self.container.config).scheduler_jobs
        try:
            overrides = orjson.loads(raw) if isinstance(raw, str) and raw.strip() else raw or None
            self.jobs = domain.configure_jobs(overrides)
        except (orjson.JSONDecodeError, domain.JobConfigError) as exc:
            raise ConfigError(f"SCHEDULER_JOBS: {exc}") from None
        self.running: set[str] = set()
        self.last_runs: dict[str, dict] = {}  # this replica's memory: metrics hold the rest
        self.amqp_uri = self.container.config["AMQP_URI"]
        for name, job in self.jobs.items():
            if job.interval_seconds:
                JOB_INTERVAL.labels(name).set(job.interval_seconds)
            for outcome in ("success", "failure", "timeout", "overlap_skipped"):
                JOB_RUNS.labels(name, outcome)  # zeros, so rates and alerts see no gap


class Jobs(DependencyProvider):
    table = JobTable()

    def get_dependency(self, worker_ctx):
        return self.table


class JobTicker(Entrypoint):
    """Once a second: lead or follow; as leader, start a worker for every due job that is
    not already running."""

    table = JobTable()

    def setup(self):
        self.leadership = Leadership(Settings.from_mapping(self.container.config))
        self._running = False

    def start(self):
        self._running = True
        self.container.spawn_managed_thread(self._loop)

    def stop(self):
        self._running = False
        self.leadership.release()
        LEADER.set(0)

    def kill(self):
        self.stop()

    def _loop(self):
        clock = None
        while self._running:
            now = utcnow()
            if self.leadership.hold():
                if clock is None:
                    log.info("this replica now leads the scheduler")
                    clock = domain.JobClock.starting(self.table.jobs, now)
                LEADER.set(1)
                for name, tick in clock.due(now):
                    self._fire(name, tick)
            elif clock is not None:
                log.info("this replica no longer leads the scheduler")
                clock = None
                LEADER.set(0)
            eventlet.sleep(1.0 - (time.time() % 1.0) + 0.01)  # just after each second

    def _fire(self, name: str, tick: datetime) -> None:
        if name in self.table.running:
            JOB_RUNS.labels(name, "overlap_skipped").inc()
            log.warning("job %s still running at its %s tick: not started again", name, tick.isoformat())
            return
        self.table.running.add(name)
        self.container.spawn_worker(self, (name, tick.isoformat()), {},
                                    handle_result=lambda worker_ctx, result, exc_info: self._done(
                                        name, result, exc_info))

    def _done(self, name, result, exc_info):
        self.table.running.discard(name)
        return result, exc_info


job_ticker = JobTicker.decorator


class Service(ServiceBase):
    name = "scheduler"
    db = Database()
    jobs = Jobs()

    @job_ticker
    def on_tick(self, name: str, tick: str) -> dict:
        return self._run(name, tick)

    @rpc
    def run_job_now(self, name: str, options: dict | None = None) -> dict:
        """What `POST /api/cron/<job>` asks: run it now, unless it is already running.
        `{"dry_run": true}` is for the retention sweep: count what is past policy, delete
        nothing."""
        if not isinstance(name, str) or name not in self.jobs.jobs:
            raise NotFound(f"no job named {name!r}", code="job_not_found")
        options = options or {}
        if set(options) - {"dry_run"} or (options and name != "retention-sweep"):
            raise ValidationFailed("only retention-sweep takes dry_run",
                                   details={"fields": {"dry_run": ["retention-sweep only"]}})
        if name in self.jobs.running:
            raise Conflict(f"job {name} is running", code="job_running")
        self.jobs.running.add(name)
        try:
            return self._run(name, utcnow().isoformat(), options)
        finally:
            self.jobs.running.discard(name)

    @rpc
    def list_jobs(self) -> list:
        return [{"name": job.name, "targets": list(job.targets), "enabled": job.enabled,
                 "interval_seconds": job.interval_seconds, "cron": job.cron,
                 "timezone": job.timezone, "timeout_seconds": job.timeout_seconds,
                 "running": job.name in self.jobs.running,
                 "last_run": self.jobs.last_runs.get(job.name)}
                for job in self.jobs.jobs.values()]

    def _run(self, name: str, tick: str, options: dict | None = None) -> dict:
        """Each target in turn, with the job's deadline; one log line, metrics, no row."""
        job = self.jobs.jobs[name]
        started = time.perf_counter()
        results, outcome = {}, "success"
        deadline = time.monotonic() + job.timeout_seconds
        try:
            with ClusterRpcProxy({"AMQP_URI": self.jobs.amqp_uri},
                                 timeout=job.timeout_seconds) as cluster:
                for target in job.targets:
                    service, method = target.split(".")
                    with eventlet.Timeout(max(0.1, deadline - time.monotonic())):
                        results[target] = getattr(getattr(cluster, service), method)(tick, **(options or {}))
        except (eventlet.Timeout, RpcTimeout):
            outcome = "timeout"
        except (DomainError, RemoteError, UnknownService, OSError) as exc:
            outcome, results["error"] = "failure", f"{exc.__class__.__name__}: {exc}"
        duration = time.perf_counter() - started
        JOB_RUNS.labels(name, outcome).inc()
        JOB_DURATION.labels(name).observe(duration)
        if outcome == "success":
            JOB_LAST_SUCCESS.labels(name).set(time.time())
        self.jobs.last_runs[name] = {"tick": tick, "outcome": outcome,
                                     "finished_at": utcnow().isoformat(),
                                     "duration_seconds": round(duration, 3)}
        (log.info if outcome == "success" else log.warning)(
            "job %s tick %s: %s in %.3fs %s", name, tick, outcome, duration,
            orjson.dumps(results, default=str).decode()[:500])
        return {"job": name, "tick": tick, "outcome": outcome, "duration_seconds": round(duration, 3),
                "results": results}
