"""Verified bearer tokens remembered for at most a second, so a client's burst of requests
makes one `accounts.authenticate` RPC instead of one per request (issue 14).

The short life is the whole revocation story: a token revoked anywhere (sign-out on another
gateway, `chamados reset-password`, a demotion or a merge made through another gateway) is
refused by every gateway within AUTH_CACHE_SECONDS (default 0.5 s), with no event to miss.
What passes through this gateway takes effect on the next request: a sign-out forgets its
token, and a change to who may do what (a user's role, company or active flag, a merge, a
password change) forgets every token (`Service.call`). Only answers that let someone in are
kept; a refused token is asked again every time.
"""
from __future__ import annotations

import copy
import hashlib
import time
from collections import OrderedDict

from eventlet.event import Event
from nameko.extensions import DependencyProvider

from common.config import Settings

MAX_ENTRIES = 10_000  # distinct tokens seen within a second, far above any real load


class TokenCache:
    def __init__(self, ttl_seconds: float, max_entries: int = MAX_ENTRIES, clock=time.monotonic):
        self.ttl, self.max_entries, self.clock = ttl_seconds, max_entries, clock
        self._entries: OrderedDict[str, tuple[float, dict]] = OrderedDict()
        self._verifying: dict[str, Event] = {}
        self._generation = 0  # bumped by forget() and clear(): an answer asked before is not kept

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()

    def get(self, token: str) -> dict | None:
        if self.ttl <= 0:
            return None
        key = self._key(token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, principal = entry
        if self.clock() >= expires:
            self._entries.pop(key, None)
            return None
        return copy.deepcopy(principal)  # a handler may change its copy, never the cache's

    def put(self, token: str, principal: dict) -> None:
        if self.ttl <= 0:
            return
        key = self._key(token)
        self._entries[key] = (self.clock() + self.ttl, copy.deepcopy(principal))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def verified(self, token: str, verify) -> dict:
        """Whose token this is: remembered, or `verify()` asked once for every request that
        wants it at the same moment (each request in flight when the entry expired asked
        accounts again at once). A refusal raises in all of them and is not kept, nor is an
        answer that a sign-out or a change made while it was asked for would contradict."""
        principal = self.get(token)
        if principal is not None or self.ttl <= 0:
            return principal if principal is not None else verify()
        key = self._key(token)
        pending = self._verifying.get(key)
        if pending is not None:
            return copy.deepcopy(pending.wait())
        pending = self._verifying[key] = Event()
        generation = self._generation
        try:
            principal = verify()
        except Exception as exc:
            pending.send_exception(exc)
            raise
        finally:
            self._verifying.pop(key, None)
        pending.send(principal)
        if generation == self._generation:
            self.put(token, principal)
        return principal

    def forget(self, token: str) -> None:
        self._entries.pop(self._key(token), None)
        self._generation += 1

    def clear(self) -> None:
        self._entries.clear()
        self._generation += 1


class TokenCacheProvider(DependencyProvider):
    """One cache per gateway process (shared by its workers)."""

    def setup(self):
        self.cache = TokenCache(Settings.from_mapping(self.container.config).auth_cache_seconds)

    def get_dependency(self, worker_ctx):
        return self.cache
