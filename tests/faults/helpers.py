"""What the fault cases share: a private RabbitMQ node and PostgreSQL cluster (never the
machine's shared ones), machines written straight into the private database, the publisher
child process (tests/faults/publisher.py), and the exact per-machine accounting.

Every wait here has a deadline: a stalled pipeline fails its case, it never hangs it."""
from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import requests
from kombu import Connection
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from common.config import ROOT, SERVICE_NAMES
from common.contracts.devices import HEARTBEAT_QUEUE
from common.messaging import DEAD_LETTER_QUEUE
from common.tokens import hash_token
from tests.harness import System, dead_letters, free_port_block, port_is_listening

FAULTS_ALL = os.environ.get("CHAMADOS_FAULTS", "").strip().lower() == "all"
LONG_CASE_SKIP = "long fault case: runs with CHAMADOS_FAULTS=all (make test-faults)"
KEEP_WORKDIR = bool(os.environ.get("CHAMADOS_FAULTS_KEEP"))
# set by `make test` and `make test-faults`: there a missing server binary fails the tier
# instead of skipping it green
REQUIRED = os.environ.get("CHAMADOS_FAULTS_REQUIRED", "") == "1"
RABBIT_AUTH = ("guest", "guest")
DEAD_LETTER_QUEUE_NAME = DEAD_LETTER_QUEUE.name
AUTH_POISON = ("int_authorization", "bytes_authorization", "list_authorization", "table_authorization")
REASON_PREFIX = {**{kind: "unauthenticated" for kind in AUTH_POISON}, "malformed_json": "malformed_json"}
RESULTS: list[str] = []  # the accounting lines, repeated in the terminal summary (conftest)
INFRA_NOTES: list[str] = []


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def exited_within(process: subprocess.Popen, seconds: float) -> bool:
    """Whether the process ended within `seconds` (killed when it did not)."""
    deadline = time.monotonic() + seconds
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            return False
        time.sleep(0.2)
    return True


def wait_for(check, timeout: float, what: str, interval: float = 0.25, process=None, log=None):
    """`check()` until truthy, or RuntimeError naming `what` (and the log of a process that
    died meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited ({process.returncode}):\n"
                               + (tail(log) if log else ""))
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s" + (f"\n{tail(log)}" if log else ""))
        time.sleep(interval)


# --- the work directory, and what a killed run left behind ---------------------------------------

WORKDIR_PREFIX = "chamados-faults-"


def make_workdir() -> Path:
    """A fresh directory for this run's node, cluster and logs; it names its owner (pid)."""
    root = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    os.chmod(root, 0o711)  # the postgres OS user must reach its cluster directory inside
    (root / "owner.pid").write_text(str(os.getpid()))
    return root


