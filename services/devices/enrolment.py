"""Enrolment: a machine registers with its company's provisioning code and gets a token;
an admin resets its agent (every token revoked)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from common.actor import Actor
from common.contracts import devices as contract
from common.contracts import load
from common.errors import ValidationFailed
from common.tokens import new_secret_token
from common.unit_of_work import UnitOfWorkSource
from services.devices import domain
from services.devices.links import Accounts, assign
from services.devices.queries import find_machine
from services.devices.storage import Machine, MachineToken


def register(store: UnitOfWorkSource, accounts: Accounts, payload: dict, now: datetime,
             token_ttl: timedelta, amqp_uri: str) -> dict:
    """Enrol a machine with its company's provisioning code; the same hardware in the
    same company (a serial or physical MAC in common) gets its old record back."""
    data = load(contract.Registration, payload)
    found = domain.identifiers(data["mac_addresses"], data["serial_numbers"])
    if not found:
        raise ValidationFailed("send at least one real MAC address or serial number",
                               details={"fields": {"mac_addresses": ["no physical MAC"],
                                                   "serial_numbers": ["no real serial"]}})
    company = accounts("enrolment", data["provisioning_code"], data["collaborator"]["email"],
                       data["collaborator"]["name"])
    tenant_id, company_id = uuid.UUID(company["tenant_id"]), uuid.UUID(company["company_id"])
    machine_user = None
    while True:  # twice at most: the second time with the new machine's user in hand
        with store.unit_of_work() as uow:
            machine = uow.repo.machine_matching(company_id, found)
            reused = machine is not None
            if reused or machine_user is not None:
                if machine is None:
                    # described before its INSERT: one statement, no UPDATE after it
                    machine = Machine(tenant_id=tenant_id, company_id=company_id,
                                      machine_user_id=uuid.UUID(machine_user["id"]), created_at=now)
                    describe(machine, data, company["collaborator"], now)
                    uow.repo.add_machine(machine)
                else:
                    uow.repo.revoke_tokens(machine.id, now)
                    describe(machine, data, company["collaborator"], now)
                uow.repo.replace_identifiers(machine, found, new_machine=not reused)
                token, token_hash = new_secret_token()
                issued = uow.repo.add(MachineToken(machine_id=machine.id, token_hash=token_hash,
                                                   created_at=now, expires_at=now + token_ttl))
                uow.emit("machine_registered", {"tenant_id": tenant_id, "machine_id": machine.id,
                                                "company_id": company_id, "hostname": machine.hostname,
                                                "reused": reused})
                uow.commit()
                held = uow.repo.state(machine.id).inventory_hash if reused else None
                return contract.Enrolment().dump({"machine_id": machine.id, "token": token,
                                                  "expires_at": issued.expires_at, "reused": reused,
                                                  "inventory_hash": held, "amqp_uri": amqp_uri})
        # no machine of the company has this hardware: its machine user is made outside any
        # transaction (and the match looked for again with it in hand)
        machine_user = accounts("create_machine_user", str(tenant_id), str(company_id), data["hostname"])


def describe(machine: Machine, data: dict, collaborator: dict, now: datetime) -> None:
    """What a registration says about the machine: name, OS, persona, its person."""
    os_data = data["os"]
    machine.hostname = data["hostname"]
    machine.os_name, machine.os_version = os_data["name"], os_data["version"]
    machine.os_build, machine.os_arch = os_data["build"], os_data["arch"]
    machine.persona = data["access_role"]
    machine.usb_policy_supported = "usb_policy" in data["capabilities"]
    assign(machine, collaborator)
    machine.updated_at = now


def reset_agent(store: UnitOfWorkSource, actor: dict, machine_id, now: datetime) -> dict:
    """Every token of the machine stops working at once; the agent must re-register."""
    with store.unit_of_work() as uow:
        machine = find_machine(uow, Actor.from_dict(actor), machine_id)
        revoked = uow.repo.revoke_tokens(machine.id, now)
        uow.commit()
        return {"machine_id": str(machine.id), "revoked_tokens": revoked}
