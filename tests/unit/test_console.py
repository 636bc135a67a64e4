"""The console's pure parts: its catalogue covers every word it shows, the buttons a status
offers match what the status machine accepts, redirects stay on the site, values read as
people expect."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from common.contracts.accounts import ROLES
from common.contracts.tickets import PAUSE_REASONS, PRIORITIES, STATUSES, WORK_TYPES
from common.errors import DomainError
from services.gateway.console import catalogue, formatting
from services.gateway.console.views.tickets import allowed_actions, open_chat_id, timeline_text
from services.gateway.console.web import csrf_for_session, local_path
from services.tickets import domain

CONSOLE = Path(__file__).resolve().parents[2] / "services" / "gateway" / "console"
SERVICES = CONSOLE.parents[1]
LITERAL_KEY = re.compile(r"""\bt\(\s*["']([a-z_]+\.[A-Za-z0-9_.]+)["']""")


def literal_keys() -> set[str]:
    sources = list((CONSOLE / "templates").glob("*.html")) + list(CONSOLE.rglob("*.py"))
    # a key ending in "." or "_" is a prefix completed at run time
    return {key for source in sources for key in LITERAL_KEY.findall(source.read_text())
            if not key.endswith((".", "_"))}


def test_every_key_written_in_a_template_or_view_has_a_text():
    keys = literal_keys()
    assert len(keys) > 50  # the pattern still finds them
    assert sorted(key for key in keys if not catalogue.has(key)) == []


@pytest.mark.parametrize("prefix, values", [
    ("status", STATUSES), ("priority", PRIORITIES), ("work_type", WORK_TYPES),
    ("pause_reason", PAUSE_REASONS + domain.AUTOMATIC_PAUSE_REASONS), ("role", ROLES),
    ("chat_end", ("ENDED_BY_USER", "NO_DEVICE", "DEVICE_OFFLINE", "IDLE")),
])
def test_every_value_shown_through_a_built_key_has_a_text(prefix, values):
    assert [value for value in values if not catalogue.has(f"{prefix}.{value}")] == []


def test_every_error_code_a_person_can_meet_reads_in_portuguese():
    raised = set()
    for source in SERVICES.rglob("*.py"):
        raised |= set(re.findall(r'code="([a-z_]+)"', source.read_text()))
    for error_class in DomainError.__subclasses__():
        raised.add(error_class.default_code)
    internal = {"route_not_found", "malformed_json", "invalid_internal_token", "invalid_cron_secret",
                "tenant_exists", "invalid_provisioning_code", "domain_error", "bad_request",
                "unauthorized", "forbidden", "not_found", "conflict", "payload_too_large"}
    assert sorted(code for code in raised - internal if not catalogue.has(f"error.{code}")) == []


def test_a_missing_key_shows_itself_rather_than_failing():
    assert catalogue.translate("no.such.key") == "no.such.key"
    assert catalogue.translate("tickets.created", reference=42) == "Chamado nº 42 aberto."
    assert catalogue.translate_error("no_such_code", "the service's words") == "the service's words"


@pytest.mark.parametrize("status", STATUSES)
def test_the_buttons_of_a_status_are_the_transitions_the_service_accepts(status):
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    someone = uuid.uuid4()
    session = domain.OpenSession("INTERNAL", someone, now) if status == "AWAITING_ATTENDANCE" else None
    state = domain.WorkState(status=status, assignee_id=someone, session=session)
    attempts = {
        "start": lambda: domain.start(state, someone, "INTERNAL", now),
        "pause": lambda: domain.pause(state, "NO_CONTACT", now),
        "resolve": lambda: domain.resolve(state, now, None),
        "reopen": lambda: domain.reopen(state, "agent"),
        "assign": lambda: domain.assign(state, uuid.uuid4()),
    }
    accepted = set()
    for action, attempt in attempts.items():
        try:
            attempt()
            accepted.add(action)
        except DomainError:
            pass
    assert allowed_actions(status) == accepted


def test_the_open_chat_is_the_last_one_started_and_not_ended():
    entry = lambda kind, chat: {"kind": kind, "data": {"chat_id": chat}}  # noqa: E731
    assert open_chat_id([]) is None
    assert open_chat_id([entry("CHAT_STARTED", "a")]) == "a"
    assert open_chat_id([entry("CHAT_STARTED", "a"), entry("CHAT_ENDED", "a")]) is None
    assert open_chat_id([entry("CHAT_STARTED", "a"), entry("CHAT_ENDED", "a"),
                         entry("CHAT_STARTED", "b")]) == "b"


def test_timeline_entries_read_as_sentences():
    agent = str(uuid.uuid4())
    assert timeline_text({"kind": "PAUSED", "data": {"reason": "WAITING_THIRD_PARTY"}}, {}) == \
        "pausou: Aguardando terceiros"
    assert timeline_text({"kind": "ASSIGNED", "data": {"assignee_id": agent, "automatic": True}},
                         {agent: "Ana"}) == "atribuiu a Ana (automático)"
    assert timeline_text({"kind": "RESOLVED", "data": {"message": "feito"}}, {}) == "encerrou o chamado: feito"
    assert timeline_text({"kind": "CREATED", "data": {"queue": "Chamados"}}, {}) == \
        "abriu o chamado na fila Chamados"
    assert timeline_text({"kind": "SOMETHING_NEW", "data": {}}, {}) == "SOMETHING_NEW"


@pytest.mark.parametrize("candidate", [
    "//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)",
    "/chamados\r\nSet-Cookie: x=1", "", None, "chamados", "/" + "a" * 2001,
])
def test_redirects_never_leave_the_site(candidate):
    assert local_path(candidate, "/") == "/"


def test_a_local_path_is_kept():
    assert local_path("/chamados?status=PAUSED", "/") == "/chamados?status=PAUSED"


def test_the_csrf_token_belongs_to_its_session():
    assert csrf_for_session("token-a") == csrf_for_session("token-a")
    assert csrf_for_session("token-a") != csrf_for_session("token-b")
    assert "token-a" not in csrf_for_session("token-a")


def test_values_read_as_people_expect():
    assert formatting.when("2026-12-01T15:04:00+00:00") == "01/12/2026 12:04"  # São Paulo, UTC-3
    assert formatting.when(None) == "—"
    # a stored date at the edge of the calendar (a broken clock) still reads, in UTC
    assert formatting.when("0001-01-01T00:00:00+00:00") == "01/01/1 00:00 UTC"
    assert formatting.when("9999-12-31T23:59:00+00:00") == "31/12/9999 20:59"
    assert formatting.duration(0) == "0 min"
    assert formatting.duration(3 * 3600 + 5 * 60) == "3 h 05 min"
    assert formatting.duration(26 * 3600) == "1 d 2 h"
    assert formatting.size(1536) == "1,5 KB"
    assert formatting.person({"name": None, "email": "a@b.c"}) == "a@b.c"
    assert formatting.join_problems({"status": ["Must be one of: A, B."]}) == "status: Must be one of: A, B."


def test_page_links_walk_forward_and_back_through_keyset_pages():
    from urllib.parse import parse_qs, urlsplit

    from services.gateway.console.views.tickets import page_links

    def query(url):
        return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}

    filters = {"status": "PAUSED"}
    to_second, no_previous = page_links(filters, "", "c2", "")
    assert no_previous is None
    second = query(to_second)
    assert second["cursor"] == "c2" and second["status"] == "PAUSED"
    to_third, back_to_first = page_links(filters, second["cursor"], "c3", second["anteriores"])
    assert query(back_to_first) == {"status": "PAUSED"}
    third = query(to_third)
    last, back_to_second = page_links(filters, third["cursor"], None, third["anteriores"])
    assert last is None
    assert query(back_to_second)["cursor"] == "c2"
    assert query(page_links({}, "c2", None, "-")[1]) == {"todos": "1"}  # no default filter applied


def test_validation_problems_read_in_portuguese_with_their_fields_named():
    from services.gateway.console.web import error_message
    from common.errors import ValidationFailed

    refused = ValidationFailed("invalid input", details={"fields": {
        "filters": {"created_from": ["Not a valid datetime."]}, "status": ["Must be one of: A, B."]}})
    assert error_message(refused) == \
        "Confira os campos (Filtros: Aberto a partir de: data inválida; Status: deve ser um destes: A, B.)"
