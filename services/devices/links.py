"""A machine's people: its assigned user (and persona), the users linked with it, and what
accounts' events change about them. Accounts is asked before the unit of work that writes
opens (`Accounts`): no transaction waits on it."""
from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from common.actor import Actor
from common.contracts import devices as contract
from common.contracts import load
from common.errors import Conflict, NotFound
from common.unit_of_work import UnitOfWorkSource
from services.devices import domain
from services.devices.queries import find_machine, machine_detail
from services.devices.storage import MachineLink

# accounts(method, *args): accounts' answer to that RPC (with a deadline), asked before any
# unit of work opens, so no transaction waits on another service
Accounts = Callable[..., dict]


def assign(machine, user: dict) -> None:
    """`user` as accounts answered; the same person's newer name, from an event applied
    meanwhile, stays."""
    user_id, version = uuid.UUID(user["id"]), domain.SnapshotVersion.of(user.get("version"))
    if machine.assigned_user_id == user_id and not version.applies_over(machine.assigned_user_version):
        return
    machine.assigned_user_id, machine.assigned_user_version = user_id, version.stored
    machine.assigned_user_email, machine.assigned_user_name = user["email"], user["name"]


def _machine_seen(store: UnitOfWorkSource, actor: Actor, machine_id):
    """The machine, read before asking accounts about it (a missing one is refused first)."""
    with store.unit_of_work(read_only=True) as uow:
        return find_machine(uow, actor, machine_id)


def adjust_access(store: UnitOfWorkSource, accounts: Accounts, thresholds, actor: dict, machine_id,
                  payload: dict, now: datetime) -> dict:
    """The machine's person (made when absent, as accounts' `ensure_person` does) and persona."""
    actor = Actor.from_dict(actor)
    data = load(contract.Access, payload)
    seen = _machine_seen(store, actor, machine_id)
    user = accounts("ensure_person", str(seen.tenant_id), data["email"], data["name"], str(seen.company_id))
    with store.unit_of_work() as uow:
        machine = find_machine(uow, actor, machine_id)
        assign(machine, user)
        machine.persona, machine.updated_at = data["persona"], now
        uow.repo.unlink(machine.id, machine.assigned_user_id)  # the assigned user is not a link
        uow.commit()
        return machine_detail(uow, machine, thresholds, now)


def add_link(store: UnitOfWorkSource, accounts: Accounts, thresholds, actor: dict, payload: dict,
             now: datetime) -> dict:
    actor = Actor.from_dict(actor)
    data = load(contract.LinkCreate, payload)
    seen = _machine_seen(store, actor, data["machine_id"])
    # a link is to someone who already exists: an unknown email is refused, not a new
    # person (the machine's own user is made by registration or `access`)
    user = accounts("find_person", str(seen.tenant_id), data["email"])
    user_id = uuid.UUID(user["id"])
    with store.unit_of_work() as uow:
        machine = find_machine(uow, actor, data["machine_id"])
        if user_id == machine.assigned_user_id:
            raise Conflict("the assigned user is not a link", code="already_assigned")
        if uow.repo.link(machine.id, user_id) is None:
            uow.repo.add(MachineLink(machine_id=machine.id, user_id=user_id, user_email=user["email"],
                                     user_name=user["name"],
                                     user_version=domain.SnapshotVersion.of(user.get("version")).stored))
        uow.commit()
        return machine_detail(uow, machine, thresholds, now)


def remove_link(store: UnitOfWorkSource, thresholds, actor: dict, query: dict, now: datetime) -> dict:
    actor = Actor.from_dict(actor)
    data = load(contract.LinkQuery, query)
    with store.unit_of_work() as uow:
        machine = find_machine(uow, actor, data["machine_id"])
        link = uow.repo.link(machine.id, data["user_id"])
        if link is None:
            raise NotFound("no such link", code="link_not_found")
        uow.repo.delete(link)
        uow.commit()
        return machine_detail(uow, machine, thresholds, now)


def user_updated(store: UnitOfWorkSource, event: dict) -> None:
    """A person's new email or name, on their machines and links."""
    with store.unit_of_work() as uow:
        if uow.repo.first_delivery(event, "user_updated"):
            uow.repo.rename_user(uuid.UUID(event["user_id"]), domain.SnapshotVersion.of(event.get("version")),
                                 event["email"], event["name"])
            uow.commit()


def user_merged(store: UnitOfWorkSource, accounts: Accounts, event: dict) -> None:
    """The merged account's machines and links now belong to the account it joined, as
    accounts describes it (asked first; not at all for an event already handled)."""
    with store.unit_of_work(read_only=True) as uow:
        if uow.repo.handled(event):
            return
    old_id, new_id = uuid.UUID(event["from_user_id"]), uuid.UUID(event["into_user_id"])
    into = accounts("lookup_user", event["tenant_id"], str(new_id))
    into_version = domain.SnapshotVersion.of(into.get("version")).stored
    with store.unit_of_work() as uow:
        if not uow.repo.first_delivery(event, "user_merged"):  # another consumer was first
            return
        uow.repo.reassign_machines(old_id, new_id, into["email"], into["name"], into_version)
        for link in uow.repo.links_of_user(old_id):
            if uow.repo.link(link.machine_id, new_id) is None:
                uow.repo.add(MachineLink(machine_id=link.machine_id, user_id=new_id, user_email=into["email"],
                                         user_name=into["name"], user_version=into_version,
                                         created_at=link.created_at))
            uow.repo.delete(link)
        uow.commit()
