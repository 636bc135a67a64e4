"""Real infrastructure for tests: a PostgreSQL database and a RabbitMQ vhost per run, the
services as processes, and an HTTP client for the gateway. Nothing here is mocked."""
from __future__ import annotations

import getpass
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests
from kombu import Connection
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from common.config import ROOT, SERVICE_NAMES
from common.messaging import DEAD_LETTER_QUEUE

CRON_SECRET = "test-cron-secret"
INTERNAL_HEALTH_TOKEN = "test-internal-token"
CORS_TEST_ORIGIN = "https://app.chamados.test"  # the one browser origin the test system allows
STALE_AFTER_SECONDS = 6 * 3600  # leftovers of killed runs are dropped by the next run
MANAGEMENT_API = os.environ.get("RABBIT_MANAGEMENT_URL", "http://127.0.0.1:15672/api")
RABBIT_AUTH = ("guest", "guest")


def broker_address() -> tuple[str, str, int]:
    """(scheme, host, port) of the broker the tests use: those of `AMQP_URI` when it is set,
    else amqp on 127.0.0.1:5672."""
    uri = os.environ.get("AMQP_URI")
    if not uri:
        return "amqp", "127.0.0.1", 5672
    parts = urlsplit(uri)
    scheme = "amqps" if parts.scheme == "amqps" else "amqp"
    return scheme, parts.hostname or "127.0.0.1", parts.port or (5671 if scheme == "amqps" else 5672)


def run_label(prefix: str, separator: str) -> str:
    return f"{prefix}{separator}{int(time.time())}{separator}{uuid.uuid4().hex[:8]}"


def is_stale(name: str, separator: str) -> bool:
    try:
        created = int(name.split(separator)[-2])
    except (IndexError, ValueError):
        return False
    return time.time() - created > STALE_AFTER_SECONDS


