"""The SQL of the ticket list: search (`q`), the view PostgreSQL writes for each row, and
list statements built once per shape (TicketsRepository.page and .recent run them)."""
from __future__ import annotations

import re
import unicodedata
import uuid

from sqlalchemy import Text, bindparam, case, cast, func, literal_column, null, select, text, tuple_

from common.db import UTCDateTime, escape_like
from services.tickets import domain
from services.tickets.models import Ticket

# Search (`q`). What is searched: the subject, the description and the PUBLIC comments (an
# internal note's words find nothing, for anyone: one index, one rule). Accents and case are
# folded in Python before the text reaches the database, on both sides, so no extension
# (unaccent) is needed: "impressao" finds "impressão" and the other way round. Each word of
# `q` must match. PostgreSQL matches whole words, stemmed by the Portuguese configuration
# ("impressoras" finds "impressora", "impress" finds nothing; stop words such as "de" are
# ignored). SQLite's FTS5 does not stem Portuguese: there each word matches a word or the
# start of one ("impressora" finds "impressoras"). Punctuation alone ("%") still matches the
# subject literally. PostgreSQL: `tickets.search_vector`, a tsvector built with the Portuguese
# configuration and a GIN index. SQLite: the FTS5 table `tickets_fts` (one row per
# ticket: `ticket_key` = the id's 32 hex digits, `body` = the text; unicode61 with
# remove_diacritics 2). The service rewrites a ticket's entry whenever its subject or
# description changes (`index_ticket`, under the ticket's row lock) and adds to it when a
# public comment is added (`index_comment`).
SEARCH_CONFIG = literal_column("'portuguese'::regconfig")
FTS_TABLE = "tickets_fts"
_WORD = re.compile(r"[^\W_]+")
# the same folding in SQL, for the migration's backfill and the benchmark's seeding
SQL_ACCENTS = ("ÁÀÂÃÄÅáàâãäåÇçÉÈÊËéèêëÍÌÎÏíìîïÑñÓÒÔÕÖóòôõöÚÙÛÜúùûüÝýÿ",
               "AAAAAAaaaaaaCcEEEEeeeeIIIIiiiiNnOOOOOoooooUUUUuuuuYyy")