def owner_of_port(port: int, processes: dict) -> str | None:
    """Which of these processes ({name: Popen}) has a TCP socket bound locally to `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for name, process in processes.items():
        try:
            for fd in Path(f"/proc/{process.pid}/fd").iterdir():
                try:
                    if os.readlink(fd) in inodes:
                        return name
                except OSError:
                    continue
        except OSError:
            continue
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def reap_leftovers() -> list[str]:
    """Work directories of fault runs whose pytest died without its teardown (kill -9, a CI
    timeout): end the processes that belong to THAT directory only (their command line or
    environment names it), then remove it."""
    reaped = []
    for root in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        try:
            owner = int((root / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        marker = str(root).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                if marker in (proc / "cmdline").read_bytes() or marker in (proc / "environ").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue
        epmd = shutil.which("epmd")
        try:
            port = (root / "rabbitmq" / "epmd.port").read_text().strip()
            if epmd and port.isdigit():
                subprocess.run([epmd, "-port", port, "-kill"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(root, ignore_errors=True)
        reaped.append(str(root))
    return reaped


# --- a private RabbitMQ node ----------------------------------------------------------------

class PrivateRabbit:
    """One RabbitMQ node of this session's own: own node name, ports (AMQP, distribution,
    management, epmd and the CLI's distribution range), data and log directories, Erlang
    cookie (HOME) and config — nothing shared with the machine's broker."""

    CANDIDATES = (Path("/usr/lib/rabbitmq/bin"), Path("/usr/lib/rabbitmq/sbin"))

    @classmethod
    def binaries(cls) -> tuple[str, str] | None:
        # Debian's /usr/sbin wrappers `su` to the rabbitmq user (and its cookie): use the real scripts
        for directory in cls.CANDIDATES:
            if (directory / "rabbitmq-server").exists() and (directory / "rabbitmqctl").exists():
                return str(directory / "rabbitmq-server"), str(directory / "rabbitmqctl")
        server, ctl = shutil.which("rabbitmq-server"), shutil.which("rabbitmqctl")
        return (server, ctl) if server and ctl else None

    @classmethod
    def missing(cls) -> str | None:
        if cls.binaries() is None:
            return "rabbitmq-server/rabbitmqctl not installed (scripts/ensure-infra.sh installs them)"
        return None

    def __init__(self, root: Path):
        self.server, self.ctl = self.binaries()
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        base = free_port_block(15)
        self.port, self.dist_port, self.management_port, self.epmd_port = base, base + 1, base + 2, base + 3
        self.node = f"chamados-faults-{uuid.uuid4().hex[:8]}@localhost"
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.management_port}\n"
            "collect_statistics_interval = 500\n")
        (root / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (root / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's
        (root / "epmd.port").write_text(str(self.epmd_port))  # for reap_leftovers
        self.pid_file = root / "beam.pid"
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("RABBITMQ_", "ERL_"))}
        self.env.update({
            "HOME": str(root),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CTL_DIST_PORT_MIN": str(base + 4),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(base + 14),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
        })
        self.process: subprocess.Popen | None = None
        self.boots: list[float] = []

    @property
    def amqp_uri(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}/api"

    def start(self, timeout: float = 120) -> float:
        """Boots the node (same data directory on a restart); the seconds it took."""
        started = time.monotonic()
        log = self.root / "server.out"
        with open(log, "ab") as out:
            self.process = subprocess.Popen([self.server], env=self.env, cwd=self.root, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        try:
            wait_for(lambda: port_is_listening(self.port) and self._management_answers(), timeout,
                     f"private RabbitMQ node {self.node}", process=self.process, log=log)
        except RuntimeError:
            self.kill()
            raise
        seconds = time.monotonic() - started
        self.boots.append(seconds)
        return seconds

    def _management_answers(self) -> bool:
        try:
            return requests.get(f"{self.management_url}/overview", auth=RABBIT_AUTH, timeout=2).ok
        except requests.RequestException:
            return False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def beam_pid(self) -> int | None:
        """The Erlang VM's pid (from the node's pid file), only if it is still this node."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if self.node.encode() in cmdline or str(self.root).encode() in cmdline else None

    def stop(self, timeout: float = 60) -> None:
        """`rabbitmqctl stop`: a clean shutdown."""
        if not self.running():
            return
        # polled, not `timeout=`: under eventlet a TimeoutExpired escaped its except clause once
        # (the fault subset failed on a stop that took over a minute on a loaded machine)
        ctl = subprocess.Popen([self.ctl, "-n", self.node, "stop"], env=self.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not (exited_within(ctl, timeout) and exited_within(self.process, timeout)):
            self.kill()

    def kill(self) -> None:
        """kill -9 of the Erlang VM, as a crash or an OOM kill would."""
        pid = self.beam_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def close(self) -> None:
        try:
            self.stop(timeout=30)
        finally:
            if self.beam_pid():
                self.kill()
            epmd = shutil.which("epmd")
            if epmd:  # the epmd our node started on its own port
                subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"], capture_output=True,
                               timeout=10, env=self.env)

    # queues through the management API ---------------------------------------------------

    def queue(self, name: str) -> dict | None:
        try:
            response = requests.get(f"{self.management_url}/queues/%2F/{quote(name, safe='')}",
                                    auth=RABBIT_AUTH, timeout=5)
        except requests.RequestException:
            return None
        return response.json() if response.status_code == 200 else None

    def purge(self, name: str) -> None:
        requests.delete(f"{self.management_url}/queues/%2F/{quote(name, safe='')}/contents",
                        auth=RABBIT_AUTH, timeout=10)

    def ready_count(self, name: str) -> int:
        """Exact count of ready messages (a passive declare; the management API lags)."""
        with Connection(self.amqp_uri, connect_timeout=5) as connection:
            _, count, _ = connection.channel().queue_declare(queue=name, passive=True)
            return count


# --- a private PostgreSQL cluster -------------------------------------------------------------

class PrivatePostgres:
    """initdb + pg_ctl, as the `postgres` OS user when we are root, on its own port and
    socket directory, trust authentication, superuser `postgres`."""

    @staticmethod
    def bin_dir() -> Path | None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                          key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")])
        for directory in reversed(versions):
            if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
                return directory
        found = shutil.which("pg_ctl")
        return Path(found).parent if found and (Path(found).parent / "initdb").exists() else None

    @classmethod
    def missing(cls) -> str | None:
        if cls.bin_dir() is None:
            return ("PostgreSQL server binaries (initdb, pg_ctl) not installed "
                    "(scripts/ensure-infra.sh installs them)")
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no `postgres` OS user to run initdb/pg_ctl as"
            if not shutil.which("runuser"):
                return "running as root and `runuser` is missing (util-linux)"
        return None

    def __init__(self, root: Path):
        self.bin = self.bin_dir()
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(root, owner.pw_uid, owner.pw_gid)
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.data, self.log = root / "data", root / "postgres.log"
        self.port = free_port_block(1)
        self.starts: list[float] = []

    def _pg(self, program: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_owner, str(self.bin / program), *args], cwd=self.root,
                              capture_output=True, text=True, timeout=timeout)

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        done = self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                        "--locale=C", "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        with open(self.data / "postgresql.conf", "a") as conf:
            # fsync=off survives a crash of PostgreSQL (not of the OS): what these cases break
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                       "max_connections = 100\nshared_buffers = 64MB\n")

    def start(self, timeout: int = 90) -> float:
        started = time.monotonic()
        done = self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(timeout),
                        "start", timeout=timeout + 30)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}\n{done.stderr}\n{tail(self.log)}")
        seconds = time.monotonic() - started
        self.starts.append(seconds)
        return seconds

    def stop(self, mode: str = "fast", timeout: int = 60) -> None:
        done = self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(timeout), "stop",
                        timeout=timeout + 30)
        if done.returncode != 0 and self.running():
            raise RuntimeError(f"pg_ctl stop -m {mode} failed:\n{done.stdout}\n{done.stderr}")

    def running(self) -> bool:
        return self._pg("pg_ctl", "-D", str(self.data), "status", timeout=30).returncode == 0

    def close(self) -> None:
        if not self.data.exists():
            return
        try:
            if self.running():
                self.stop("immediate", timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired):
            try:  # the postmaster's pid is the first line of its pid file
                os.kill(int((self.data / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass


# --- the publisher (a child process) -------------------------------------------------------------

class PublisherRun:
    """tests/faults/publisher.py running a plan; its status and result files."""

    def __init__(self, workdir: Path, amqp_uri: str, machines: list[dict], per_machine: int,
                 rate: float, poison=(), deadline: float = 240):
        self.dir = workdir / f"publisher-{uuid.uuid4().hex[:8]}"
        self.dir.mkdir(parents=True)
        self.plan = {"amqp_uri": amqp_uri, "machines": machines, "per_machine": per_machine,
                     "rate": rate, "poison": list(poison), "deadline_seconds": deadline,
                     "status": str(self.dir / "status.json"), "result": str(self.dir / "result.json")}
        (self.dir / "plan.json").write_text(json.dumps(self.plan))
        self.log = self.dir / "publisher.log"
        self.planned = len(machines) * per_machine + len(self.plan["poison"])
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.faults.publisher", str(self.dir / "plan.json")],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def status(self) -> dict:
        try:
            return json.loads(Path(self.plan["status"]).read_text())
        except (OSError, ValueError):
            return {}

    def wait_confirmed(self, count: int, timeout: float = 60) -> dict:
        """Until `count` messages are confirmed (the moment to inject a fault)."""
        return wait_for(lambda: self.status() if self.status().get("confirmed", 0) >= count else None,
                        timeout, f"publisher reaching {count} confirmed messages", process=self.process,
                        log=self.log)

    def finish(self, timeout: float = 240) -> dict:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the publisher did not finish within {timeout:.0f}s: {self.status()}")
        try:
            result = json.loads(Path(self.plan["result"]).read_text())
        except (OSError, ValueError):
            raise AssertionError(f"the publisher exited {self.process.returncode} without a result:\n"
                                 f"{tail(self.log)}") from None
        assert result["error"] is None, f"the publisher gave up: {result['error']}\n{tail(self.log)}"
        return result

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


# --- the accounting ---------------------------------------------------------------------------

@dataclass
class Outcome:
    case: str
    sent: int = 0
    applied: int = 0
    dead_lettered: int = 0
    lost: int = 0
    twice: int = 0
    drain: str = ""
    seconds: float = 0.0
    parked: dict = field(default_factory=dict)  # poison kind -> [reason per dead letter]
    good_parked: list = field(default_factory=list)
    foreign_parked: list = field(default_factory=list)
    parked_with_token: int = 0
    uneven_machines: dict = field(default_factory=dict)  # machine -> (confirmed, applied)
    notes: dict = field(default_factory=dict)

    def line(self) -> str:
        return (f"sent={self.sent} applied={self.applied} dead_lettered={self.dead_lettered} "
                f"lost={self.lost} twice={self.twice}")

    def report(self) -> str:
        extras = " ".join(f"{key}={value}" for key, value in self.notes.items())
        return f"{self.case}: {self.line()} | {self.drain} after {self.seconds:.1f}s {extras}".rstrip()

    def problems(self, poison=()) -> list[str]:
        """Everything wrong, all at once (a stalled pipeline and losses say more together)."""
        found = []
        if not self.drain.startswith("drained"):
            found.append(self.drain)
        if self.lost or self.twice:
            worst = dict(list(self.uneven_machines.items())[:5])
            found.append(f"lost={self.lost} twice={self.twice}; (confirmed, applied) of some machines: "
                         f"{worst}")
        if self.dead_lettered != len(poison):
            found.append(f"dead_lettered={self.dead_lettered}, expected the {len(poison)} poison messages")
        for kind in poison:
            reasons = self.parked.get(kind, [])
            if len(reasons) != 1:
                found.append(f"poison {kind}: dead-lettered {len(reasons)} times (expected once)")
            elif not reasons[0]:
                found.append(f"poison {kind}: dead-lettered without a reason")
            elif reasons[0].startswith("handler failed"):
                found.append(f"poison {kind}: it failed its whole batch (retried one by one) before it "
                             f"was parked: {reasons[0][:300]!r}")
            elif kind in REASON_PREFIX and not reasons[0].startswith(REASON_PREFIX[kind]):
                found.append(f"poison {kind}: reason {reasons[0]!r}, expected {REASON_PREFIX[kind]}: …")
        if self.good_parked:
            found.append(f"{len(self.good_parked)} good heartbeats dead-lettered: {self.good_parked[:3]}")
        if self.foreign_parked:
            found.append(f"{len(self.foreign_parked)} dead letters that match nothing sent: "
                         f"{self.foreign_parked[:3]}")
        if self.parked_with_token:
            found.append(f"{self.parked_with_token} dead letters still carry the authorization header")
        return found


class Pipeline:
    """The system under test: the private broker and database, the devices processes."""

    def __init__(self, rabbit: PrivateRabbit, postgres: PrivatePostgres, system: System,
                 database_url: str, workdir: Path):
        self.rabbit, self.postgres, self.system = rabbit, postgres, system
        self.database_url, self.workdir = database_url, workdir
        self.engine = create_engine(database_url, poolclass=NullPool)
        self.devices_engine = create_engine(database_url, poolclass=NullPool,
                                            connect_args={"options": "-c search_path=devices"})
        self.log_marks: dict[str, int] = {}  # where each devices log stood when the case began
        self.publishers: list[PublisherRun] = []
        self.metrics_urls = {"devices": system.metrics_url("devices")}

    # machines -------------------------------------------------------------------------------

    def machines(self, count: int = 50) -> list[dict]:
        """Machines written straight into the private database: {id, token} each."""
        from services.devices import storage

        now = datetime.now(timezone.utc)
        tenant_id, company_id = uuid.uuid4(), uuid.uuid4()
        machines, states, tokens, made = [], [], [], []
        for index in range(count):
            machine_id, token = uuid.uuid4(), secrets.token_urlsafe(32)
            machines.append({"id": machine_id, "tenant_id": tenant_id, "company_id": company_id,
                             "hostname": f"fault-{index:03d}-{machine_id.hex[:6]}", "os_name": "Ubuntu 22.04",
                             "machine_user_id": uuid.uuid4(), "created_at": now, "updated_at": now})
            states.append({"machine_id": machine_id, "heartbeats": 0, "need_inventory": True,
                           "reported_online": False, "open_alert_kinds": "", "agg_samples": 0,
                           "agg_cpu_sum": 0.0, "agg_memory_sum": 0.0})
            tokens.append({"id": uuid.uuid4(), "machine_id": machine_id, "token_hash": hash_token(token),
                           "created_at": now, "expires_at": now + timedelta(days=30)})
            made.append({"id": str(machine_id), "token": token})
        with self.devices_engine.begin() as connection:
            connection.execute(storage.Machine.__table__.insert(), machines)
            connection.execute(storage.HeartbeatState.__table__.insert(), states)
            connection.execute(storage.MachineToken.__table__.insert(), tokens)
        return made

    def applied(self, machine_ids) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT machine_id, heartbeats FROM devices.heartbeat_state WHERE machine_id = ANY(:ids)"),
                {"ids": [uuid.UUID(m) for m in machine_ids]}).all()
        return {str(machine_id): count for machine_id, count in rows}

    # load -------------------------------------------------------------------------------------

    def publish(self, machines, *, per_machine: int, rate: float, poison=(), deadline: float = 240):
        run = PublisherRun(self.workdir / "publishers", self.rabbit.amqp_uri, machines, per_machine,
                           rate, poison, deadline)
        self.publishers.append(run)
        return run

    # devices processes ----------------------------------------------------------------------

    def devices_processes(self) -> dict:
        return {name: p for name, p in self.system.processes.items() if name.startswith("devices")}

    def signal_devices(self, signum: int, name: str = "devices", grace: float = 30) -> float:
        """Send `signum` to one devices process and wait for it to exit; the seconds it took."""
        process = self.system.processes.pop(name)
        started = time.monotonic()
        process.send_signal(signum)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            raise AssertionError(f"{name} did not exit within {grace:.0f}s of signal {signum}")
        return time.monotonic() - started

    def start_devices(self, timeout: float = 90) -> None:
        self.system.start_service("devices")
        self.system.wait_ready(timeout)

    def start_replica(self, name: str = "devices-2", timeout: float = 90) -> None:
        """Another devices process with the same settings but its own metrics port."""
        base = free_port_block(len(SERVICE_NAMES))
        env = dict(self.system.env, METRICS_PORT_BASE=str(base))
        log = self.system.workdir / f"{name}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen([sys.executable, "-m", "chamados.cli", "run", "devices"],
                                       env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        self.system.processes[name] = process
        url = self.metrics_urls[name] = f"http://127.0.0.1:{base + SERVICE_NAMES.index('devices')}/metrics"

        def answers():
            try:
                return requests.get(url, timeout=2).ok
            except requests.RequestException:
                return False
        wait_for(answers, timeout, f"devices replica {name}", process=process, log=log)

    def wait_consuming(self, consumers: int, timeout: float = 60) -> None:
        """Until the heartbeat queue has this many consumers (the management API lags ~1s)."""
        wait_for(lambda: (self.rabbit.queue(HEARTBEAT_QUEUE) or {}).get("consumers") == consumers, timeout,
                 f"{consumers} consumer(s) on {HEARTBEAT_QUEUE}")

    def batch_holder(self, timeout: float = 5) -> str | None:
        """The devices process inside a heartbeat batch's transaction (its backend holds a
        lock on heartbeat_state), polled until `timeout`; None if none was seen."""
        query = text("SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                     "WHERE l.relation = 'devices.heartbeat_state'::regclass "
                     "AND a.application_name = 'devices' AND a.pid <> pg_backend_pid() LIMIT 1")
        deadline = time.monotonic() + timeout
        with self.engine.connect() as connection:
            while time.monotonic() < deadline:
                port = connection.execute(query).scalar()
                connection.rollback()
                holder = port and owner_of_port(port, self.devices_processes())
                if holder:
                    return holder
                time.sleep(0.005)
        return None

    def wait_mid_batch(self, timeout: float = 5) -> bool:
        """Until a devices process is inside a heartbeat batch; False if none was in time."""
        return self.batch_holder(timeout) is not None

    def heartbeat_connections(self, timeout: float = 30) -> dict[str, str]:
        """Devices process name -> name of the AMQP connection its heartbeat consumer uses."""
        def listed():
            try:
                consumers = requests.get(f"{self.rabbit.management_url}/consumers", auth=RABBIT_AUTH,
                                         timeout=5).json()
            except requests.RequestException:
                return None
            found = {}
            for consumer in consumers:
                if consumer["queue"]["name"] == HEARTBEAT_QUEUE:
                    details = consumer["channel_details"]
                    if not details:  # `[]` until the broker's statistics have the channel: ask again
                        return None
                    owner = owner_of_port(details["peer_port"], self.devices_processes())
                    found[owner] = details["connection_name"]
            return found if set(found) == set(self.devices_processes()) else None
        return wait_for(listed, timeout, "the heartbeat consumers' connections in the management API")

    def close_connection(self, name: str) -> None:
        """The broker closes this connection (as on a missed heartbeat, a network cut)."""
        requests.delete(f"{self.rabbit.management_url}/connections/{quote(name, safe='')}",
                        auth=RABBIT_AUTH, timeout=10, headers={"X-Reason": "fault suite"}).raise_for_status()

    @contextmanager
    def devices_frozen(self):
        """SIGSTOP every devices process (their connections stay open), SIGCONT on leaving."""
        processes = list(self.devices_processes().values())
        for process in processes:
            process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            for process in processes:
                process.send_signal(signal.SIGCONT)

    def heartbeat_outcomes(self) -> dict[str, int]:
        """`chamados_heartbeats_total` by outcome, summed over the running devices processes
        (counters restart with a process: a diagnostic, not the accounting)."""
        totals: Counter = Counter()
        for name in self.devices_processes():
            try:
                metrics = requests.get(self.metrics_urls[name], timeout=5).text
            except (requests.RequestException, KeyError):
                continue
            for line in metrics.splitlines():
                if line.startswith("chamados_heartbeats_total{"):
                    labels, value = line.rsplit(" ", 1)
                    outcome = labels.split('outcome="', 1)[1].split('"', 1)[0]
                    totals[outcome] += int(float(value))
        return dict(totals)

    def _devices_logs(self) -> dict[str, str]:
        return {path.stem: path.read_text(errors="replace")
                for path in sorted(self.system.workdir.glob("devices*.log"))}

    def devices_log_errors(self, limit: int = 8) -> list[str]:
        """The warnings and errors the devices processes logged during this case."""
        lines = []
        for name, content in self._devices_logs().items():
            for line in content[self.log_marks.get(name, 0):].splitlines():
                if '"ERROR"' in line or '"WARNING"' in line or "Traceback" in line:
                    lines.append(f"{name}: {line[:400]}")
        return lines[-limit:]

    # between cases -------------------------------------------------------------------------------

    def ensure_healthy(self) -> None:
        """Broker and database up, exactly one devices process, empty queues: each case starts
        from the same place whatever the previous one broke."""
        if not self.rabbit.running():
            self.rabbit.start()
        if not self.postgres.running():
            self.postgres.start()
        for name in [n for n in self.devices_processes() if n != "devices"]:
            self.system.stop_service(name)
        process = self.system.processes.get("devices")
        if process is not None and process.poll() is not None:
            self.system.processes.pop("devices")
            process = None
        queue = self.rabbit.queue(HEARTBEAT_QUEUE) or {}
        if process is not None and (queue.get("messages_ready") or queue.get("messages_unacknowledged")):
            self.system.stop_service("devices", grace=30)  # a previous case left work behind
            process = None
        self.rabbit.purge(HEARTBEAT_QUEUE)
        self.rabbit.purge(DEAD_LETTER_QUEUE_NAME)
        if process is None:
            self.start_devices()
        self.wait_consuming(1)
        self.log_marks = {name: len(content) for name, content in self._devices_logs().items()}

    def end_case(self) -> None:
        """Whatever the case did or failed to do: no publisher left running, no extra replica."""
        for run in self.publishers:
            run.kill()
        self.publishers.clear()
        for name in [n for n in self.devices_processes() if n != "devices"]:
            self.system.stop_service(name)

    # the accounting ----------------------------------------------------------------------------

    def account(self, case: str, machines: list[dict], result: dict, *, stall_timeout: float = 20,
                deadline: float = 90, quiet: float = 6) -> Outcome:
        """Waits (bounded) until the heartbeat queue is drained, then compares per machine
        what the broker confirmed with what `heartbeat_state.heartbeats` applied, and sorts
        the dead letters (all of them: the node is ours) by the message they came from."""
        records = result["records"]
        confirmed = Counter(machine for machine, kind, *_ in records if kind == "good")
        expected = sum(confirmed.values())
        by_digest = {digest: (kind, machine) for machine, kind, _, digest, _ in records}
        ids = [m["id"] for m in machines]
        outcome = Outcome(case, sent=len(records))
        started = time.monotonic()
        last_total, last_change, equal_since = None, started, None
        while True:
            now = time.monotonic()
            applied = self.applied(ids)
            total = sum(applied.values())
            queue = self.rabbit.queue(HEARTBEAT_QUEUE) or {}
            ready, unacked = queue.get("messages_ready"), queue.get("messages_unacknowledged")
            empty = ready == 0 and unacked == 0
            if total != last_total:
                last_total, last_change = total, now
            if empty and total == expected:
                equal_since = equal_since or now
                if now - equal_since >= 2.0:  # and stays so: a late copy would show up as twice
                    outcome.drain = "drained"
                    break
            else:
                equal_since = None
                if empty and now - last_change >= quiet:
                    outcome.drain = "drained (with a difference)"
                    break
            if now - last_change >= stall_timeout:
                outcome.drain = (f"stalled: nothing applied for {stall_timeout:.0f}s with {ready} ready and "
                                 f"{unacked} unacknowledged heartbeats in the queue")
                break
            if now - started >= deadline:
                outcome.drain = (f"not drained within {deadline:.0f}s ({ready} ready, {unacked} "
                                 "unacknowledged)")
                break
            time.sleep(0.5)
        outcome.seconds = time.monotonic() - started
        outcome.applied = total
        for machine in ids:
            sent, done = confirmed.get(machine, 0), applied.get(machine, 0)
            outcome.lost += max(0, sent - done)
            outcome.twice += max(0, done - sent)
            if sent != done:
                outcome.uneven_machines[machine[:8]] = (sent, done)
        waiting = self.rabbit.ready_count(DEAD_LETTER_QUEUE_NAME)
        parked = dead_letters(self.rabbit.amqp_uri, b"", expected=waiting, timeout=15) if waiting else []
        outcome.dead_lettered = len(parked)
        for body, headers in parked:
            kind, _ = by_digest.get(hashlib.sha256(body).hexdigest(), (None, None))
            if "authorization" in headers:
                outcome.parked_with_token += 1
            reason = headers.get("x-dead-letter-reason") or ""
            reason = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
            if kind is None:
                outcome.foreign_parked.append(body[:120])
            elif kind == "good":
                outcome.good_parked.append(reason[:200])
            else:
                outcome.parked.setdefault(kind, []).append(reason)
        outcome.notes.update(republished=result["republished"], reconnects=result["reconnects"])
        return outcome


def conclude(outcome: Outcome, pipeline: Pipeline, poison=()) -> None:
    """Print the accounting line, keep it for the summary, and fail with every problem."""
    report = outcome.report()
    print(report)
    RESULTS.append(report)
    for kind, reasons in sorted(outcome.parked.items()):
        line = f"    {kind}: " + " / ".join(reason[:150] for reason in reasons)
        print(line)
        RESULTS.append(line)
    problems = outcome.problems(poison)
    if problems:
        errors = pipeline.devices_log_errors()
        raise AssertionError("\n".join([report, *problems] + (["devices log:", *errors] if errors else [])))
