"""The report export's CSV (issue 13, item 9), as plain Python: what a spreadsheet in
Brazil opens correctly — UTF-8 with a BOM, ISO 8601 times without microseconds with the
São Paulo offset, `,` or `;` between fields, CRLF line ends, quoting where needed."""
import csv
import io
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from services.tickets.domain import EXPORT_COLUMNS, ExportCsv, export_cell


def ticket(**values):
    base = {column: None for column in EXPORT_COLUMNS}
    base.update(reference=7, id=uuid.UUID(int=1), subject="Impressora", status="PENDING",
                priority="MEDIUM", queue_id=uuid.UUID(int=2), worked_internal_seconds=90,
                worked_external_seconds=0,
                created_at=datetime(2026, 11, 30, 14, 5, 9, 123456, tzinfo=timezone.utc),
                updated_at=datetime(2026, 7, 1, 2, 0, 0, 999999, tzinfo=timezone.utc))
    base.update(values)
    return SimpleNamespace(**base)


def written(delimiter: str, *tickets) -> str:
    handle = io.StringIO(newline="")
    out = ExportCsv(handle, delimiter)
    assert out.write(tickets) == len(tickets)
    return handle.getvalue()


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_bom_header_and_delimiter(delimiter):
    text = written(delimiter, ticket())
    assert text.startswith("\ufeff") and text.count("\ufeff") == 1
    lines = text[1:].split("\r\n")
    assert lines[0] == delimiter.join(EXPORT_COLUMNS)
    assert lines[-1] == "" and len(lines) == 3  # header, one row, the final CRLF
    row = next(csv.DictReader(io.StringIO(text[1:], newline=""), delimiter=delimiter))
    assert row["reference"] == "7" and row["id"] == str(uuid.UUID(int=1))
    assert row["worked_internal_seconds"] == "90" and row["assignee_name"] == ""


def test_times_are_sao_paulo_iso_8601_without_microseconds():
    row = next(csv.DictReader(io.StringIO(written(";", ticket())[1:], newline=""), delimiter=";"))
    assert row["created_at"] == "2026-11-30T11:05:09-03:00"
    assert row["updated_at"] == "2026-06-30T23:00:00-03:00"  # the local day before
    assert row["resolved_at"] == ""


def test_text_holding_the_delimiter_quotes_or_line_breaks_reads_back_whole():
    subject = 'Impressão; rede, 2º andar "sala"\nlinha 2'
    for delimiter in (",", ";"):
        text = written(delimiter, ticket(subject=subject, requester_name="José Ñandú"))
        row = next(csv.DictReader(io.StringIO(text[1:], newline=""), delimiter=delimiter))
        assert row["subject"] == subject and row["requester_name"] == "José Ñandú"


def test_an_empty_export_is_the_bom_and_the_header():
    assert written(",") == "\ufeff" + ",".join(EXPORT_COLUMNS) + "\r\n"


def test_only_comma_and_semicolon():
    with pytest.raises(ValueError):
        ExportCsv(io.StringIO(), "\t")


def test_cells():
    assert export_cell(None) == ""
    assert export_cell(0) == "0"
    assert export_cell(uuid.UUID(int=3)) == str(uuid.UUID(int=3))
    assert export_cell(datetime(2026, 1, 1, 3, 0, 0, 1, tzinfo=timezone.utc)) == "2026-01-01T00:00:00-03:00"


@pytest.mark.parametrize("typed", ["=HYPERLINK(\"http://x\",\"clique\")", "+1+1", "-2+3", "@SUM(A1)", "\t=1"])
def test_text_a_spreadsheet_would_run_as_a_formula_is_kept_as_text(typed):
    assert export_cell(typed) == "'" + typed
    assert export_cell("Impressora = quebrada") == "Impressora = quebrada"
    assert export_cell(-5) == "-5"  # numbers are numbers
