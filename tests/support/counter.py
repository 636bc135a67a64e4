"""A counting target for scheduler tests: records every tick it is called with, and how
many calls ran at once."""
import time

import eventlet
from nameko.rpc import rpc


class CounterService:
    name = "counter"
    calls: list = []  # (tick, started, finished), shared by the container's workers
    in_flight = {"now": 0, "max": 0}

    @rpc
    def count(self, tick):
        self._record(tick, 0)

    @rpc
    def slow(self, tick):
        self._record(tick, 2.5)

    @rpc
    def ticks(self):
        return {"calls": [list(c) for c in self.calls], "max_in_flight": self.in_flight["max"]}

    def _record(self, tick, seconds):
        self.in_flight["now"] += 1
        self.in_flight["max"] = max(self.in_flight["max"], self.in_flight["now"])
        started = time.time()
        try:
            eventlet.sleep(seconds)
        finally:
            self.in_flight["now"] -= 1
        self.calls.append((tick, started, time.time()))
