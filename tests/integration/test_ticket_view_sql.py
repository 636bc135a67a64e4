"""On PostgreSQL a list page's views are written by the database (listing.TICKET_VIEW_JSON),
elsewhere by `views.ticket_view` (itself held equal to the documented schema's dump by
tests/unit/test_ticket_views.py). Whatever a ticket holds, both must read the same; and the
statements kept per shape must answer each call with its own values."""
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from common.config import Settings
from common.db import create_service_engine
from services.tickets import domain
from services.tickets.models import VIEW_COLUMNS, Ticket
from services.tickets.storage import TicketsRepository
from services.tickets.views import ticket_view

maybe_uuid = st.none() | st.uuids()
# PostgreSQL's text holds any character but NUL (and UTF-8 none of the lone surrogates)
words = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-3))]))
whole_seconds = moments.map(lambda moment: moment.replace(microsecond=0))


@pytest.fixture(scope="module")
def engine(private_database):
    engine = create_service_engine(Settings(database_url=private_database), "tickets")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO queues (id, tenant_id, name, name_normalized, created_at) "
                                "VALUES (:q, :t, 'Chamados', 'chamados', now())"),
                           {"q": QUEUE, "t": uuid.uuid4()})
    yield engine
    engine.dispose()


QUEUE = uuid.uuid4()


def as_read(view) -> dict:
    """A view as its caller reads it, off the wire."""
    return orjson.loads(orjson.dumps(view))


@st.composite
def tickets(draw):
    return dict(
        id=uuid.uuid4(), tenant_id=uuid.uuid4(), reference=draw(st.integers(1, 2**31 - 1)),
        subject=draw(words), description=draw(words),
        priority=draw(st.sampled_from(["LOW", "MEDIUM", "HIGH", "URGENT"])),
        status=draw(st.sampled_from(sorted(domain.STATUS_LABELS))), queue_id=QUEUE,
        requester_id=draw(maybe_uuid), requester_name=draw(st.none() | words),
        requester_email=draw(st.none() | words), assignee_id=draw(maybe_uuid),
        assignee_name=draw(st.none() | words), assignee_email=draw(st.none() | words),
        company_id=draw(maybe_uuid), company_name=draw(st.none() | words), machine_id=draw(maybe_uuid),
        worked_internal_seconds=draw(st.integers(0, 10**12)),
        worked_external_seconds=draw(st.integers(0, 10**12)),
        created_at=draw(moments | whole_seconds), updated_at=draw(moments | whole_seconds),
        resolved_at=draw(st.none() | moments | whole_seconds))


@settings(max_examples=80, deadline=None)
@given(tickets())
def test_the_database_writes_the_view_ticket_view_writes(engine, values):
    with Session(engine) as session:
        session.add(Ticket(**values))
        session.commit()
        repo = TicketsRepository(session)
        row = session.execute(select(*VIEW_COLUMNS).where(Ticket.id == values["id"])).one()
        (written, created_at, ticket_id), = repo.page(values["tenant_id"], {})
        assert isinstance(written, orjson.Fragment)
        assert as_read(written) == ticket_view(row)
        assert (created_at, ticket_id) == (row.created_at, row.id)
        recent, = repo.recent(values["tenant_id"], 10)
        assert as_read(recent) == ticket_view(row)


def test_a_kept_statement_answers_each_call_with_its_own_values(engine):
    tenant, agent = uuid.uuid4(), uuid.uuid4()
    start = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    with Session(engine) as session:
        for n in range(6):
            session.add(Ticket(id=uuid.uuid4(), tenant_id=tenant, reference=n + 1, subject=f"Chamado {n}",
                               description="", priority="LOW",
                               status=domain.PAUSED if n % 2 else domain.PENDING, queue_id=QUEUE,
                               assignee_id=agent if n < 3 else None, worked_internal_seconds=0,
                               worked_external_seconds=0, created_at=start + timedelta(minutes=n),
                               updated_at=start + timedelta(minutes=n)))
        session.commit()
        repo = TicketsRepository(session)

        def references(filters, after=None, limit=50):
            return [as_read(view)["reference"]
                    for view, _, _ in repo.page(tenant, filters, after=after, limit=limit)]

        assert references({"status": domain.PAUSED}) == [6, 4, 2]
        assert references({"status": domain.PENDING}) == [5, 3, 1]  # same shape, other value
        assert references({"assignee_id": "unassigned"}) == [6, 5, 4]
        assert references({"assignee_id": str(agent)}) == [3, 2, 1]
        first = repo.page(tenant, {}, limit=2)
        assert [as_read(view)["reference"] for view, _, _ in first] == [6, 5]
        _, created_at, last_id = first[-1]
        assert references({}, after=(created_at, last_id), limit=2) == [4, 3]
        assert references({"status": domain.RESOLVED}) == []


def test_recent_shows_the_unassigned_oldest_first_then_the_latest_updated(engine):
    tenant, agent = uuid.uuid4(), uuid.uuid4()
    start = datetime(2026, 4, 1, 9, tzinfo=timezone.utc)
    with Session(engine) as session:
        for n in range(8):  # 1-4 unassigned, 5-8 assigned; updated in the reverse order
            session.add(Ticket(id=uuid.uuid4(), tenant_id=tenant, reference=n + 1, subject=f"Chamado {n}",
                               description="", priority="LOW", status=domain.PENDING, queue_id=QUEUE,
                               assignee_id=agent if n >= 4 else None, worked_internal_seconds=0,
                               worked_external_seconds=0, created_at=start + timedelta(minutes=n),
                               updated_at=start + timedelta(hours=1, minutes=-n)))
        session.commit()
        repo = TicketsRepository(session)

        def references(limit, **kwargs):
            return [as_read(view)["reference"] for view in repo.recent(tenant, limit, **kwargs)]

        assert references(10) == [1, 2, 3, 4, 5, 6, 7, 8]
        assert references(6) == [1, 2, 3, 4, 5, 6]
        assert references(3) == [1, 2, 3]
        assert references(10, only_requester=uuid.uuid4()) == []
