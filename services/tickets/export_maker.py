"""Report exports are made as soon as they are asked for, without waiting for the
scheduler's runner job (off by default).

A green thread per tickets process runs the `@export_maker` method in a worker: when a
request has just committed an export (`wake_export_maker()`), at start-up, and every
`recovery_seconds` — so what a crash left behind (an export committed but never started, or
one whose maker was killed mid-file) is made again within about a minute by any replica.
One run at a time per process; wake-ups during a run coalesce into one more run. Makers in
other processes (replicas, the runner job) are kept apart by the claim on the row.
"""
from __future__ import annotations

import logging

import eventlet
from eventlet.event import Event
from nameko.extensions import DependencyProvider, Entrypoint

from common.wakeups import Wakeups

log = logging.getLogger(__name__)

RECOVERY_SECONDS = 60.0


class ExportWakeups(Wakeups):
    """Shared by the entrypoint and the dependency, as the scheduler's JobTable is."""


class ExportMakerWakeup(DependencyProvider):
    """`self.wake_export_maker()` in a worker, after the commit of a new export."""

    wakeups = ExportWakeups()

    def get_dependency(self, worker_ctx):
        return self.wakeups.wake


class ExportMaker(Entrypoint):
    wakeups = ExportWakeups()

    def __init__(self, recovery_seconds: float = RECOVERY_SECONDS, **kwargs):
        self.recovery_seconds = recovery_seconds
        self._running = False
        super().__init__(**kwargs)

    def start(self):
        self._running = True
        self.container.spawn_managed_thread(self._loop)

    def stop(self):
        self._running = False
        self.wakeups.wake()

    def kill(self):
        self.stop()

    def _loop(self):
        while self._running:
            finished = Event()
            try:
                self.container.spawn_worker(self, (), {}, handle_result=lambda worker_ctx, result, exc_info: (
                    finished.send(), (result, exc_info))[1])
                finished.wait()  # the method logs its own failures; the next run retries
            except Exception as exc:  # the container is stopping, or cannot take a worker now
                if not self._running:
                    return
                log.warning("export maker could not start a run: %s", exc)
                eventlet.sleep(1.0)
            self.wakeups.wait(self.recovery_seconds)


export_maker = ExportMaker.decorator
