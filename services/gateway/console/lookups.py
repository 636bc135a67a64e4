"""What a console page looks up beside its own content — the queues, the companies, the
staff for the pickers, a person's saved filter, the dashboard's counts — reused for
CONSOLE_CACHE_SECONDS (1 s by default) per person, so someone paging through the list makes
one RPC of each a second instead of five RPCs a page (issue 11: these were four of a
/chamados page's five).

As for verified tokens (auth_cache.py) the short life is the bound on staleness for a change
made elsewhere (another gateway, an event); a change made through this gateway (any request
but GET and HEAD, console or API) forgets everything at once. Entries are per person and
per lookup, so no one is ever shown what was fetched for someone else.
"""
from __future__ import annotations

import time

from nameko.extensions import DependencyProvider

from common.config import Settings
from services.gateway.single_flight import MAX_ENTRIES, SingleFlightCache


def changes_what_pages_show(method: str, principal: dict | None, machine: bool = False) -> bool:
    """A person's request that may change something (any method but GET and HEAD); a
    machine's heartbeat or an anonymous sign-in changes nothing a page looks up."""
    return method not in ("GET", "HEAD") and principal is not None and not machine


class Lookups:
    """Lookups by kind and person: no one is ever shown what was fetched for someone else."""

    def __init__(self, ttl_seconds: float, max_entries: int = MAX_ENTRIES, clock=time.monotonic):
        self.kept = SingleFlightCache(ttl_seconds, max_entries, clock)

    def get(self, kind: str, principal: dict, fetch):
        """The value of `fetch()` for this person and kind, fetched at most once a TTL; pages
        asking while it is being fetched wait for that one fetch."""
        key = (kind, principal["tenant_id"], principal["user_id"], principal["role"])
        return self.kept.value(key, fetch)

    def clear(self) -> None:
        self.kept.clear()


class LookupsProvider(DependencyProvider):
    """One per gateway process (shared by its workers)."""

    def setup(self):
        self.lookups = Lookups(Settings.from_mapping(self.container.config).console_cache_seconds)

    def get_dependency(self, worker_ctx):
        return self.lookups
