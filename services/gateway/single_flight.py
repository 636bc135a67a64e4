"""A TTL cache whose misses are fetched once: the gateway's verified tokens (auth_cache.py)
and the console's lookups (console/lookups.py) are both this.

Every caller that wants a key while it is being fetched waits for that one fetch (without
it, every request in flight when an entry expired asked again at the same moment: the p99's
spikes). A fetch's error is raised in all of them and is not kept; neither is a value
fetched while a `forget` or `clear` happened (a change made meanwhile could contradict it).
Values are deep-copied in and out, so a caller may change its copy, never the cache's.
"""
from __future__ import annotations

import copy
import time
from collections import OrderedDict
from typing import Callable, Hashable

from eventlet.event import Event

MAX_ENTRIES = 10_000  # distinct keys within a TTL, far above any real load


class SingleFlightCache:
    def __init__(self, ttl_seconds: float, max_entries: int = MAX_ENTRIES, clock=time.monotonic):
        self.ttl, self.max_entries, self.clock = ttl_seconds, max_entries, clock
        self._entries: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()
        self._fetching: dict[Hashable, Event] = {}
        self._generation = 0  # bumped by forget() and clear(): a value fetched before is not kept

    def get(self, key: Hashable):
        """The value kept for `key`, or None (none, expired, or the cache is off: TTL <= 0)."""
        if self.ttl <= 0:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self.clock() >= expires:
            self._entries.pop(key, None)
            return None
        return copy.deepcopy(value)

    def put(self, key: Hashable, value) -> None:
        if self.ttl <= 0:
            return
        self._entries[key] = (self.clock() + self.ttl, copy.deepcopy(value))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def value(self, key: Hashable, fetch: Callable[[], object]):
        """The value kept for `key`, or `fetch()` asked once for every caller that wants it now."""
        if self.ttl <= 0:
            return fetch()
        kept = self.get(key)
        if kept is not None:
            return kept
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
            self.put(key, value)
        return value

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)
        self._generation += 1

    def clear(self) -> None:
        self._entries.clear()
        self._generation += 1

    def keys(self) -> list:
        """The keys kept (expired ones included until asked for), oldest first."""
        return list(self._entries)
