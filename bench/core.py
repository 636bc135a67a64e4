"""What every bench shares: its own database and vhost with the services as processes
(tests/harness.py), watching a drain with deadlines, peak RSS, metrics scrapes, the result
file and its plot."""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
import requests
from sqlalchemy.engine import make_url

from common.config import ROOT, SERVICE_NAMES
from tests.harness import PostgresServer, RabbitVhost, System, free_port_block

RESULTS_DIR = ROOT / "bench" / "results"


def log(bench: str, message: str) -> None:
    print(f"bench {bench:<8} | {message}", file=sys.stderr, flush=True)


class BenchFailure(Exception):
    """The code under measurement did not finish what was asked (stalled, lost messages,
    died): a result to report, not a bug in the bench."""


# --- identity of the measured code -----------------------------------------------------

def commit_id() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=30).stdout.strip()
    try:
        head = git("rev-parse", "--short", "HEAD") or "unknown"
        changed = [line for line in git("status", "--porcelain").splitlines()
                   if not line[3:].startswith("bench/results/")]
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if changed else "")


def code_fingerprint() -> str:
    """Changes with any edit of the checked-out code (committed or not), to tell whether the
    code changed while a bench ran (the services run whatever is on disk when they start)."""
    import hashlib
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, timeout=30).stdout
        diff = subprocess.run(["git", "diff", "HEAD", "--", ".", ":(exclude)bench/results"], cwd=ROOT,
                              capture_output=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return hashlib.sha256(head + diff).hexdigest()[:12]


# --- targets ----------------------------------------------------------------------------

OPS = {">=": lambda m, g: m >= g, ">": lambda m, g: m > g, "<": lambda m, g: m < g,
       "<=": lambda m, g: m <= g, "==": lambda m, g: m == g}


def target(name: str, op: str | None, goal: float | None, measured, unit: str) -> dict:
    """One line of `targets`; `op=None` is a figure to report without a goal (met: null)."""
    if op is None:
        return {"name": name, "goal": "report", "measured": _round(measured), "unit": unit,
                "met": None}
    met = None if measured is None else bool(OPS[op](measured, goal))
    return {"name": name, "goal": f"{op} {goal:g}", "measured": _round(measured), "unit": unit,
            "met": bool(met)}


def _round(value):
    if isinstance(value, float):
        return round(value, 4 if abs(value) < 10 else 1)
    return value


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


# --- infrastructure ---------------------------------------------------------------------

class Stack:
    """One bench's own PostgreSQL database and RabbitMQ vhost, migrated (schemas and the
    bus declared by `chamados migrate`), and its service processes; all removed on exit."""

    def __init__(self, bench: str, workdir: Path, extra_env: dict | None = None):
        self.bench = bench
        self.workdir = Path(workdir)
        # what production pays for a password (the test systems' cheap argon2 would flatter sign-ins)
        self.extra_env = {"PASSWORD_HASH_PROFILE": "rfc9106-low-memory", **(extra_env or {})}
        self.postgres = self.vhost = self.system = None
        self.database_name = self.database_url = None
        self._conn = None
        self._replicas = 0

    def __enter__(self) -> "Stack":
        try:
            self.postgres = PostgresServer.find()
            self.database_name, self.database_url = self.postgres.create_database()
            self.vhost = RabbitVhost.create()
            self.system = System(database_url=self.database_url, amqp_uri=self.vhost.amqp_uri,
                                 workdir=self.workdir, services=(), extra_env=self.extra_env)
            self.workdir.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            migrated = self.system.cli("migrate")
            if migrated.returncode != 0:
                raise RuntimeError("chamados migrate failed:\n" + migrated.stdout[-2000:] +
                                   migrated.stderr[-4000:])
            log(self.bench, f"database {self.database_name}, vhost {self.vhost.name}, migrated in "
                            f"{time.monotonic() - started:.1f}s")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.system is not None:
            self.stop_all()
        if self._conn is not None:
            self._conn.close()
        if self.vhost is not None:
            try:
                self.vhost.delete()
            except requests.RequestException:
                pass
        if self.database_name is not None:
            self.postgres.drop_database(self.database_name)

    @property
    def amqp_uri(self) -> str:
        return self.vhost.amqp_uri

    @property
    def dsn(self) -> str:
        """libpq form of the database URL (for psycopg)."""
        return make_url(self.database_url).set(drivername="postgresql").render_as_string(
            hide_password=False)

    def sql(self, query: str, params=None):
        """One statement on an autocommit connection of the bench's own; all rows."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True)
        with self._conn.cursor() as cursor:
            cursor.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def scalar(self, query: str, params=None):
        rows = self.sql(query, params)
        return rows[0][0] if rows else None

    # service processes ---------------------------------------------------------------

    def start(self, service: str, ready_timeout: float = 60) -> subprocess.Popen:
        self.system.start_service(service)
        process = self.system.processes[service]
        self.wait_ready(service, self.system.metrics_url(service), process, ready_timeout)
        return process

    def start_replica(self, service: str, ready_timeout: float = 60) -> tuple[str, subprocess.Popen, str]:
        """Another process of `service`, with metrics ports of its own (so each replica's
        counters can be read; a shared port would answer for either, pitfall 18)."""
        self._replicas += 1
        key = f"{service}#{self._replicas}"
        base = free_port_block(len(SERVICE_NAMES))
        env = dict(self.system.env, METRICS_PORT_BASE=str(base))
        log_file = open(self.workdir / f"{service}-{self._replicas}.log", "ab")
        process = subprocess.Popen([sys.executable, "-m", "chamados.cli", "run", service], env=env,
                                   cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        log_file.close()
        self.system.processes[key] = process
        url = f"http://127.0.0.1:{base + SERVICE_NAMES.index(service)}/metrics"
        self.wait_ready(key, url, process, ready_timeout)
        return key, process, url

    def wait_ready(self, name: str, url: str, process: subprocess.Popen, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchFailure(f"{name} exited ({process.returncode}):\n{self.log_tail(name)}")
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise BenchFailure(f"{name} not ready in {timeout:.0f}s:\n{self.log_tail(name)}")

    def stop(self, *names: str, grace: float = 15) -> None:
        """SIGTERM to each (at once), then wait; kill what outlives `grace` (pitfall 13)."""
        processes = [self.system.processes.pop(name) for name in names if name in self.system.processes]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        self.stop(*list(self.system.processes))

    def log_tail(self, name: str, size: int = 3000) -> str:
        service, _, replica = name.partition("#")
        path = self.workdir / (f"{service}-{replica}.log" if replica else f"{service}.log")
        return path.read_text(errors="replace")[-size:] if path.exists() else ""


# --- watching a drain -------------------------------------------------------------------

@dataclass
class Drain:
    """Samples (seconds since the consumer was started, count applied) of one drain."""

    expected: int
    status: str = "running"  # done | settled (queue empty, some never applied) | stalled | deadline | died
    samples: list = field(default_factory=list)
    detail: str = ""

    @property
    def applied(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    @property
    def finished_at(self) -> float | None:
        """When the count last moved (the last batch's commit)."""
        final = self.applied
        return next((t for t, c in self.samples if c == final), None) if final else None

    @property
    def rate(self) -> float | None:
        """Steady rate: from the first commit seen to the last, so process start-up and the
        first batch count for neither the service nor its baseline."""
        moved = [(t, c) for t, c in self.samples if c > 0]
        if len(moved) < 2:
            return self.rate_wall
        (t1, c1), t2, c2 = moved[0], self.finished_at, self.applied
        if c2 - c1 < max(1, self.expected // 10) or t2 <= t1:
            return self.rate_wall
        return (c2 - c1) / (t2 - t1)

    @property
    def rate_wall(self) -> float | None:
        """Everything from the consumer's start (process start-up included)."""
        t = self.finished_at
        return self.applied / t if self.applied and t else None

    def summary(self) -> dict:
        return {"status": self.status, "expected": self.expected, "applied": self.applied,
                "seconds": _round(self.finished_at), "rate_per_s": _round(self.rate),
                "rate_wall_per_s": _round(self.rate_wall), "detail": self.detail}


def watch_drain(count, expected: int, *, started: float, alive=None, stall_seconds: float = 30,
                deadline_seconds: float = 900, interval: float = 0.05,
                settle=None) -> Drain:
    """Poll `count()` (applied so far, from 0) until it reaches `expected`; stop with a
    status when nothing moved for `stall_seconds` (or `settle()` says the queue is empty and
    nothing moved for three times the longest pause between commits seen, at least 3 s), at
    the deadline, or when `alive()` is false."""
    drain = Drain(expected)
    last, last_move, longest_gap = -1, time.monotonic(), 0.0
    deadline = started + deadline_seconds
    while True:
        now = time.monotonic()
        value = count()
        drain.samples.append((now - started, value))
        if value != last:
            if last > 0:
                longest_gap = max(longest_gap, now - last_move)
            last, last_move = value, now
        if value >= expected:
            drain.status = "done"
            return drain
        if alive is not None and not alive():
            drain.status, drain.detail = "died", f"the consumer exited with {value}/{expected} applied"
            return drain
        if now - last_move > stall_seconds:
            drain.status, drain.detail = "stalled", f"no progress for {stall_seconds:.0f}s at {value}/{expected}"
            return drain
        if settle is not None and value > 0 and now - last_move > max(3.0, 3 * longest_gap) and settle():
            drain.status, drain.detail = "settled", f"queue empty at {value}/{expected}"
            return drain
        if now > deadline:
            drain.status, drain.detail = "deadline", f"{deadline_seconds:.0f}s passed at {value}/{expected}"
            return drain
        time.sleep(interval)


class PeakRss(threading.Thread):
    """Samples a process's resident set (with any children) every `interval` seconds;
    kills it past `kill_above` bytes so a runaway cannot take the machine."""

    def __init__(self, pid: int, interval: float = 0.02, kill_above: int | None = None):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.interval, self.kill_above = interval, kill_above
        self.peak = self.first = 0
        self.killed = False
        self._stop_event = threading.Event()

    def rss(self) -> int:
        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                value = self.rss()
            except psutil.Error:
                return
            self.first = self.first or value
            self.peak = max(self.peak, value)
            if self.kill_above and value > self.kill_above:
                self.killed = True
                self.process.kill()
                return
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join(timeout=5)
        return self.peak


class CpuMeter:
    """CPU seconds spent by each part of the system between two readings: the named
    processes (with their children), the PostgreSQL backends serving `database`, the
    RabbitMQ nodes (beam.smp) and the whole machine. `percent` turns two readings into % of
    one core: a Python service is saturated near 100 (eventlet runs its greenlets on one
    core), the machine at cpus x 100 — what names the resource that limits a route."""

    def __init__(self, processes: dict, database: str):
        self.processes = {name: psutil.Process(pid) for name, pid in processes.items()}
        self.database = database

    @staticmethod
    def _seconds(process) -> float:
        try:
            times = process.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return 0.0

    def reading(self) -> dict:
        parts = {}
        for name, process in self.processes.items():
            try:
                family = [process, *process.children(recursive=True)]
            except psutil.Error:
                family = []
            parts[name] = sum(self._seconds(p) for p in family)
        postgres, broker = {}, {}
        for process in psutil.process_iter(["name", "cmdline"]):
            command = " ".join(process.info["cmdline"] or ())
            if process.info["name"] == "postgres" and f" {self.database} " in command:
                postgres[process.pid] = self._seconds(process)
            elif process.info["name"] == "beam.smp":
                broker[process.pid] = self._seconds(process)
        busy = psutil.cpu_times()
        return {"wall": time.monotonic(), "parts": parts, "postgres": postgres, "broker": broker,
                "machine": sum(busy) - busy.idle - getattr(busy, "iowait", 0.0)}

    @staticmethod
    def percent(before: dict, after: dict) -> dict:
        """{part: % of one core} between two readings; `machine` is every core together."""
        wall = max(after["wall"] - before["wall"], 1e-9)
        used = {name: after["parts"][name] - before["parts"].get(name, 0.0) for name in after["parts"]}
        for group in ("postgres", "broker"):
            used[group] = sum(seconds - before[group].get(pid, 0.0) for pid, seconds in after[group].items())
        used["machine"] = after["machine"] - before["machine"]
        return {name: round(100 * seconds / wall, 1) for name, seconds in used.items()}


def saturated(cpu: dict, cpus: int, rate: float | None = None, per: str = "request") -> str:
    """The resource that limits a run, from CpuMeter.percent: every core busy, or the busiest
    single-threaded process near one full core; with the run's `rate` (`per`s a second), the
    busiest part's CPU milliseconds per one."""
    parts = {name: value for name, value in cpu.items() if name != "machine"}
    busiest = max(parts, key=parts.get) if parts else None
    machine = cpu.get("machine", 0.0)
    found = f"{busiest} at {parts[busiest]:.0f} % of a core" if busiest else "no process measured"
    if busiest and rate:
        found += f", {10 * parts[busiest] / rate:.2f} ms of CPU per {per}"
    if machine >= 0.9 * 100 * cpus:
        return f"the machine's {cpus} cores ({machine:.0f} % of {100 * cpus} %); busiest: {found}"
    if busiest and parts[busiest] >= 70:
        # one eventlet thread that also waits on its database and broker round trips tops out
        # below 100 % (measured: 70-83 % for the tickets process while it limited every route)
        return f"{found}: its one thread is the limit (machine {machine:.0f} % of {100 * cpus} %)"
    return f"nothing saturated: busiest {found}, machine {machine:.0f} % of {100 * cpus} % (latency-bound)"


def mean_percent(readings: list[dict]) -> dict:
    """CpuMeter.percent readings of several runs, part by part, averaged."""
    parts = {name for reading in readings for name in reading}
    return {name: round(sum(r.get(name, 0.0) for r in readings) / len(readings), 1) for name in sorted(parts)} \
        if readings else {}


def counters(url: str, metric: str, label: str) -> dict:
    """{label value: number} of one counter family in a Prometheus text scrape ({} if the
    process does not answer or has no such family)."""
    try:
        text = requests.get(url, timeout=5).text
    except requests.RequestException:
        return {}
    found = {}
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            match = re.search(r'%s="([^"]*)"' % label, line)
            if match:
                found[match.group(1)] = found.get(match.group(1), 0.0) + float(line.rsplit(" ", 1)[1])
    return found


# --- results ----------------------------------------------------------------------------

def write_result(out_dir: Path, result: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result['bench']}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    try:
        from bench.plot import plot
        plot(result, out_dir / f"{result['bench']}.png")
    except Exception as exc:  # a missing plot never hides the figures
        log(result["bench"], f"plot failed: {exc.__class__.__name__}: {exc}")
    return path


def environment() -> dict:
    return {"python": sys.version.split()[0], "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2 ** 30, 1),
            "load_avg_1m": round(os.getloadavg()[0], 2)}
