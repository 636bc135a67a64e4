"""A fake unit of work for the use-case handlers' fast unit tests (cosmicpython's
test_handlers.py shape): no broker, no database. The repository is whatever fake the test
gives; events are validated against their contracts exactly as the real outbox does, and
kept only when the unit of work commits."""
from __future__ import annotations

from common.events import validate_event
from common.unit_of_work import AbstractUnitOfWork


class FakeUnitOfWork(AbstractUnitOfWork):
    def __init__(self, store: "FakeStore", read_only: bool = False):
        self._store = store
        self.read_only = read_only
        self.repo = store.repo
        self._pending: list[dict] = []

    def __exit__(self, *exc_info) -> None:
        self._pending = []

    def emit(self, event_type: str, payload: dict) -> dict:
        if self.read_only:
            raise RuntimeError("a read-only unit of work cannot emit events")
        message = validate_event(self._store.service, event_type, payload)
        self._pending.append({"type": event_type, **message})
        return message

    def commit(self) -> None:
        if self.read_only:
            raise RuntimeError("a read-only unit of work cannot commit")
        self._store.events.extend(self._pending)
        self._pending = []
        self._store.commits += 1


class FakeStore:
    """Opens fake units of work over one fake repository; `events` holds what committed,
    `commits` how many times."""

    def __init__(self, service: str, repo=None):
        self.service = service
        self.repo = repo
        self.events: list[dict] = []
        self.commits = 0

    def unit_of_work(self, read_only: bool = False) -> FakeUnitOfWork:
        return FakeUnitOfWork(self, read_only=read_only)
