"""A background loop's wake-up call: workers say "there is work" after their commit, the loop
waits for that or its poll interval, whichever comes first. Each loop subclasses Wakeups
(nameko shares one instance per class in a container: the loop's entrypoint and the
dependency that wakes it declare the same class)."""
from __future__ import annotations

from eventlet.queue import Empty, LightQueue
from nameko.extensions import SharedExtension


class Wakeups(SharedExtension):
    def setup(self):
        self._wakeups = LightQueue(maxsize=1)  # one pending wake-up is as good as many

    def wake(self) -> None:
        if self._wakeups.qsize() == 0:
            self._wakeups.put_nowait(True)

    def wait(self, timeout: float) -> None:
        try:
            self._wakeups.get(timeout=timeout)
        except Empty:
            pass
