"""Queues: every tenant has "Chamados" (made on the tenant's event or first use); staff add more."""
from __future__ import annotations

import uuid

from common.actor import Actor
from common.contracts import load, parse_id
from common.contracts import tickets as contract
from common.db import utcnow
from common.errors import Conflict, NotFound
from common.unit_of_work import UnitOfWorkSource
from services.tickets import domain
from services.tickets.permissions import require_staff
from services.tickets.models import QueueRef, TicketQueue


def default_queue(uow, tenant_id) -> TicketQueue:
    """"Chamados" exists in every tenant; created on the tenant's event or first use."""
    queue = uow.repo.queue_by_name(tenant_id, domain.DEFAULT_QUEUE.lower())
    if queue is None:  # the tenant's event and a first request may both get here
        uow.repo.insert_missing(TicketQueue, ("tenant_id", "name_normalized"), id=uuid.uuid4(),
                                tenant_id=tenant_id, name=domain.DEFAULT_QUEUE,
                                name_normalized=domain.DEFAULT_QUEUE.lower(), created_at=utcnow())
        queue = uow.repo.queue_by_name(tenant_id, domain.DEFAULT_QUEUE.lower())
    return queue


def find_queue(uow, actor: Actor, queue_id) -> QueueRef:
    queue = uow.repo.queue(actor.tenant_id, parse_id(queue_id, "queue"))
    if queue is None:
        raise NotFound("queue not found", code="queue_not_found")
    return queue


def list_queues(source: UnitOfWorkSource, actor: Actor) -> dict:
    with source.unit_of_work() as uow:
        queues = uow.repo.queues(actor.tenant_id)
        if not any(queue.name_normalized == domain.DEFAULT_QUEUE.lower() for queue in queues):
            default_queue(uow, actor.tenant_id)  # a read writes only the first time
            uow.commit()
            queues = uow.repo.queues(actor.tenant_id)
        return contract.QueueList().dump({"items": queues})


def create_queue(source: UnitOfWorkSource, actor: Actor, payload: dict) -> dict:
    require_staff(actor, "create queues")
    data = load(contract.QueueCreate, payload)
    name = " ".join(data["name"].split())
    with source.unit_of_work() as uow:
        if uow.repo.queue_by_name(actor.tenant_id, name.lower()) is not None:
            raise Conflict(f"queue {name!r} exists", code="queue_exists")
        queue = uow.repo.add(TicketQueue(tenant_id=actor.tenant_id, name=name, name_normalized=name.lower()))
        uow.commit()
        return contract.Queue().dump(queue)