def fold(value: str) -> str:
    """Lower case without accents: what is indexed and what is searched for."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def search_words(q: str) -> list[str]:
    """The words of a query, folded; punctuation alone gives none."""
    return _WORD.findall(fold(q))[:32]


def sql_fold(expression: str) -> str:
    """SQL that folds `expression` like `fold` does (for Latin letters)."""
    return f"lower(translate({expression}, '{SQL_ACCENTS[0]}', '{SQL_ACCENTS[1]}'))"



def search_terms(postgres: bool, q: str) -> tuple[str, str]:
    """(kind, value) of `q`'s condition: `subject` (punctuation only: the subject,
    literally, as before) with a LIKE pattern, or `words` with the words to match."""
    words = search_words(q)
    if not words:
        return "subject", f"%{escape_like(q.lower())}%"
    if postgres:
        # whole words, stemmed: a prefix (`:*`) would be estimated blindly (2% of the
        # rows whatever the word) and a rare word would walk the newest-first index
        return "words", " & ".join(f"'{word}'" for word in words)
    return "words", "body : (" + " AND ".join(f'"{word}"*' for word in words) + ")"


def search_condition(postgres: bool, kind: str, value: str):
    if kind == "subject":
        return func.lower(Ticket.subject).like(bindparam("q", value), escape="\\")
    if postgres:
        return Ticket.search_vector.op("@@")(func.to_tsquery(SEARCH_CONFIG, bindparam("q", value)))
    return Ticket.id.in_(select(literal_column("ticket_key")).select_from(text(FTS_TABLE))
                         .where(text(f"{FTS_TABLE} MATCH :q").bindparams(q=value)))


def list_values(postgres: bool, tenant_id, filters: dict, only_requester, after) -> tuple[tuple, dict]:
    """(shape, values) of a list query: its conditions' values by parameter name, and its
    shape, which conditions there are (statements of one shape differ in values only)."""
    shape, values = [], {"tenant_id": tenant_id}
    if only_requester is not None:
        values["only_requester"] = only_requester
    for key in ("status", "queue_id", "company_id", "requester_id", "priority", "created_from",
                "created_to"):
        if filters.get(key):
            values[key] = filters[key]
    assignee = filters.get("assignee_id")
    if assignee == "unassigned":
        shape.append("unassigned")
    elif assignee:
        values["assignee_id"] = uuid.UUID(assignee)
    if filters.get("q"):
        kind, values["q"] = search_terms(postgres, filters["q"])
        shape.append(f"q:{kind}")
    if after is not None:
        values["after_created_at"], values["after_id"] = after
    return tuple(shape) + tuple(values), values


def list_conditions(postgres: bool, shape: tuple, values: dict) -> list:
    """The conditions of a list query of this shape, each value a named bind parameter."""
    def value(name: str, type_=None):
        return bindparam(name, values[name], type_)

    conditions = [Ticket.tenant_id == value("tenant_id")]
    if "only_requester" in values:
        conditions.append(Ticket.requester_id == value("only_requester"))
    for key in ("status", "queue_id", "company_id", "requester_id", "priority", "assignee_id"):
        if key in values:
            conditions.append(getattr(Ticket, key) == value(key))
    if "unassigned" in shape:
        conditions.append(Ticket.assignee_id.is_(None))
    if "q" in values:
        kind = next(part[2:] for part in shape if part.startswith("q:"))
        conditions.append(search_condition(postgres, kind, values["q"]))
    if "created_from" in values:
        conditions.append(Ticket.created_at >= value("created_from", UTCDateTime))
    if "created_to" in values:
        conditions.append(Ticket.created_at < value("created_to", UTCDateTime))
    if "after_created_at" in values:
        conditions.append(tuple_(Ticket.created_at, Ticket.id) < tuple_(
            value("after_created_at", UTCDateTime), value("after_id")))
    return conditions


def _constant(value: str):
    """A text constant written into the statement itself: the view's keys, labels and
    formats as bind parameters were some 60 values to send with every page."""
    return literal_column("'" + value.replace("'", "''") + "'")


def _json_object(*pairs):
    """json_build_object(key, value, …) with the keys written in."""
    return func.json_build_object(*(_constant(part) if index % 2 == 0 else part
                                    for index, part in enumerate(pairs)))


def _iso_utc(column):
    """The text `datetime.isoformat()` writes for the column's value in UTC (no fraction
    when it has no microseconds, as Python writes it)."""
    utc = func.timezone(_constant("UTC"), column)
    return case((func.date_trunc(_constant("second"), column) == column,
                 func.to_char(utc, _constant('YYYY-MM-DD"T"HH24:MI:SS"+00:00"'))),
                else_=func.to_char(utc, _constant('YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')))


def _reference(key, *named):
    """A person's or company's reference, {"id": …, name: …}, or null without an id."""
    return case((key.is_(None), null()), else_=_json_object("id", key, *named))


def _by_status(part: int):
    """The status's label (part 0) or colour (part 1), from domain.STATUS_LABELS."""
    return case(*((Ticket.status == _constant(status), _constant(shown[part]))
                  for status, shown in domain.STATUS_LABELS.items()))


# PostgreSQL writes a list row's view itself, as JSON text: what `views.ticket_view` makes of
# the VIEW_COLUMNS (tests/integration/test_ticket_view_sql.py holds the two equal). 50 views a
# page were a third of the tickets process's CPU per list, building them in Python.
TICKET_VIEW_JSON = cast(_json_object(
    "id", Ticket.id, "reference", Ticket.reference, "subject", Ticket.subject,
    "description", Ticket.description, "priority", Ticket.priority, "status", Ticket.status,
    "status_label", _by_status(0), "status_colour", _by_status(1), "queue_id", Ticket.queue_id,
    "requester", _reference(Ticket.requester_id, "name", Ticket.requester_name, "email", Ticket.requester_email),
    "assignee", _reference(Ticket.assignee_id, "name", Ticket.assignee_name, "email", Ticket.assignee_email),
    "company", _reference(Ticket.company_id, "name", Ticket.company_name),
    "machine_id", Ticket.machine_id,
    "worked_seconds", _json_object(
        "INTERNAL", Ticket.worked_internal_seconds, "EXTERNAL", Ticket.worked_external_seconds,
        "total", Ticket.worked_internal_seconds + Ticket.worked_external_seconds),
    "work_in_progress", null(),
    "created_at", _iso_utc(Ticket.created_at), "updated_at", _iso_utc(Ticket.updated_at),
    "resolved_at", _iso_utc(Ticket.resolved_at)), Text)

# list and recent statements by shape, built once (see TicketsRepository.page)
_PAGE_STATEMENTS: dict = {}
_RECENT_STATEMENTS: dict = {}
STATEMENTS_KEPT = 512


def _remember(cache: dict, key, statement):
    if len(cache) >= STATEMENTS_KEPT:  # shapes are few; a flood of odd ones must not grow it
        cache.clear()
    cache[key] = statement
    return statement

