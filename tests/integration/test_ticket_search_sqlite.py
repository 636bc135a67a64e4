"""`q` on the embedded default (SQLite, FTS5): tickets made before the search migration are
found after it (backfill), accents fold both ways, internal comments are not searched, and an
edit replaces the ticket's entry. The API's behaviour on PostgreSQL is tests/e2e/test_ticket_search.py."""
import uuid

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.orm import Session

from common.config import Settings
from common.db import create_service_engine, utcnow
from common.migrate import alembic_config
from services.tickets.models import Comment, Ticket
from services.tickets.storage import TicketsRepository

BEFORE_SEARCH = "d8f2a4c6e1b3"


@pytest.fixture
def engine(tmp_path):
    engine = create_service_engine(Settings(database_url=f"sqlite:///{tmp_path}/tickets.db"), "tickets")
    yield engine
    engine.dispose()


def test_sqlite_search_backfills_folds_accents_and_skips_internal_comments(engine):
    tenant, queue, old = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with engine.begin() as connection:
        command.upgrade(alembic_config("tickets", connection), BEFORE_SEARCH)
    with engine.begin() as connection:  # a ticket and comments from before the upgrade
        connection.execute(text(
            "INSERT INTO queues (id, tenant_id, name, name_normalized, created_at) "
            "VALUES (:q, :t, 'Chamados', 'chamados', '2026-01-01')"), {"q": queue.hex, "t": tenant.hex})
        connection.execute(text(
            "INSERT INTO tickets (id, tenant_id, reference, subject, description, priority, status, "
            "queue_id, worked_internal_seconds, worked_external_seconds, created_at, updated_at) "
            "VALUES (:i, :t, 1, 'Antigo', 'O Outlook fecha', 'LOW', 'PENDING', :q, 0, 0, "
            "'2026-01-01', '2026-01-01')"), {"i": old.hex, "t": tenant.hex, "q": queue.hex})
        for visibility, body in (("PUBLIC", "troquei a impressão"), ("INTERNAL", "firewall")):
            connection.execute(text(
                "INSERT INTO comments (id, ticket_id, author_id, visibility, body, created_at) "
                "VALUES (:c, :i, :a, :v, :b, '2026-01-01')"),
                {"c": uuid.uuid4().hex, "i": old.hex, "a": uuid.uuid4().hex, "v": visibility, "b": body})
    with engine.begin() as connection:
        command.upgrade(alembic_config("tickets", connection), "head")

    with Session(engine) as session:
        repo = TicketsRepository(session)
        new = repo.add_ticket(Ticket(
            tenant_id=tenant, reference=2, subject="Falha de impressao", description="",
            priority="LOW", status="PENDING", queue_id=queue, worked_internal_seconds=0,
            worked_external_seconds=0, created_at=utcnow(), updated_at=utcnow()))
        session.commit()

        def found(q: str) -> list[int]:
            return [t.reference for t in session.scalars(repo.list_query(tenant, {"q": q}))]

        assert found("outlook") == [1]
        assert found("impressao") == [2, 1] and found("IMPRESSÃO") == [2, 1]
        assert found("firewall") == []
        assert found("falha impressão") == [2]
        assert found("%") == []          # punctuation only: the subject, literally
        assert repo.count(repo.list_query(tenant, {"q": "impressao"}), 10) == 2

        new.description = "token do Zabbix"
        repo.index_ticket(new)
        comment = Comment(ticket_id=new.id, author_id=uuid.uuid4(), visibility="PUBLIC",
                          body="reiniciei o servidor", created_at=utcnow())
        session.add(comment)
        session.flush()
        repo.index_comment(new, comment.body)
        session.commit()
        assert found("zabbix servidor") == [2]
        assert session.execute(text("SELECT count(*) FROM tickets_fts")).scalar() == 2

    with engine.begin() as connection:  # and back
        command.downgrade(alembic_config("tickets", connection), BEFORE_SEARCH)
        command.upgrade(alembic_config("tickets", connection), "head")
