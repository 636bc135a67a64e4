"""accounts' passwords: argon2 off the eventlet hub in a bounded number of slots, a password
someone may be guessing checked under the sign-in throttle (a sign-in's, a password change's
current one), and a person changing their own password."""
from __future__ import annotations

import os
from collections import deque

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
import eventlet
from eventlet import tpool
from eventlet.event import Event

from common.contracts import accounts as contract
from common.contracts import load, parse_id
from common.db import utcnow
from common.errors import Forbidden, TooManyRequests, Unauthorized
from common.unit_of_work import UnitOfWorkSource
from services.accounts import domain, throttle
from services.accounts.rows import user_in_tenant

# PASSWORD_HASH_PROFILE (common/config.py names them): the cost of new hashes; any stored
# hash verifies whatever the setting, since it carries its own parameters
HASHERS = {"rfc9106-low-memory": PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY),
           "rfc9106-high-memory": PasswordHasher.from_parameters(profiles.RFC_9106_HIGH_MEMORY),
           "insecure-for-tests": PasswordHasher.from_parameters(profiles.CHEAPEST)}
HASHING_NICENESS = 10  # argon2's threads yield the CPU to the hub's (Linux: nice is per thread)
WAITING_PER_SLOT = 8  # sign-ins that may queue for argon2 per slot (~0.3 s each); beyond, 429 at once
SIGN_IN_WAIT_SECONDS = 5.0  # a sign-in waits this long for a slot at most (the RPC deadline is 10 s)


def _below_the_hub(function, *args):
    """In a tpool thread: lower this thread's priority (the threads argon2 starts inherit
    it), then compute. Raising `nice` needs no privilege; where it is refused, go on."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, HASHING_NICENESS)
    except (AttributeError, OSError):
        pass
    return function(*args)


class HashingSlots:
    """argon2 off the eventlet hub, and not too much of it at once.

    argon2-cffi's C code would block the hub, so it runs in a real thread (tpool), but that
    alone did not keep this process responsive: each verification is ~0.3 s of CPU on 4
    threads, and eight wrong-password guessers at once took every core, so `authenticate`
    (every API request) went from 25 to 522 ms. So at most `slots` argon2 computations run
    at once, at a lower CPU priority than the hub, first come first served. A sign-in that
    would queue behind more than WAITING_PER_SLOT × slots others, or waits SIGN_IN_WAIT_SECONDS
    without a slot, is refused (429, retry after a second): a worker left waiting is a worker
    `authenticate` cannot have, and the gateway's deadline would answer 504 anyway."""

    def __init__(self):
        self.slots = 0
        self.free = 0
        self.queue: deque[Event] = deque()
        self.profile = "rfc9106-low-memory"
        self._dummy_hashes: dict[str, str] = {}

    def configure(self, settings) -> None:
        """The number of slots (PASSWORD_HASH_SLOTS; a change applies as slots free up) and
        the cost of new hashes (PASSWORD_HASH_PROFILE)."""
        self.profile = settings.password_hash_profile
        slots = settings.password_hash_slots
        if slots != self.slots:
            self.free += slots - self.slots
            self.slots = slots
            self._hand_over()

    @property
    def waiting(self) -> int:
        return len(self.queue)

    @property
    def hasher(self) -> PasswordHasher:
        return HASHERS[self.profile]

    @property
    def dummy_hash(self) -> str:
        """A hash of the current cost, verified for an unknown email: same time as a known one."""
        if self.profile not in self._dummy_hashes:
            self._dummy_hashes[self.profile] = tpool.execute(self.hasher.hash, "timing-equaliser")
        return self._dummy_hashes[self.profile]

    def run(self, function, *args, refuse_when_busy: bool = False, before=None, after=None):
        """`function(*args)` in a slot; `before()`, when given, runs first once the slot is
        held (a sign-in looks at its locks again: they may have been set while it waited),
        and `after(result)` last, still holding it (a wrong password is counted before the
        next guess in line looks at the locks: 8 parallel guesses let 6 through otherwise)."""
        if not self.slots:
            self.free = self.slots = 1
        if refuse_when_busy and self.waiting >= WAITING_PER_SLOT * self.slots:
            raise self._busy()
        self._acquire(SIGN_IN_WAIT_SECONDS if refuse_when_busy else None)
        try:
            if before is not None:
                before()
            result = tpool.execute(_below_the_hub, function, *args)
            if after is not None:
                after(result)
            return result
        finally:
            self.free += 1
            self._hand_over()

    def _acquire(self, timeout: float | None) -> None:
        if self.free > 0 and not self.queue:
            self.free -= 1
            return
        turn = Event()
        self.queue.append(turn)
        timer = eventlet.Timeout(timeout)
        try:
            turn.wait()
        except BaseException as exc:  # our timeout, or the worker is being killed
            if turn.ready():  # the slot came at the same moment
                if exc is timer:
                    return
                self.free += 1
                self._hand_over()
            else:
                self.queue.remove(turn)
            if exc is timer:
                raise self._busy() from None
            raise
        finally:
            timer.cancel()

    def _hand_over(self) -> None:
        """Free slots go to the oldest waiters, directly (no newcomer overtakes them)."""
        while self.free > 0 and self.queue:
            self.free -= 1
            self.queue.popleft().send(True)

    @staticmethod
    def _busy() -> TooManyRequests:
        return TooManyRequests("too many sign-ins at once; try again shortly",
                               details={"retry_after_seconds": 1})


