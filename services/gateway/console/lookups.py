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

import copy
import time
from collections import OrderedDict

from eventlet.event import Event
from nameko.extensions import DependencyProvider

from common.config import Settings

MAX_ENTRIES = 10_000


def changes_what_pages_show(method: str, principal: dict | None, machine: bool = False) -> bool:
    """A person's request that may change something (any method but GET and HEAD); a
    machine's heartbeat or an anonymous sign-in changes nothing a page looks up."""
    return method not in ("GET", "HEAD") and principal is not None and not machine


class Lookups:
    def __init__(self, ttl_seconds: float, max_entries: int = MAX_ENTRIES, clock=time.monotonic):
        self.ttl, self.max_entries, self.clock = ttl_seconds, max_entries, clock
        self._entries: OrderedDict[tuple, tuple[float, object]] = OrderedDict()
        self._fetching: dict[tuple, Event] = {}
        self._generation = 0  # bumped by clear(): a fetch begun before a change is not kept

    def get(self, kind: str, principal: dict, fetch):
        """The value of `fetch()` for this person and kind, fetched at most once a TTL; pages
        asking while it is being fetched wait for that one fetch (without it, every page in
        flight when an entry expired asked again at the same moment: the p99's spikes)."""
        if self.ttl <= 0:
            return fetch()
        key = (kind, principal["tenant_id"], principal["user_id"], principal["role"])
        entry = self._entries.get(key)
        if entry is not None and self.clock() < entry[0]:
            return copy.deepcopy(entry[1])  # a page may change its copy, never the cache's
        pending = self._fetching.get(key)
        if pending is not None:
            return copy.deepcopy(pending.wait())  # the fetch's error, if any, is raised here too
        pending = self._fetching[key] = Event()
        generation = self._generation
        try:
            value = fetch()
        except Exception as exc:
            pending.send_exception(exc)
            raise
        finally:
            self._fetching.pop(key, None)
        pending.send(value)
        if generation == self._generation:  # not when a change came during the fetch
            self._entries[key] = (self.clock() + self.ttl, copy.deepcopy(value))
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()
        self._generation += 1


class LookupsProvider(DependencyProvider):
    """One per gateway process (shared by its workers)."""

    def setup(self):
        self.lookups = Lookups(Settings.from_mapping(self.container.config).console_cache_seconds)

    def get_dependency(self, worker_ctx):
        return self.lookups
