"""Sign-in throttling, as plain Python (no nameko, SQLAlchemy, kombu or werkzeug here).

Failed sign-ins are counted per key: the account (tenant and normalised email, also for an
email nobody has, so the answers never tell whether an account exists) and the client's
address. A key's count lives in a window that opens at its first failure; a failure after the
window has closed starts a new count. From a limit's `failures`-th failure in a window on,
each failure locks the key: `lock` the first time, doubled at every further failure, at most
`max_lock`. While any key of an attempt is locked the attempt is refused (429
`too_many_requests` with `retry_after_seconds`) before the password is looked at: no argon2
runs, and a right password is refused too, so a lock is never an oracle for the password.
A right password (when nothing is locked) forgets the account's failures; the address's
count stays (an attacker must not clear it by signing in to an account of their own).

One row per key, rewritten in place: storage never grows with the number of attempts, and a
row is worth nothing after `expires_at` (its window closed and its lock over).
"""
from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_DOUBLINGS = 30  # 2**30 × any lock is past every max_lock: no overflow of timedelta


@dataclass(frozen=True)
class Limit:
    failures: int  # the failure in a window that first locks the key
    window: timedelta  # how long a count lasts from its first failure
    lock: timedelta  # the first lock-out; doubled at each further failure
    max_lock: timedelta

    def __post_init__(self):
        if self.failures < 1 or self.window <= timedelta(0) or self.lock <= timedelta(0) \
                or self.max_lock < self.lock:
            raise ValueError(f"not a sign-in limit: {self}")


@dataclass(frozen=True)
class Policy:
    account: Limit
    address: Limit

    @classmethod
    def from_settings(cls, settings) -> "Policy":
        lock = timedelta(seconds=settings.sign_in_lock_seconds)
        max_lock = timedelta(seconds=settings.sign_in_max_lock_seconds)
        return cls(
            account=Limit(settings.sign_in_account_failures,
                          timedelta(seconds=settings.sign_in_account_window_seconds), lock, max_lock),
            address=Limit(settings.sign_in_address_failures,
                          timedelta(seconds=settings.sign_in_address_window_seconds), lock, max_lock))


@dataclass(frozen=True)
class Count:
    """What is kept of one key: failures in the current window, and a lock-out."""

    failures: int
    window_started_at: datetime
    locked_until: datetime | None = None

    def locked_at(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now

    def expires_at(self, limit: Limit) -> datetime:
        """When the row is worth nothing: its window closed and its lock over."""
        window_end = self.window_started_at + limit.window
        return max(window_end, self.locked_until) if self.locked_until else window_end


def lock_for(limit: Limit, failures: int) -> timedelta | None:
    """The lock-out the `failures`-th failure of a window earns, or None below the limit."""
    if failures < limit.failures:
        return None
    doublings = min(failures - limit.failures, MAX_DOUBLINGS)
    return min(limit.lock * (2 ** doublings), limit.max_lock)


def after_failure(count: Count | None, limit: Limit, now: datetime) -> Count:
    """The key's count once this failure is added."""
    if count is None or (now >= count.window_started_at + limit.window and not count.locked_at(now)):
        failures, started, locked_until = 1, now, None
    else:
        failures, started, locked_until = count.failures + 1, count.window_started_at, count.locked_until
    lock = lock_for(limit, failures)
    if lock is not None:
        locked_until = max(locked_until, now + lock) if locked_until else now + lock
    return Count(failures, started, locked_until)


def retry_after_seconds(counts: Iterable[Count | None], now: datetime) -> int | None:
    """Whole seconds until every lock among these keys is over (rounded up), or None when
    none is locked: the attempt may go on."""
    ends = [count.locked_until for count in counts if count is not None and count.locked_at(now)]
    if not ends:
        return None
    return max(1, math.ceil((max(ends) - now).total_seconds()))


def _key(*parts: str) -> str:
    """Rows are keyed by a SHA-256, never by a raw email or address."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def account_key(tenant: str | None, email_normalized: str) -> str:
    """`tenant`: the tenant's id when the account exists, else the slug given (or none)."""
    return _key("account", (tenant or "").strip().lower(), email_normalized)


def address_key(address: str | None) -> str | None:
    """The client's address as a key: an IPv6 address counts as its /64 (one host usually
    holds the whole /64); None when there is no usable address (then no address limit)."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return _key("address", str(ipaddress.ip_network(f"{ip}/64", strict=False)))
    return _key("address", str(ip))
