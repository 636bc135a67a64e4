"""The on-disk spool: every heartbeat is written here before it is sent and deleted only once
the broker confirmed it (or the gateway answered 202), so nothing is lost offline or in a
crash; replay is in insertion order with the original message_id and body (sent_at).

Bounded in rows, bytes and age; the oldest go first and are counted, so a machine offline
for weeks keeps its most recent history instead of filling the disk.

A crash between the confirm and the delete re-sends one heartbeat: the server drops it as a
duplicate (its sent_at is not newer than the last one it stored).
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

MAX_ROWS = 10_000
MAX_BYTES = 16 * 1024 * 1024
MAX_AGE_SECONDS = 7 * 24 * 3600

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    sent_at    TEXT NOT NULL,
    queued_at  REAL NOT NULL,
    body       BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Spooled:
    seq: int
    message_id: str
    sent_at: str
    body: bytes


class Spool:
    def __init__(self, path: Path | str, *, max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES,
                 max_age_seconds: float = MAX_AGE_SECONDS):
        self.path = Path(path)
        self.max_rows, self.max_bytes, self.max_age_seconds = max_rows, max_bytes, max_age_seconds
        new = not self.path.exists()
        self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        if new and os.name == "posix":  # heartbeats describe the machine: owner only
            with contextlib.suppress(OSError):
                os.chmod(self.path, 0o600)
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextlib.contextmanager
    def _transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def push(self, message_id: str, sent_at: str, body: bytes, now: float | None = None) -> int:
        """Queue one heartbeat; returns how many old ones the caps dropped to make room."""
        now = time.time() if now is None else now
        with self._transaction():
            self.db.execute("INSERT INTO spool (message_id, sent_at, queued_at, body) VALUES (?, ?, ?, ?)",
                            (message_id, sent_at, now, body))
            return self._trim(now)

    def trim(self, now: float | None = None) -> int:
        with self._transaction():
            return self._trim(time.time() if now is None else now)

    def _trim(self, now: float) -> int:
        dropped = self.db.execute("DELETE FROM spool WHERE queued_at < ?",
                                  (now - self.max_age_seconds,)).rowcount
        count, size = self.db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM spool").fetchone()
        if count > self.max_rows or size > self.max_bytes:
            # walk from the oldest, keeping the newest rows that fit both caps
            excess_rows, excess_bytes, last_seq = count - self.max_rows, size - self.max_bytes, None
            for seq, length in self.db.execute("SELECT seq, LENGTH(body) FROM spool ORDER BY seq"):
                if excess_rows <= 0 and excess_bytes <= 0:
                    break
                last_seq, excess_rows, excess_bytes = seq, excess_rows - 1, excess_bytes - length
            if last_seq is not None:
                dropped += self.db.execute("DELETE FROM spool WHERE seq <= ?", (last_seq,)).rowcount
        if dropped:
            self._bump("dropped", dropped)
        return dropped

    def _bump(self, name: str, by: int) -> None:
        self.db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                        "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, by))

    def pending(self, limit: int = 100) -> list[Spooled]:
        """The oldest first: replay keeps the order they were produced in."""
        return [Spooled(*row) for row in self.db.execute(
            "SELECT seq, message_id, sent_at, body FROM spool ORDER BY seq LIMIT ?", (limit,))]

    def remove(self, seq: int) -> None:
        self.db.execute("DELETE FROM spool WHERE seq = ?", (seq,))

    def reject(self, seq: int) -> None:
        """The server refused this message as malformed: drop it (and count it), or it would
        block every newer heartbeat forever."""
        with self._transaction():
            self.db.execute("DELETE FROM spool WHERE seq = ?", (seq,))
            self._bump("rejected", 1)

    def discard_all(self) -> int:
        with self._transaction():
            removed = self.db.execute("DELETE FROM spool").rowcount
            if removed:
                self._bump("discarded", removed)
            return removed

    def depth(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]

    def size_bytes(self) -> int:
        return self.db.execute("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM spool").fetchone()[0]

    def oldest_sent_at(self) -> str | None:
        row = self.db.execute("SELECT sent_at FROM spool ORDER BY seq LIMIT 1").fetchone()
        return row[0] if row else None

    def counter(self, name: str) -> int:
        row = self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    @property
    def dropped(self) -> int:
        return self.counter("dropped")
