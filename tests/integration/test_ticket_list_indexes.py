"""A filtered ticket page over 100,000 tickets is read through an index, not a sequential
scan: the query is the one the repository builds, explained by PostgreSQL itself."""
import uuid

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from common.config import Settings
from common.db import create_service_engine
from services.tickets.listing import _RECENT_STATEMENTS
from services.tickets.models import CompanySnapshot, Person
from services.tickets.storage import TicketsRepository

TICKETS = 100_000


@pytest.fixture(scope="module")
def seeded(private_database):
    engine = create_service_engine(Settings(database_url=private_database), "tickets")
    tenant, other_tenant, queue = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    agents = [uuid.uuid4() for _ in range(20)]
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO queues (id, tenant_id, name, name_normalized, created_at) "
            "VALUES (:q, :t, 'Chamados', 'chamados', now())"), {"q": queue, "t": tenant})
        connection.execute(text("""
            INSERT INTO tickets (id, tenant_id, reference, subject, description, priority, status,
                                 queue_id, assignee_id, worked_internal_seconds,
                                 worked_external_seconds, created_at, updated_at)
            SELECT gen_random_uuid(), CASE WHEN g % 10 = 0 THEN :other ELSE :tenant END, g,
                   'Ticket ' || g, '', (ARRAY['LOW','MEDIUM','HIGH','URGENT'])[1 + g % 4],
                   (ARRAY['PENDING','AWAITING_ATTENDANCE','PAUSED','RESOLVED'])[1 + (g / 7) % 4],
                   :queue,
                   CASE WHEN g % 21 = 0 THEN NULL ELSE (CAST(:agents AS uuid[]))[1 + g % 20] END,
                   0, 0, now() - g * interval '1 minute', now() - g * interval '1 minute'
            FROM generate_series(1, :n) AS g"""),
            {"tenant": tenant, "other": other_tenant, "queue": queue, "n": TICKETS,
             "agents": [str(a) for a in agents]})
        connection.execute(text("ANALYZE tickets"))
    yield engine, tenant, agents
    engine.dispose()


def plan_of(engine, filters, tenant):
    with Session(engine) as session:
        statement = TicketsRepository(session).list_query(tenant, filters, limit=51)
        sql = statement.compile(engine, compile_kwargs={"literal_binds": True})
        rows = session.execute(text(f"EXPLAIN {sql}")).scalars().all()
    return "\n".join(rows)


@pytest.mark.parametrize("filters", [
    {"assignee_id": "AGENT", "status": "PENDING"},
    {"assignee_id": "unassigned", "status": "PAUSED"},
    {"assignee_id": "AGENT"},
    {"status": "RESOLVED"},
    {},
], ids=["assignee+status", "unassigned+status", "assignee", "status", "no-filter"])
def test_filtered_page_uses_an_index(seeded, filters):
    engine, tenant, agents = seeded
    if filters.get("assignee_id") == "AGENT":
        filters = {**filters, "assignee_id": str(agents[3])}
    plan = plan_of(engine, filters, tenant)
    assert "Seq Scan on tickets" not in plan, plan
    assert "Index" in plan, plan


def test_assignee_and_status_use_their_own_index(seeded):
    engine, tenant, agents = seeded
    plan = plan_of(engine, {"assignee_id": str(agents[5]), "status": "AWAITING_ATTENDANCE"}, tenant)
    assert "ix_tickets_tenant_assignee_status_created" in plan, plan


def test_recent_reads_the_unassigned_through_their_own_index(seeded):
    """The dashboard's first part (the unassigned, oldest first) walks the partial index
    instead of sorting every unassigned ticket of the tenant."""
    engine, tenant, _ = seeded
    with Session(engine) as session:
        repo = TicketsRepository(session)
        repo.recent(tenant, 50)
        statement = _RECENT_STATEMENTS[(True, "recent", False)]  # PostgreSQL, staff (every requester)
        sql = statement.compile(engine)
        plan = "\n".join(session.connection().exec_driver_sql(
            "EXPLAIN " + str(sql), {**sql.params, "tenant_id": tenant, "limit": 50}).scalars())
    assert "ix_tickets_tenant_unassigned_created" in plan, plan
    assert "Seq Scan on tickets" not in plan, plan


def update_plans(engine, action):
    """PostgreSQL's plan of each UPDATE that `action(repo)` sends, rolled back afterwards."""
    sent = []

    def note(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE"):
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", note)
    try:
        with Session(engine) as session:
            action(TicketsRepository(session))
            connection = session.connection()
            plans = ["\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters))
                     for statement, parameters in sent]
            session.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return plans


def test_snapshot_refreshes_look_tickets_up_by_tenant(seeded):
    """A user's or company's event updates the names copied onto tickets: each update is an
    index lookup from the tenant, not a walk over every ticket (PostgreSQL 15 has no skip scan)."""
    engine, tenant, agents = seeded
    person = Person(id=agents[2], tenant_id=tenant, name="Ana", email="ana@example.test", role="agent")
    company = CompanySnapshot(id=uuid.uuid4(), tenant_id=tenant, name="Acme")
    plans = update_plans(engine, lambda repo: (repo.refresh_person_snapshots(person),
                                                repo.refresh_company_snapshots(company)))
    assert len(plans) == 3, plans
    for plan in plans:
        assert "Seq Scan" not in plan, plan
        assert "Index Cond: ((tenant_id =" in plan, plan
