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

import hashlib
import time

from nameko.extensions import DependencyProvider

from common.config import Settings
from services.gateway.single_flight import MAX_ENTRIES, SingleFlightCache


class TokenCache:
    """Principals by token, kept under the token's SHA-256 (never the token itself)."""

    def __init__(self, ttl_seconds: float, max_entries: int = MAX_ENTRIES, clock=time.monotonic):
        self.kept = SingleFlightCache(ttl_seconds, max_entries, clock)

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()

    def get(self, token: str) -> dict | None:
        return self.kept.get(self._key(token))

    def put(self, token: str, principal: dict) -> None:
        self.kept.put(self._key(token), principal)

    def verified(self, token: str, verify) -> dict:
        """Whose token this is: remembered, or `verify()` asked once for every request that
        wants it at the same moment. A refusal raises in all of them and is not kept, nor is
        an answer that a sign-out or a change made while it was asked for would contradict."""
        return self.kept.value(self._key(token), verify)

    def forget(self, token: str) -> None:
        self.kept.forget(self._key(token))

    def clear(self) -> None:
        self.kept.clear()


class TokenCacheProvider(DependencyProvider):
    """One cache per gateway process (shared by its workers)."""

    def setup(self):
        self.cache = TokenCache(Settings.from_mapping(self.container.config).auth_cache_seconds)

    def get_dependency(self, worker_ctx):
        return self.cache
