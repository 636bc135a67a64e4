"""Filing a ticket looks its queue up by key; queues are only ever created, so a queue read
once is kept for the process. Kept or not, another tenant's queue is not found."""
from __future__ import annotations

import uuid

from sqlalchemy import event as sqlalchemy_event

from common.config import Settings
from common.db import Store
from services.tickets.models import TicketQueue, metadata
from services.tickets.storage import TicketsRepository


def test_a_queue_is_read_once_and_stays_invisible_to_other_tenants(private_database):
    tickets = Store(Settings(database_url=private_database), "tickets", TicketsRepository, metadata)
    tenant_id, other_tenant_id = uuid.uuid4(), uuid.uuid4()
    with tickets.unit_of_work() as uow:
        queue = uow.repo.add(TicketQueue(tenant_id=tenant_id, name="Redes", name_normalized="redes"))
        uow.commit()
        queue_id = queue.id
    statements = []
    sqlalchemy_event.listen(tickets.engine, "before_cursor_execute",
                            lambda conn, cursor, statement, *rest: statements.append(statement))
    try:
        for _ in range(3):
            with tickets.unit_of_work() as uow:
                found = uow.repo.queue(tenant_id, queue_id)
                assert (found.id, found.tenant_id, found.name) == (queue_id, tenant_id, "Redes")
                assert uow.repo.queue(other_tenant_id, queue_id) is None
                assert uow.repo.queue(tenant_id, uuid.uuid4()) is None
        queue_reads = [s for s in statements if "FROM tickets.queues" in s or "FROM queues" in s]
        # one read of the queue, then one per unknown id asked for (never kept)
        assert len(queue_reads) == 1 + 3, statements
    finally:
        tickets.dispose()

