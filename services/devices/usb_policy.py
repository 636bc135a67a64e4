"""An admin asks a machine's agent to apply a USB policy; the agent acknowledges it in a
heartbeat (heartbeat_state.py), or the sweep marks it stale (sweeps.py)."""
from __future__ import annotations

from datetime import datetime

from common.actor import Actor
from common.contracts import devices as contract
from common.contracts import load
from common.errors import Conflict
from common.unit_of_work import UnitOfWorkSource
from services.devices.queries import find_machine
from services.devices.storage import UsbPolicy


def set_usb_policy(store: UnitOfWorkSource, actor: dict, machine_id, payload: dict, now: datetime) -> dict:
    actor = Actor.from_dict(actor)
    data = load(contract.UsbPolicyRequest, payload)
    with store.unit_of_work() as uow:
        machine = find_machine(uow, actor, machine_id)
        if not machine.usb_policy_supported:  # it would only wait, then go STALE with an alert
            raise Conflict("this machine's agent does not apply USB policies (it did not say it "
                           "does when it registered)", code="usb_policy_unsupported")
        policy = uow.repo.usb_policy(machine.id) or uow.repo.add(
            UsbPolicy(machine_id=machine.id, mode=data["mode"], status="PENDING", requested_at=now))
        policy.mode, policy.status, policy.requested_at = data["mode"], "PENDING", now
        policy.requested_by, policy.applied_at = actor.user_id, None
        uow.commit()
        return contract.UsbPolicy().dump(policy)
