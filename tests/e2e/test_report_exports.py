"""Report exports (issue 13): made as soon as they are asked for, with the scheduler's
`report-export-runner` left off as it is by default (item 2); and their CSV opens in a
spreadsheet in Brazil: UTF-8 with a BOM, ISO 8601 times without microseconds with their
offset, `;` on request (item 9). Through the gateway; the cron route only to run the job
where a test needs the file whatever makes it."""
import csv
import io
import re
import time

from tests.harness import CRON_SECRET, Client, eventually

BOM = b"\xef\xbb\xbf"
LOCAL_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}-03:00$")  # America/Sao_Paulo
MADE_WITHIN_SECONDS = 5.0


def create(client: Client, subject: str) -> dict:
    response = client.post("/api/tickets", json={"subject": subject, "description": "d"})
    assert response.status_code == 201, response.text
    return response.json()


def export_of(client: Client, export_id: str) -> dict:
    response = client.get(f"/api/reports/exports/{export_id}")
    assert response.status_code == 200, response.text
    return response.json()


def finished(client: Client, export_id: str, timeout: float = MADE_WITHIN_SECONDS) -> dict:
    return eventually(lambda: (lambda e: e if e["status"] in ("DONE", "FAILED") else None)(
        export_of(client, export_id)), timeout=timeout, interval=0.1) or export_of(client, export_id)


def run_the_runner(client: Client) -> None:
    response = client.post("/api/cron/report-export-runner", headers={"x-cron-secret": CRON_SECRET})
    assert response.status_code == 200 and response.json()["outcome"] == "success", response.text


def test_an_export_is_made_when_asked_for_with_the_runner_job_off(rpc, tenant):
    jobs = {job["name"]: job for job in rpc.scheduler.list_jobs()}
    assert jobs["report-export-runner"]["enabled"] is False  # the default, kept by the harness
    admin = tenant.admin
    subjects = {create(admin, f"Exportar agora {n}")["subject"] for n in range(3)}

    asked_at = time.monotonic()
    answer = admin.post("/api/reports/exports", json={"filters": {}})
    assert answer.status_code == 202, answer.text
    export = answer.json()
    made = finished(admin, export["id"])
    assert made["status"] == "DONE", f"still {made['status']} after {MADE_WITHIN_SECONDS} s: {made}"
    assert time.monotonic() - asked_at < MADE_WITHIN_SECONDS
    assert made["rows"] == len(subjects) and made["poll_after_seconds"] is None, made

    # the 202 says when and where to look
    assert export["status"] in ("QUEUED", "RUNNING", "DONE"), export
    assert isinstance(export["poll_after_seconds"], int) and 1 <= export["poll_after_seconds"] <= 10, export
    assert answer.headers["Retry-After"] == str(export["poll_after_seconds"]), answer.headers
    status_url = f"/api/reports/exports/{export['id']}"
    assert export["status_url"] == status_url and answer.headers["Location"] == status_url, answer.headers
    assert export["download_url"] == f"{status_url}/download", export
    assert made["status_url"] == status_url and made["download_url"] == export["download_url"]

    download = admin.get(export["download_url"])
    assert download.status_code == 200, download.text
    rows = list(csv.DictReader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert {row["subject"] for row in rows} == subjects


def test_the_csv_opens_in_a_spreadsheet_in_brazil(tenant):
    admin = tenant.admin
    subject = "Impressão; rede, 2º andar \"sala\""
    create(admin, subject)

    for delimiter in (",", ";"):  # "," unless asked: the API's default
        body = {"filters": {}} if delimiter == "," else {"filters": {}, "delimiter": delimiter}
        answer = admin.post("/api/reports/exports", json=body)
        assert answer.status_code == 202, answer.text
        export_id = answer.json()["id"]
        run_the_runner(admin)  # made by now, whether or not the service made it on request
        assert finished(admin, export_id)["status"] == "DONE"

        download = admin.get(f"/api/reports/exports/{export_id}/download")
        assert download.status_code == 200, download.text
        assert download.headers["Content-Type"] == "text/csv; charset=utf-8", download.headers
        raw = download.content
        assert raw.startswith(BOM), raw[:20]  # Excel reads UTF-8 (accents) only with it
        text = raw.decode("utf-8")[1:]
        header_line = text.split("\r\n", 1)[0]
        assert header_line == delimiter.join(("reference", "id", "subject", "status", "priority",
                                              "queue_id", "requester_name", "requester_email",
                                              "assignee_name", "assignee_email", "company_name",
                                              "machine_id", "worked_internal_seconds",
                                              "worked_external_seconds", "created_at", "updated_at",
                                              "resolved_at")), header_line
        (row,) = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))
        assert row["subject"] == subject  # quoted where it holds the delimiter or quotes
        for column in ("created_at", "updated_at"):
            assert LOCAL_MOMENT.match(row[column]), (column, row[column])
        assert row["resolved_at"] == "" and row["assignee_name"] == ""
        assert export_of(admin, export_id)["delimiter"] == delimiter


def test_concurrent_makers_make_each_export_once(system, rpc, tenant):
    """The service's own maker and three runner calls at once: each export is claimed by
    one of them (a conditional UPDATE of its status), so its file is written once."""
    admin = tenant.admin
    create(admin, "Um chamado")
    ids = []
    for _ in range(6):
        answer = admin.post("/api/reports/exports", json={"filters": {}})
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    runs = [rpc.tickets.run_report_exports.call_async() for _ in range(3)]
    by_runner = sum(run.result()["done"] for run in runs)
    for export_id in ids:
        assert finished(admin, export_id)["status"] == "DONE"
    log = system.log("tickets")
    made_lines = {export_id: len(re.findall(rf"export {export_id} done", log)) for export_id in ids}
    assert made_lines == {export_id: 1 for export_id in ids}, made_lines
    assert by_runner <= len(ids)