class PostgresServer:
    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=None)

    @classmethod
    def find(cls) -> "PostgresServer":
        user = getpass.getuser()
        candidates = [os.environ["TEST_DATABASE_URL"]] if os.environ.get("TEST_DATABASE_URL") else [
            f"postgresql+psycopg://{user}@127.0.0.1:5432/postgres",
            f"postgresql+psycopg://{user}@/postgres?host=/var/run/postgresql",
        ]
        errors = []
        for url in candidates:
            try:
                server = cls(url)
                with server.engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
                return server
            except Exception as exc:
                errors.append(f"{url}: {exc.__class__.__name__}: {exc}")
        raise RuntimeError("no PostgreSQL for the tests (make test starts it):\n" + "\n".join(errors))

    def create_database(self) -> tuple[str, str]:
        name = run_label("chamados_test", "_")
        with self.engine.connect() as connection:
            for (stale,) in connection.execute(text(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'chamados\\_test\\_%'")):
                if is_stale(stale, "_"):
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)
        return name, url

    def drop_database(self, name: str) -> None:
        with self.engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.engine.dispose()


@dataclass
class RabbitVhost:
    name: str

    @classmethod
    def create(cls) -> "RabbitVhost":
        existing = requests.get(f"{MANAGEMENT_API}/vhosts", auth=RABBIT_AUTH, timeout=10)
        existing.raise_for_status()
        for vhost in existing.json():
            if vhost["name"].startswith("chamados-test-") and is_stale(vhost["name"], "-"):
                requests.delete(f"{MANAGEMENT_API}/vhosts/{quote(vhost['name'], safe='')}",
                                auth=RABBIT_AUTH, timeout=10)
        name = run_label("chamados-test", "-")
        vhost = quote(name, safe="")
        requests.put(f"{MANAGEMENT_API}/vhosts/{vhost}", auth=RABBIT_AUTH, timeout=10).raise_for_status()
        requests.put(f"{MANAGEMENT_API}/permissions/{vhost}/guest", auth=RABBIT_AUTH, timeout=10,
                     json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        return cls(name)

    @property
    def amqp_uri(self) -> str:
        scheme, host, port = broker_address()
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://guest:guest@{host}:{port}/{quote(self.name, safe='')}"

    def delete(self) -> None:
        requests.delete(f"{MANAGEMENT_API}/vhosts/{quote(self.name, safe='')}", auth=RABBIT_AUTH,
                        timeout=10)

    def queue(self, name: str) -> dict | None:
        response = requests.get(
            f"{MANAGEMENT_API}/queues/{quote(self.name, safe='')}/{quote(name, safe='')}",
            auth=RABBIT_AUTH, timeout=10)
        return response.json() if response.status_code == 200 else None


def eventually(check, timeout: float = 10.0, interval: float = 0.2):
    """Poll until `check()` returns something truthy (events and heartbeats are processed
    asynchronously); the last value otherwise."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value


def dead_letters(amqp_uri: str, marker: bytes, expected: int, timeout: float = 20.0) -> list:
    """Our dead letters (bodies containing `marker`); others go back untouched. Others are
    held unacked while we look, so the same foreign message is not fetched again and again."""
    found, others = [], []
    deadline = time.monotonic() + timeout
    with Connection(amqp_uri) as connection:
        queue = DEAD_LETTER_QUEUE(connection.channel())
        queue.declare()
        try:
            while len(found) < expected and time.monotonic() < deadline:
                message = queue.get(no_ack=False)
                if message is None:
                    time.sleep(0.2)
                    continue
                body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
                if marker in body:
                    found.append((body, dict(message.headers or {})))
                    message.ack()
                else:
                    others.append(message)
        finally:
            for message in others:
                message.requeue()
    return found


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def port_is_listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def ephemeral_ports_start() -> int:
    """Where the kernel's ports for outgoing connections begin (Linux: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_block(size: int) -> int:
    """Ports free now, below the ephemeral range: a port there is taken only by a listener,
    never by one of the machine's many outgoing connections between our check and the
    service's bind (which made a system's start fail with "Address already in use")."""
    top = max(12000, ephemeral_ports_start()) - size
    for _ in range(200):
        base = random.randint(10000, top)
        if all(port_is_free(base + offset) for offset in range(size)):
            return base
    raise RuntimeError("no free block of ports")


class System:
    """The services as real processes, each with its log file under `workdir`."""

    def __init__(self, *, database_url: str | None, amqp_uri: str, workdir: Path,
                 services=SERVICE_NAMES, extra_env: dict | None = None):
        self.database_url = database_url
        self.amqp_uri = amqp_uri
        self.workdir = Path(workdir)
        self.services = tuple(services)
        self.extra_env = extra_env or {}
        self.processes: dict[str, subprocess.Popen] = {}
        base = free_port_block(len(SERVICE_NAMES))
        self.gateway_port = base + len(SERVICE_NAMES) - 1
        self.env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
        self.env.update({
            "AMQP_URI": amqp_uri,
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.gateway_port),
            "METRICS_PORT_BASE": str(base),
            "CHAMADOS_VAR_DIR": str(self.workdir / "var"),
            "ARCHIVE_DIR": str(self.workdir / "archives"),
            "EXPORT_DIR": str(self.workdir / "exports"),
            "PYTHONUNBUFFERED": "1",
            # tests call the jobs' targets themselves: no sweep fires in the middle of one
            "CRON_SECRET": CRON_SECRET,
            "INTERNAL_HEALTH_TOKEN": INTERNAL_HEALTH_TOKEN,
            "CORS_ALLOWED_ORIGINS": CORS_TEST_ORIGIN,
            # every test signs in from 127.0.0.1: the per-address limit would let one test's
            # expected wrong passwords lock out the next ones (tests/e2e/test_sign_in_throttle.py
            # checks the limit on a system of its own)
            "SIGN_IN_ADDRESS_FAILURES": "1000000",
            # argon2 at test cost: ~0.1 s of CPU per sign-in, thousands of times, starved the
            # machine the three suites share (a sign-in once took over the 10 s deadline)
            "PASSWORD_HASH_PROFILE": "insecure-for-tests",
            "SCHEDULER_JOBS": '{"chat-cleanup": {"enabled": false}, "offline-sweep": {"enabled": false}, '
                              '"usb-cleanup": {"enabled": false}, "storage-maintenance": {"enabled": false}}',
            **self.extra_env,
        })
        if database_url:
            self.env["DATABASE_URL"] = database_url
        self.metrics_ports = {name: base + index for index, name in enumerate(SERVICE_NAMES)
                              if name != "gateway"}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def metrics_url(self, service: str) -> str:
        if service == "gateway":
            return f"{self.base_url}/metrics"
        return f"http://127.0.0.1:{self.metrics_ports[service]}/metrics"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "chamados.cli", *args], env=self.env,
                              cwd=ROOT, capture_output=True, text=True, timeout=300)

    def start(self, ready_timeout: float = 90) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        migrated = self.cli("migrate")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        for name in self.services:
            self.start_service(name)
        self.wait_ready(ready_timeout)

    def start_service(self, name: str) -> None:
        log = open(self.workdir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "chamados.cli", "run", name], env=self.env, cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited ({process.returncode}):\n{self.log(name)[-4000:]}")
            if self._ready():
                return
            time.sleep(0.3)
        raise RuntimeError("services not ready in time:\n" + "\n".join(
            f"--- {name}\n{self.log(name)[-2000:]}" for name in self.processes))

    def _ready(self) -> bool:
        try:
            if set(self.services) == set(SERVICE_NAMES):
                return requests.get(f"{self.base_url}/readyz", timeout=5).status_code == 200
            if "gateway" in self.services:
                return requests.get(f"{self.base_url}/healthz", timeout=5).status_code == 200
            return all(requests.get(self.metrics_url(name), timeout=5).status_code == 200
                       for name in self.services)
        except requests.RequestException:
            return False

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_service(self, name: str, grace: float = 10) -> None:
        """By PID, with a timeout and a kill (pitfall 13)."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self, grace: float = 10) -> None:
        """Every service at once: SIGTERM to all, then one shared grace period before the
        kills (one by one, an HTTP-only service's slow stop made each wait its own)."""
        processes, self.processes = self.processes, {}
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def private_system(postgres: "PostgresServer", workdir: Path, extra_env: dict | None = None):
    """(system, RPC proxy) of a test module's own — vhost, database, processes — for tests
    that run with other settings, or that attack the services and must not take the shared
    system down with them."""
    from nameko.standalone.rpc import ClusterRpcProxy

    vhost = RabbitVhost.create()
    name, database_url = postgres.create_database()
    system = System(database_url=database_url, amqp_uri=vhost.amqp_uri, workdir=workdir,
                    extra_env=extra_env)
    try:
        system.start()
        with ClusterRpcProxy({"AMQP_URI": system.amqp_uri}, timeout=30) as rpc:
            yield system, rpc
    finally:
        system.stop()
        vhost.delete()
        postgres.drop_database(name)


class Client:
    """HTTP to the gateway; every call gets a deadline, none follows redirects."""

    def __init__(self, base_url: str, token: str | None = None):
        self.base_url = base_url
        self.token = token
        self.http = requests.Session()

    def request(self, method: str, path: str, *, token: str | None = None, **kwargs):
        headers = dict(kwargs.pop("headers", None) or {})
        token = token if token is not None else self.token
        if token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, self.base_url + path, headers=headers, timeout=30,
                                 allow_redirects=False, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def patch(self, path, **kwargs):
        return self.request("PATCH", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    def sign_in(self, email: str, password: str, tenant: str | None = None) -> "Client":
        body = {"email": email, "password": password}
        if tenant:
            body["tenant"] = tenant
        response = self.post("/api/auth/sign-in", json=body)
        assert response.status_code == 200, response.text
        return Client(self.base_url, response.json()["token"])


@dataclass
class Tenant:
    id: str
    slug: str
    admin: Client
    admin_email: str
    admin_password: str
    system: System

    def person(self, role: str, *, company_id: str | None = None, password: str = "pass-word-1"):
        """A user of this tenant, created through the API, and a client signed in as them."""
        email = f"{role}-{uuid.uuid4().hex[:8]}@{self.slug}.test"
        response = self.admin.post("/api/admin/users", json={
            "email": email, "name": f"{role.title()} Person", "role": role,
            "company_id": company_id, "password": password})
        assert response.status_code == 201, response.text
        client = Client(self.system.base_url).sign_in(email, password, tenant=self.slug)
        return response.json(), client

    def company(self, name: str | None = None) -> dict:
        apelido = f"empresa-{uuid.uuid4().hex[:8]}"
        response = self.admin.post("/api/admin/companies",
                                   json={"name": name or apelido.title(), "apelido": apelido})
        assert response.status_code == 201, response.text
        return response.json()


def fetch_ticket(client: Client, ticket: dict | str) -> dict:
    ticket_id = ticket["id"] if isinstance(ticket, dict) else ticket
    response = client.get(f"/api/tickets/{ticket_id}")
    assert response.status_code == 200, response.text
    return response.json()


def ticket_timeline(client: Client, ticket: dict) -> list[dict]:
    response = client.get(f"/api/tickets/{ticket['id']}/events")
    assert response.status_code == 200, response.text
    return response.json()["items"]


def new_tenant(system: System, rpc) -> Tenant:
    slug = f"t-{uuid.uuid4().hex[:10]}"
    email, password = f"admin@{slug}.test", "admin-pass-1"
    created = rpc.accounts.create_tenant(f"Tenant {slug}", slug, email, password)
    admin = Client(system.base_url).sign_in(email, password, tenant=slug)
    return Tenant(created["id"], slug, admin, email, password, system)


def backdate_registration(database_url: str, machine_ids, by: timedelta = timedelta(days=2)) -> None:
    """Move machines' registration back in time: a test that replays past heartbeats needs
    machines older than them (a heartbeat sent before its machine was registered is refused)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE devices.machines SET created_at = created_at - :by "
                                    "WHERE id = ANY(CAST(:ids AS uuid[]))"), {"by": by, "ids": [str(m) for m in machine_ids]})
    finally:
        engine.dispose()