hashing = HashingSlots()  # one per process: the slots bound this process's argon2


def hash_password(settings, password: str) -> str:
    domain.check_password(password)
    hashing.configure(settings)
    return hashing.run(hashing.hasher.hash, password)  # argon2 is slow by design: off the hub


def password_matches(settings, password_hash: str | None, password: str, refuse_when_busy: bool = False,
                     before=None, after=None) -> bool:
    """Whether `password` is the one hashed; `before` and `after(matched)` run in the hashing
    slot (HashingSlots.run)."""
    if password_hash is None:
        if after is not None:
            after(False)
        return False
    hashing.configure(settings)
    return hashing.run(_verifies, hashing.hasher, password_hash, password, refuse_when_busy=refuse_when_busy,
                       before=before, after=after)


def _verifies(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# a password someone may be guessing: the sign-in throttle (services/accounts/throttle.py) ---

def refuse_while_locked(uow, limits: dict, now) -> None:
    """429 while any of these keys ({key: throttle.Limit}) is locked."""
    rows = uow.repo.throttle_counts(limits)
    wait = throttle.retry_after_seconds(
        (throttle.Count(row.failures, row.window_started_at, row.locked_until) for row in rows.values()), now)
    if wait is not None:
        raise TooManyRequests("too many failed sign-ins; try again later",
                              details={"retry_after_seconds": wait})


def count_failure(uow, limits: dict, now) -> None:
    """One more failure for each key, in one short transaction of its own; expired rows go
    on the way (the storage-maintenance job removes the rest)."""
    rows = uow.repo.throttle_rows_for_update(limits, now)
    for key, limit in limits.items():
        row = rows[key]
        count = throttle.after_failure(
            throttle.Count(row.failures, row.window_started_at, row.locked_until) if row.failures else None,
            limit, now)
        row.failures, row.window_started_at, row.locked_until = \
            count.failures, count.window_started_at, count.locked_until
        row.expires_at, row.updated_at = count.expires_at(limit), now
    uow.repo.flush()
    uow.repo.purge_throttles(now, limit=100)
    uow.commit()


def throttled_in_the_slot(source: UnitOfWorkSource, limits: dict):
    """(before, after) for password_matches: the locks looked at again once the hashing slot
    is ours, and a wrong password counted before the slot is let go — each in a transaction
    of its own."""
    def still_unlocked():
        with source.unit_of_work() as check:
            refuse_while_locked(check, limits, utcnow())

    def counted_when_wrong(matched: bool):
        if not matched:
            with source.unit_of_work() as count:
                count_failure(count, limits, utcnow())

    return still_unlocked, counted_when_wrong


# a person changing their own password -------------------------------------------------------

def change_password(source: UnitOfWorkSource, settings, principal: dict, payload: dict,
                    client_address: str | None = None) -> None:
    """A signed-in person changes their own password, proving the current one; their other
    sessions end, the one asking (`principal["session_id"]`) lives on. Wrong current
    passwords count as failed sign-ins, per account and per `client_address`."""
    actor = domain.Actor.from_dict(principal)
    session_id = parse_id(principal.get("session_id"), "session")
    data = load(contract.PasswordChange, payload)
    domain.check_password(data["new_password"], field="new_password")
    hashing.configure(settings)
    with source.unit_of_work() as uow:
        user = user_in_tenant(uow, actor.tenant_id, actor.user_id)
        if user.merged_into_id is not None:
            raise Unauthorized("invalid or expired token", code="invalid_token")
        # the current password is guessed like a sign-in's: the same account counter and
        # lock-out, and the same bounded wait for a hashing slot
        policy = throttle.Policy.from_settings(settings)
        account_key = throttle.account_key(str(user.tenant_id), domain.normalize_email(user.email))
        limits = {account_key: policy.account}
        address_key = throttle.address_key(client_address)
        if address_key is not None:
            limits[address_key] = policy.address
        refuse_while_locked(uow, limits, utcnow())
        still_unlocked, counted_when_wrong = throttled_in_the_slot(source, limits)
        if not password_matches(settings, user.password_hash, data["current_password"],
                                refuse_when_busy=True, before=still_unlocked, after=counted_when_wrong):
            raise Forbidden("the current password is wrong", code="wrong_password",
                            details={"fields": {"current_password": ["does not match"]}})
        now = utcnow()
        user.password_hash = hash_password(settings, data["new_password"])
        user.updated_at = now  # no event: no other service keeps anything of a password
        uow.repo.revoke_sessions_of(user.id, now, keep=session_id)
        uow.commit()
