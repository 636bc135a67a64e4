"""`chamados up`: migrate, run the six services as child processes with prefixed logs,
create the first admin, print where everything is; Ctrl-C stops them all.

One `up` per folder: a lock file in the var folder, and the gateway's and metrics ports
checked free, before anything is migrated or started (a second process would bind the same
port silently: eventlet listeners use SO_REUSEPORT, ENGINEERING.md pitfall 18). Each child
restarts on its own back-off schedule; the watch loop never waits for one child's delay."""
from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import eventlet
import requests
from nameko.standalone.rpc import ClusterRpcProxy

from common.config import SERVICE_NAMES, Settings

STOP_GRACE_SECONDS = 10
READY_TIMEOUT_SECONDS = 90
RESTART_DELAYS_SECONDS = (2, 4, 8, 16, 30)  # the last one is the cap
HEALTHY_UPTIME_SECONDS = 60  # up this long, a child's next restart waits the first delay again
WATCH_INTERVAL_SECONDS = 0.5
LOCK_FILE_NAME = "chamados-up.lock"
PORT_PROBE_TIMEOUT_SECONDS = 1.0


class RestartPolicy:
    """One child's restart schedule; pure (no processes, no clock of its own: every call
    gets `now`, a monotonic time), so a test drives it with a fake clock.

    Delays grow through `delays` and stay at the last; once a run lasted `healthy_after`
    seconds, the next exit waits the first delay again."""

    def __init__(self, delays=RESTART_DELAYS_SECONDS, healthy_after: float = HEALTHY_UPTIME_SECONDS):
        self.delays = tuple(delays)
        self.healthy_after = healthy_after
        self.failures = 0  # exits in a row without a healthy run in between
        self.started_at: float | None = None
        self.next_start_at: float | None = None  # set while waiting to restart

    def started(self, now: float) -> None:
        self.started_at = now
        self.next_start_at = None

    def exited(self, now: float) -> float:
        """The child exited at `now`: schedule its restart and return the delay."""
        if self.started_at is not None and now - self.started_at >= self.healthy_after:
            self.failures = 0
        delay = self.delays[min(self.failures, len(self.delays) - 1)]
        self.failures += 1
        self.started_at = None
        self.next_start_at = now + delay
        return delay

    @property
    def waiting(self) -> bool:
        return self.next_start_at is not None

    def due(self, now: float) -> bool:
        return self.next_start_at is not None and now >= self.next_start_at


class Child:
    def __init__(self, name: str, policy: RestartPolicy | None = None):
        self.name = name
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self.policy = policy or RestartPolicy()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chamados.cli", "run", self.name],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=os.environ.copy(), start_new_session=True)
        eventlet.spawn_n(self._relay_output, self.process)

    def _relay_output(self, process) -> None:
        for line in iter(process.stdout.readline, b""):
            sys.stdout.write(f"{self.name:<9} | {line.decode(errors='replace').rstrip()}\n")
            sys.stdout.flush()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.running:
            self.process.terminate()

    def wait_or_kill(self, deadline: float) -> None:
        """An HTTP-only nameko service may not exit on SIGTERM (pitfall 13): kill it."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def say(message: str) -> None:
    print(f"chamados  | {message}", flush=True)


def tend(children, now: float, log: Callable[[str], None] = say) -> None:
    """One pass of the watch loop: schedule the restart of each child that exited, start
    each child whose restart is due. Never sleeps, so one child's back-off delays no other."""
    for child in children:
        if child.policy.waiting:
            if child.policy.due(now):
                child.restarts += 1
                log(f"restarting {child.name} (restart {child.restarts})")
                child.start()
                child.policy.started(now)
        elif not child.running:
            delay = child.policy.exited(now)
            returncode = child.process.returncode if child.process is not None else None
            log(f"{child.name} exited ({returncode}); restarting in {delay}s")


class AlreadyRunning(Exception):
    """Another `chamados up` (or something else) holds what this one needs."""


def acquire_instance_lock(var_dir: Path):
    """An exclusive lock on `var_dir`/chamados-up.lock, with this process's pid written in
    it; keep the returned file open for the life of the process (the kernel releases the
    lock when the process ends, however it ends; children do not inherit it)."""
    var_dir = Path(var_dir)
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / LOCK_FILE_NAME
    handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # held by another process (other errors: raised as they are)
        handle.seek(0)
        pid = handle.read().strip() or "unknown"
        handle.close()
        raise AlreadyRunning(
            f"chamados up is already running from this folder (pid {pid}); stop it first "
            f"(lock: {path})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def port_in_use(host: str, port: int, timeout: float = PORT_PROBE_TIMEOUT_SECONDS) -> bool:
    """Something accepts connections on host:port. (Binding is no test here: eventlet
    listeners use SO_REUSEPORT, so a second bind succeeds silently.)"""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_ports_free(settings: Settings) -> None:
    if port_in_use(settings.gateway_host, settings.gateway_port):
        raise AlreadyRunning(f"port {settings.gateway_port} is already in use; "
                             "set GATEWAY_PORT or stop what uses it")
    for name, port in settings.metrics_ports.items():
        if port_in_use(settings.gateway_host, port):
            raise AlreadyRunning(f"port {port} ({name} metrics) is already in use; "
                                 "set METRICS_PORT_BASE or stop what uses it")


def gateway_url(settings: Settings) -> str:
    return f"http://{settings.gateway_host}:{settings.gateway_port}"


def wait_until_ready(settings: Settings, children) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if not all(child.running for child in children):
            return False
        try:
            if requests.get(f"{gateway_url(settings)}/readyz", timeout=5).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.5)
    return False


