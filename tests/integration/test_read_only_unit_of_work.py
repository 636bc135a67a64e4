"""A read-only unit of work reads without a transaction (one round trip per statement: no
BEGIN, no ROLLBACK), cannot commit or emit, and leaves the pooled connection transactional
for the next, ordinary unit of work."""
from __future__ import annotations

import uuid

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import select

from common.config import Settings
import common.db
from common.db import Store
from services.tickets.models import CompanySnapshot, metadata
from services.tickets.storage import TicketsRepository


@pytest.fixture
def tickets(private_database):
    store = Store(Settings(database_url=private_database), "tickets", TicketsRepository, metadata)
    yield store
    store.engine.dispose()


def server_side_transaction(uow) -> TransactionStatus:
    """libpq's view of the connection after a statement: INTRANS when a BEGIN was sent
    (and a ROLLBACK or COMMIT will have to follow), IDLE when the statement ran alone."""
    return uow.session.connection().connection.dbapi_connection.info.transaction_status


def test_a_read_only_read_opens_no_transaction(tickets):
    with tickets.unit_of_work(read_only=True) as uow:
        uow.session.execute(select(CompanySnapshot)).all()
        assert server_side_transaction(uow) == TransactionStatus.IDLE
    with tickets.unit_of_work() as uow:
        uow.session.execute(select(CompanySnapshot)).all()
        assert server_side_transaction(uow) == TransactionStatus.INTRANS


def test_a_read_only_unit_of_work_refuses_to_commit_or_emit(tickets):
    with tickets.unit_of_work(read_only=True) as uow:
        with pytest.raises(RuntimeError, match="cannot commit"):
            uow.commit()
        with pytest.raises(RuntimeError, match="cannot emit"):
            uow.emit("ticket_created", {})


def test_the_connection_is_transactional_again_after_a_reader(tickets):
    """The same pooled connection serves a reader, then a writer whose rollback must undo."""
    tickets.engine.pool.dispose()
    company = uuid.uuid4()
    with tickets.unit_of_work(read_only=True) as uow:
        uow.session.execute(select(CompanySnapshot)).all()
    with tickets.unit_of_work() as uow:
        uow.repo.ensure_company(company, uuid.uuid4(), "Nunca gravada")
        uow.session.flush()
    with tickets.unit_of_work(read_only=True) as uow:
        assert uow.session.get(CompanySnapshot, company) is None


def test_a_connection_pinged_after_idling_serves_a_reader(private_database, monkeypatch):
    """The idle ping (common.db.ping_connections_idle_for) must leave no transaction open
    behind it: a reader then switches the connection to autocommit, which psycopg refuses
    inside a transaction."""
    monkeypatch.setattr(common.db, "PING_AFTER_IDLE_SECONDS", 0.0)  # every reuse pings
    pinged = Store(Settings(database_url=private_database), "tickets", TicketsRepository, metadata)
    try:
        with pinged.unit_of_work() as uow:
            uow.session.execute(select(CompanySnapshot)).all()
        with pinged.unit_of_work(read_only=True) as uow:
            uow.session.execute(select(CompanySnapshot)).all()
            assert server_side_transaction(uow) == TransactionStatus.IDLE
        with pinged.unit_of_work() as uow:
            uow.session.execute(select(CompanySnapshot)).all()
            assert server_side_transaction(uow) == TransactionStatus.INTRANS
    finally:
        pinged.engine.dispose()
