"""The unit of work as the use-case handlers see it: one transaction, the service's
repository, and the events to publish once it commits. `common.db.UnitOfWork` is the real
one (SQLAlchemy + the transactional outbox); `tests/support/fake_uow.py` is the fake the
handlers' fast unit tests run on. Pure: no infrastructure import here (make lint checks)."""
from __future__ import annotations

import abc
from typing import Any, Protocol


class AbstractUnitOfWork(abc.ABC):
    """`with source.unit_of_work() as uow: ...; uow.commit()` — leaving the block without
    commit() discards everything, events included."""

    read_only: bool = False
    repo: Any = None

    def __enter__(self) -> "AbstractUnitOfWork":
        return self

    @abc.abstractmethod
    def __exit__(self, *exc_info) -> None:
        """Roll back whatever was not committed."""

    @abc.abstractmethod
    def emit(self, event_type: str, payload: dict) -> dict:
        """Queue an event, validated against its contract, inside this transaction; it is
        published only if the transaction commits. Returns the event as it will be sent."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Make the changes and the queued events durable together."""


class UnitOfWorkSource(Protocol):
    """What a handler is given: a way to open units of work (`common.db.Store` in a
    service, `tests.support.fake_uow.FakeStore` in a unit test). `read_only`: a read of
    one statement, which can neither commit nor emit."""

    def unit_of_work(self, read_only: bool = False) -> AbstractUnitOfWork: ...
