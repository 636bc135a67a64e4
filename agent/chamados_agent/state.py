"""The agent's state directory and the rules that read it.

`state.json` holds the registration (machine id, machine token, gateway and AMQP URI) and the
heartbeat bookkeeping. It carries a credential, so it is created 0600 in a 0700 directory and
replaced atomically (write a temp file, fsync, rename): a crash never leaves half a file.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path

from chamados_agent.errors import AgentError, NotRegistered

STATE_FILE = "state.json"
LOCK_FILE = "agent.lock"
SPOOL_FILE = "spool.sqlite3"
FULL_INVENTORY_EVERY = timedelta(hours=24)
JITTER = 0.10  # ±10 %: agents started together (an office powering on) drift apart


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def default_state_dir() -> Path:
    """The user's config directory: the agent runs as the desktop user, not as root."""
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "chamados-agent"


@dataclass
class State:
    gateway: str
    machine_id: str
    token: str
    token_expires_at: str
    registered_at: str
    amqp_uri: str | None = None
    hostname: str = ""
    # heartbeat bookkeeping: what was handed off (delivered or spooled), and what came back
    last_sent_at: str | None = None
    inventory_hash: str | None = None     # hash of the last full inventory handed off
    last_full_at: str | None = None
    need_inventory: bool = True           # the server asked for the full inventory
    last_success_at: str | None = None    # last heartbeat the broker confirmed / gateway took
    last_success_via: str | None = None
    unanswered: int = 0                   # confirmed AMQP heartbeats the server did not answer
    token_rejected_at: str | None = None
    token_rejected_reason: str | None = None
    usb_policy_pending: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None

    @classmethod
    def from_dict(cls, data: dict) -> "State":
        known = {f.name: f for f in fields(cls)}
        missing = [name for name in ("gateway", "machine_id", "token") if not data.get(name)]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        values = {key: value for key, value in data.items() if key in known}
        for key, value in values.items():
            expected = bool if key == "need_inventory" else int if key == "unanswered" else str
            if value is not None and not isinstance(value, expected):
                raise ValueError(f"{key} is not a {expected.__name__}")
        return cls(**values)


class StateStore:
    def __init__(self, directory: Path | str):
        self.directory = Path(directory).expanduser()
        self.path = self.directory / STATE_FILE
        self.spool_path = self.directory / SPOOL_FILE

    def ensure_directory(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise AgentError(f"cannot create the state directory {self.directory}: {exc.strerror}") from None

    def load(self) -> State | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AgentError(f"cannot read {self.path}: {exc.strerror}") from None
        self._tighten()
        try:
            return State.from_dict(json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise AgentError(f"the state file {self.path} is damaged ({exc}); register again "
                             "with `chamados-agent register`") from None

    def require(self) -> State:
        state = self.load()
        if state is None:
            raise NotRegistered(f"this machine is not registered (no state in {self.directory}); "
                                "run `chamados-agent register` first")
        return state

    def save(self, state: State) -> None:
        self.ensure_directory()
        data = json.dumps(asdict(state), indent=2, sort_keys=True).encode()
        # mkstemp creates the file 0600 from the start: the token is never readable by others,
        # not even for the moment between write and chmod
        fd, temp = tempfile.mkstemp(prefix=".state-", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o600)
            os.replace(temp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise AgentError(f"cannot write {self.path}: {exc.strerror}") from None

    def _tighten(self) -> None:
        """A state file someone made readable to others is put back to 0600."""
        if os.name != "posix":
            return
        with contextlib.suppress(OSError):
            if self.path.stat().st_mode & 0o077:
                os.chmod(self.path, 0o600)
                print(f"warning: {self.path} was readable by other users; reset to 0600",
                      file=sys.stderr)

    @contextlib.contextmanager
    def lock(self, wait_seconds: float = 30.0):
        """One agent process at a time sends from this directory, so a `heartbeat` run next
        to `run` does not replay the same spooled message twice."""
        self.ensure_directory()
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; the server drops duplicates
            yield
            return
        handle = open(self.directory / LOCK_FILE, "a+")
        try:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise AgentError(f"another chamados-agent is using {self.directory}; "
                                         "try again when it is done") from None
                    time.sleep(0.1)
            yield
        finally:
            handle.close()


# --- rules ------------------------------------------------------------------------------

def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def full_inventory_due(state: State, current_hash: str, now: datetime) -> str | None:
    """Why the next heartbeat must carry the full inventory, or None for hash-only."""
    if state.inventory_hash is None:
        return "first inventory"
    if state.need_inventory:
        return "the server asked for it"
    if state.inventory_hash != current_hash:
        return "the inventory changed"
    last_full = parse_time(state.last_full_at)
    if last_full is None or now - last_full >= FULL_INVENTORY_EVERY:
        return "24 h since the last full inventory"
    return None


def jittered(interval: float, rng: random.Random | None = None) -> float:
    return interval * (rng or random).uniform(1 - JITTER, 1 + JITTER)


def next_sent_at(last_sent_at: str | None, now: datetime) -> datetime:
    """`now`, but always after the previous heartbeat: the server treats a heartbeat whose
    sent_at is not newer than the last one as a duplicate, so a clock stepped back (NTP)
    must not make the next heartbeats vanish."""
    last = parse_time(last_sent_at)
    if last is not None and now <= last:
        return last + timedelta(milliseconds=1)
    return now