def ensure_first_admin(settings: Settings) -> dict:
    with ClusterRpcProxy({"AMQP_URI": settings.amqp_uri}, timeout=30) as rpc:
        return rpc.accounts.ensure_admin(settings.admin_email, settings.admin_password)


def create_admin(settings: Settings) -> int:
    result = ensure_first_admin(settings)
    report_admin(settings, result)
    return 0


NEW_PASSWORD_ENV = "CHAMADOS_NEW_PASSWORD"


def new_password_from(password_file: str | None) -> tuple[str | None, str]:
    """(the password to set, where it came from): the file, else the environment, else
    None (generate one)."""
    if password_file:
        if password_file == "-":
            return sys.stdin.readline().rstrip("\r\n"), "standard input"
        with open(password_file, encoding="utf-8") as handle:
            return handle.read().rstrip("\r\n"), password_file
    if os.environ.get(NEW_PASSWORD_ENV):
        return os.environ[NEW_PASSWORD_ENV], NEW_PASSWORD_ENV
    return None, ""


def reset_password(settings: Settings, email: str, tenant: str | None,
                   password_file: str | None) -> int:
    """`chamados reset-password`: access recovery for a person locked out (a lost admin
    password included), straight on the accounts database, so it needs neither the broker
    nor the services (running or not: they keep nothing of a password in memory)."""
    from common.db import Store, wait_until_reachable
    from common.errors import DomainError
    from services.accounts import domain, recovery, storage

    def fail(message: str) -> int:
        print(f"chamados: reset-password: {message}", file=sys.stderr)
        return 1

    try:
        password, source = new_password_from(password_file)
    except (OSError, UnicodeDecodeError) as exc:
        return fail(f"cannot read the password from {password_file}: {exc}")
    store = Store(settings, "accounts", storage.AccountsRepository, storage.metadata)
    try:
        wait_until_reachable(store.engine, "the accounts database", attempts=3)
        result = recovery.reset_password(store, settings, email, tenant, password)
    except DomainError as exc:
        if exc.code == "email_in_several_tenants":
            return fail(f"{exc.message}; run it again with --tenant SLUG")
        if exc.code == "validation_failed":
            return fail(f"the new password must be {domain.PASSWORD_MIN}-{domain.PASSWORD_MAX} characters")
        return fail(exc.message)
    except Exception as exc:  # the database unreachable, not migrated, …
        first_line = (str(exc).splitlines() or [""])[0]
        return fail(f"the accounts database: {exc.__class__.__name__}: {first_line}")
    finally:
        store.dispose()
    who = f"{result['user']['email']} (tenant {result['tenant']})"
    if result["password"]:
        print(f"new password of {who}: {result['password']}  <- shown once, keep it")
    else:
        print(f"new password of {who}: the one from {source}")
    print(f"sessions ended: {result['revoked_sessions']}")
    return 0


def report_admin(settings: Settings, result: dict) -> None:
    email = result["user"]["email"]
    if not result["created"]:
        say(f"admin: {email} (exists; its password is unchanged)")
    elif result.get("password"):
        say(f"admin: {email} with password {result['password']}  <- shown once, keep it")
    else:
        say(f"admin: {email} with the password from CHAMADOS_ADMIN_PASSWORD")


def prepare(settings: Settings) -> None:
    """Schemas at head and every subscription queue declared, before any service publishes."""
    from common.messaging import declare_bus
    from common.migrate import upgrade

    upgrade(settings)
    say("migrations: every service at head")
    declare_bus(settings.amqp_uri)
    say("bus: exchanges, subscription and dead-letter queues declared")
    from common.broker_users import ensure_agent_user

    agent_user = ensure_agent_user(settings)
    say(f"bus: agents' user {agent_user!r} may publish heartbeats and read its own answers, nothing else"
        if agent_user else "bus: no AGENT_AMQP_PASSWORD: agents' broker user not made (agents use HTTP "
                           "or a URI you give them)")


def up(settings: Settings) -> int:
    try:
        lock = acquire_instance_lock(settings.var_dir)
    except OSError as exc:
        print(f"chamados: cannot take the lock in {settings.var_dir}: {exc}", file=sys.stderr)
        return 1
    except AlreadyRunning as exc:
        print(f"chamados: {exc}", file=sys.stderr)
        return 1
    try:  # the lock is held for the life of `up`
        try:
            check_ports_free(settings)
        except AlreadyRunning as exc:
            print(f"chamados: {exc}", file=sys.stderr)
            return 1
        return _up(settings)
    finally:
        lock.close()


def _up(settings: Settings) -> int:
    where = "SQLite files under " + str(settings.var_dir) if settings.is_sqlite else "PostgreSQL"
    say(f"data: {where}")
    prepare(settings)

    children = [Child(name) for name in SERVICE_NAMES]
    stopping = {"value": False}

    def request_stop(signum, _frame):
        stopping["value"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    for child in children:
        child.start()
        child.policy.started(time.monotonic())

    if not wait_until_ready(settings, children):
        say("the services did not become ready; see their logs above")
        shutdown(children)
        return 1
    report_admin(settings, ensure_first_admin(settings))
    say(f"console: {gateway_url(settings)}/  (open it in a browser; sign in as the admin above)")
    say(f"API: {gateway_url(settings)}/api/  (OpenAPI: {gateway_url(settings)}/api/openapi.json)")
    for name, port in settings.metrics_ports.items():
        say(f"{name} metrics: http://{settings.gateway_host}:{port}/metrics")
    say("ready; Ctrl-C stops every service")

    while not stopping["value"]:
        tend(children, time.monotonic())
        time.sleep(WATCH_INTERVAL_SECONDS)
    shutdown(children)
    return 0


def shutdown(children) -> None:
    say("stopping every service")
    for child in children:
        child.stop()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        child.wait_or_kill(deadline)
    say("stopped")
