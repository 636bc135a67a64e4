"""What the tickets service asks other services, asked while no unit of work is open.

A use case that needs something only accounts or devices can tell (a person whose
`user_created` event has not arrived yet, a company, whether a machine is the tenant's)
raises `LookupNeeded` from inside its unit of work; `with_lookups` lets that unit of work
roll back, asks, and runs the use case again with the answer in `Answers`. So no RPC waits
inside an open transaction or under a row lock (ENGINEERING.md pitfall 22), and the usual
case, everything already known locally, costs nothing extra.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable, Protocol, TypeVar

Result = TypeVar("Result")


class Directory(Protocol):
    """The other services, as the handlers see them (the adapter's RPCs with a deadline;
    a fake in unit tests)."""

    def user(self, tenant_id, user_id) -> dict: ...

    def company(self, tenant_id, company_id) -> dict: ...

    def machine_in_tenant(self, tenant_id, machine_id, user_id=None) -> bool: ...

    def machines_last_seen(self, machine_ids: list[str]) -> dict: ...


class LookupNeeded(Exception):
    """Raised inside a unit of work: `kind` ("user", "company", "machine") `key` is unknown here.
    A machine is asked as the tenant's, for staff (a collaborator's own machine is checked
    before the unit of work: tickets.check_machine)."""

    def __init__(self, kind: str, tenant_id: uuid.UUID, key: uuid.UUID):
        super().__init__(kind, tenant_id, key)
        self.kind, self.tenant_id, self.key = kind, tenant_id, key


@dataclass
class Answers:
    """What the other services said during this use case, by kind and key."""
    found: dict[tuple[str, uuid.UUID], object] = field(default_factory=dict)

    def get(self, kind: str, key: uuid.UUID):
        return self.found.get((kind, key))

    def has(self, kind: str, key: uuid.UUID) -> bool:
        return (kind, key) in self.found

    def ask(self, directory: Directory, needed: LookupNeeded) -> None:
        if self.has(needed.kind, needed.key):  # asked already: the use case loops on it
            raise RuntimeError(f"{needed.kind} {needed.key} was looked up and is still needed")
        ask = {"user": directory.user, "company": directory.company,
               "machine": directory.machine_in_tenant}[needed.kind]
        self.found[(needed.kind, needed.key)] = ask(str(needed.tenant_id), str(needed.key))


def with_lookups(directory: Directory, use_case: Callable[[Answers], Result],
                 answers: Answers | None = None) -> Result:
    """`use_case(answers)`, run again after each lookup it needed (each is asked once)."""
    answers = answers or Answers()
    while True:
        try:
            return use_case(answers)
        except LookupNeeded as needed:  # its unit of work has rolled back by now
            answers.ask(directory, needed)
