"""`q` over 100,000 tickets (PostgreSQL): a rare word is read through the GIN index on
tickets.search_vector, a common word stops early on a newest-first index, and each page —
alone or with other filters — takes well under the issue's 100 ms (EXPLAIN ANALYZE)."""
import re
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from common.config import Settings
from common.contracts.tickets import COUNT_CAP
from common.db import create_service_engine
from services.tickets.listing import sql_fold
from services.tickets.storage import TicketsRepository

TICKETS = 100_000
DOCUMENT = sql_fold("subject || E'\\n' || description")
TOPICS = ("impressora", "vpn", "outlook", "teams", "planilha", "scanner", "notebook", "monitor")


@pytest.fixture(scope="module")
def seeded(private_database):
    engine = create_service_engine(Settings(database_url=private_database), "tickets")
    tenant, other_tenant, queue = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    agents = [uuid.uuid4() for _ in range(20)]
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO queues (id, tenant_id, name, name_normalized, created_at) "
            "VALUES (:q, :t, 'Chamados', 'chamados', now())"), {"q": queue, "t": tenant})
        # every ticket says "problema"; one topic word in 1 of 8; "impressão" (accented) in
        # 1 of 1,000 descriptions; "xilofone" in 5 tickets only
        connection.execute(text(f"""
            INSERT INTO tickets (id, tenant_id, reference, subject, description, priority, status,
                                 queue_id, assignee_id, worked_internal_seconds,
                                 worked_external_seconds, created_at, updated_at, search_vector)
            SELECT id, tenant_id, g, subject, description, priority, status, :queue, assignee_id,
                   0, 0, now() - g * interval '1 minute', now() - g * interval '1 minute',
                   to_tsvector('portuguese'::regconfig,
                               {DOCUMENT})
            FROM (SELECT g, gen_random_uuid() AS id,
                         CASE WHEN g % 10 = 0 THEN CAST(:other AS uuid) ELSE CAST(:tenant AS uuid) END
                             AS tenant_id,
                         'Problema com ' || (CAST(:topics AS text[]))[1 + g % 8] || ' ' || g AS subject,
                         CASE WHEN g % 1000 = 7 THEN 'Falha de impressão no setor'
                              WHEN g % 20000 = 3 THEN 'toca xilofone'
                              ELSE 'Usuário relata lentidão' END AS description,
                         (ARRAY['LOW','MEDIUM','HIGH','URGENT'])[1 + g % 4] AS priority,
                         (ARRAY['PENDING','AWAITING_ATTENDANCE','PAUSED','RESOLVED'])[1 + (g / 7) % 4]
                             AS status,
                         CASE WHEN g % 21 = 0 THEN NULL
                              ELSE (CAST(:agents AS uuid[]))[1 + g % 20] END AS assignee_id
                  FROM generate_series(1, :n) AS g) AS s"""),
            {"tenant": tenant, "other": other_tenant, "queue": queue, "n": TICKETS,
             "agents": [str(a) for a in agents], "topics": list(TOPICS)})
        connection.execute(text("ANALYZE tickets"))
    yield engine, tenant, agents
    engine.dispose()


def explain(engine, tenant, filters, analyze=False, count=False):
    with Session(engine) as session:
        repo = TicketsRepository(session)
        statement = repo.list_query(tenant, filters, limit=51)
        if count:
            statement = repo.count_query(repo.list_query(tenant, filters), COUNT_CAP)
        sql = statement.compile(engine, compile_kwargs={"literal_binds": True})
        rows = session.execute(text(f"EXPLAIN {'ANALYZE' if analyze else ''} {sql}")).scalars().all()
    return "\n".join(rows)


def timed(engine, tenant, filters, count=False) -> float:
    """The best of three EXPLAIN ANALYZE execution times, in ms."""
    times = []
    for _ in range(3):
        plan = explain(engine, tenant, filters, analyze=True, count=count)
        times.append(float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1)))
    print(f"q page {filters} count={count}: {min(times):.2f} ms\n{plan}")
    return min(times)


def test_a_rare_word_uses_the_gin_index(seeded):
    engine, tenant, _ = seeded
    for q in ("xilofone", "impressao", "impressão"):
        plan = explain(engine, tenant, {"q": q})
        assert "ix_tickets_search_vector" in plan, plan
        assert "Seq Scan on tickets" not in plan, plan


@pytest.mark.parametrize("filters", [
    {"q": "xilofone"},                                   # 5 tickets
    {"q": "impressao"},                                  # 100 tickets (accent folded)
    {"q": "vpn"},                                        # 1 in 8
    {"q": "problema"},                                   # every ticket
    {"q": "problemas com vpn"},                          # several words (one a stop word)
    {"q": "vpn", "status": "PAUSED"},
    {"q": "impressao", "status": "RESOLVED", "assignee_id": "AGENT"},
    {"q": "problema", "assignee_id": "AGENT", "status": "PENDING"},
    {"q": "problema", "created_from": datetime(2020, 1, 1, tzinfo=timezone.utc)},
], ids=["rare", "uncommon", "common", "every", "words", "common+status", "uncommon+assignee+status",
        "every+assignee+status", "every+created"])
def test_a_search_page_takes_well_under_100_ms(seeded, filters):
    engine, tenant, agents = seeded
    if filters.get("assignee_id") == "AGENT":
        filters = {**filters, "assignee_id": str(agents[3])}
    plan = explain(engine, tenant, filters)
    assert "Seq Scan on tickets" not in plan, plan
    assert timed(engine, tenant, filters) < 100


@pytest.mark.parametrize("filters", [{"q": "xilofone"}, {"q": "vpn"}, {"q": "problema"}, {}],
                         ids=["rare", "common", "every", "no-filter"])
def test_a_capped_count_is_bounded(seeded, filters):
    engine, tenant, _ = seeded
    assert timed(engine, tenant, filters, count=True) < 100
