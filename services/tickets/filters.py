"""A person's default ticket-list filter ("Salvar filtro como padrão"): one per person,
replaced on save, so it follows them to any browser."""
from __future__ import annotations

import orjson

from common.actor import Actor
from common.contracts import load
from common.contracts import tickets as contract
from common.db import utcnow
from common.unit_of_work import UnitOfWorkSource
from services.tickets.models import SavedFilter


def get_saved_filter(source: UnitOfWorkSource, actor: Actor) -> dict:
    with source.unit_of_work() as uow:
        saved = uow.repo.saved_filter(actor.user_id)
        if saved is None or saved.tenant_id != actor.tenant_id:
            return {"filters": {}, "updated_at": None}
        return contract.SavedFilter().dump({"filters": orjson.loads(saved.filters),
                                            "updated_at": saved.updated_at})


def save_filter(source: UnitOfWorkSource, actor: Actor, payload: dict) -> dict:
    """Replace the person's default filter; only the filters that are set are kept."""
    data = load(contract.SavedFilterUpdate, payload)
    filters = {key: value for key, value in contract.TicketFilters().dump(data["filters"]).items()
               if value is not None}
    with source.unit_of_work() as uow:
        saved = uow.repo.saved_filter(actor.user_id)
        if saved is None:
            saved = uow.repo.add(SavedFilter(user_id=actor.user_id, tenant_id=actor.tenant_id,
                                             filters="{}", updated_at=utcnow()))
        saved.tenant_id, saved.filters, saved.updated_at = \
            actor.tenant_id, orjson.dumps(filters).decode(), utcnow()
        uow.commit()
        return contract.SavedFilter().dump({"filters": filters, "updated_at": saved.updated_at})


def clear_saved_filter(source: UnitOfWorkSource, actor: Actor) -> None:
    with source.unit_of_work() as uow:
        saved = uow.repo.saved_filter(actor.user_id)
        if saved is not None:
            uow.repo.delete(saved)
            uow.commit()
