"""Scheduled jobs end to end: the cron route, lunch pause, the retention sweep, report
exports, the local archive, and "no row per run". Through the gateway where a route exists,
the services' RPC otherwise; SQL only to age rows (and to count them). Real services, real
broker, real database; every test has a tenant of its own."""
import csv
import io
import random
import re
import time
import uuid
from datetime import timedelta
from pathlib import Path

import orjson
import requests
from sqlalchemy import create_engine, text

from services.devices.history import ChangeRecord, HourMetrics, day_start, pack_changes, pack_metrics
from tests.harness import CRON_SECRET, Client, eventually, new_tenant
from tests.harness import fetch_ticket as get
from tests.harness import ticket_timeline as timeline

CRON = {"x-cron-secret": CRON_SECRET}
SCHEMAS = ("accounts", "tickets", "devices")


# --- helpers ----------------------------------------------------------------------------

def error(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"]), body
    return body["error"]


def cron(client: Client, job: str, expect: int = 200, **params) -> dict:
    response = client.post(f"/api/cron/{job}", headers=CRON, params=params or None)
    assert response.status_code == expect, (job, params, response.status_code, response.text)
    return response.json()


def ran(client: Client, job: str, **params) -> dict:
    """Run a job through the cron route; it must succeed. Its targets' results."""
    outcome = cron(client, job, **params)
    assert outcome["job"] == job and outcome["outcome"] == "success", outcome
    return outcome["results"]


def create(client: Client, subject: str = "Impressora não imprime") -> dict:
    response = client.post("/api/tickets", json={"subject": subject, "description": "d"})
    assert response.status_code == 201, response.text
    return response.json()


def act(client: Client, ticket: dict, action: str, expect: int = 200, **body) -> dict:
    response = client.post(f"/api/tickets/{ticket['id']}/{action}", json=body)
    assert response.status_code == expect, (action, response.status_code, response.text)
    return response.json()


def request_export(client: Client, filters: dict) -> dict:
    response = client.post("/api/reports/exports", json={"filters": filters})
    assert response.status_code == 202, response.text
    export = response.json()
    assert export["status"] == "QUEUED", export
    return export


def export_of(client: Client, export_id: str) -> dict:
    response = client.get(f"/api/reports/exports/{export_id}")
    assert response.status_code == 200, response.text
    return response.json()


def made(client: Client, export_id: str, timeout: float = 10.0) -> dict:
    """The export once DONE: the tickets service makes it as soon as it is asked for."""
    return eventually(lambda: (lambda e: e if e["status"] == "DONE" else None)(
        export_of(client, export_id)), timeout=timeout) or export_of(client, export_id)


def sql(system, statement: str, expect_rows: int | None = None, **params):
    """One statement in its own transaction; the rows it returned (if any)."""
    engine = create_engine(system.database_url)
    try:
        with engine.begin() as connection:
            result = connection.execute(text(statement), params)
            if expect_rows is not None:
                assert result.rowcount == expect_rows, (statement, params, result.rowcount)
            return result.all() if result.returns_rows else None
    finally:
        engine.dispose()


def present(system, table: str, column: str, values) -> set[str]:
    rows = sql(system, f"SELECT {column}::text FROM {table} WHERE {column}::text = ANY(:values)",
               values=[str(v) for v in values])
    return {row[0] for row in rows}


def register_machine(anonymous: Client, company: dict) -> dict:
    mac = "3c:52:82:" + ":".join(f"{random.randint(0, 255):02x}" for _ in range(3))
    response = anonymous.post("/api/machines/register", json={
        "provisioning_code": company["provisioning_code"], "hostname": f"pc-{uuid.uuid4().hex[:6]}",
        "os": {"name": "Windows 11 Pro", "version": "11", "build": "26100", "arch": "x86_64"},
        "mac_addresses": [mac], "serial_numbers": [f"BR{uuid.uuid4().hex[:10].upper()}"],
        "collaborator": {"email": f"colab-{uuid.uuid4().hex[:8]}@example.test", "name": "Maria"}})
    assert response.status_code == 201, response.text
    return response.json()


def row_counts(system) -> dict[str, int]:
    """Rows of every table in the services' schemas."""
    engine = create_engine(system.database_url)
    try:
        with engine.connect() as connection:
            tables = [f'"{schema}"."{name}"' for schema, name in connection.execute(text(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(:schemas) ORDER BY 1, 2"),
                {"schemas": list(SCHEMAS)})]
            return {table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                    for table in tables}
    finally:
        engine.dispose()


def settled_counts(system, timeout: float = 10.0) -> dict[str, int]:
    """Row counts once two snapshots in a row agree (relays and consumers done)."""
    deadline = time.monotonic() + timeout
    previous = row_counts(system)
    while True:
        time.sleep(0.3)
        current = row_counts(system)
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current


def job_runs(system, job: str, outcome: str = "success") -> float:
    response = requests.get(system.metrics_url("scheduler"), timeout=10)
    assert response.status_code == 200, response.text
    pattern = re.compile(r'^chamados_job_runs_total\{([^}]*)\}\s+([0-9.eE+-]+)$', re.M)
    for labels, value in pattern.findall(response.text):
        if f'job="{job}"' in labels and f'outcome="{outcome}"' in labels:
            return float(value)
    return 0.0


# --- the cron route ---------------------------------------------------------------------

def test_cron_route_secret_unknown_job_run_and_dry_run(system, anonymous):
    missing = error(anonymous.post("/api/cron/chat-cleanup"), 401)
    assert missing["code"] == "invalid_cron_secret"
    wrong = error(anonymous.post("/api/cron/chat-cleanup", headers={"x-cron-secret": "wrong"}), 401)
    assert wrong["code"] == "invalid_cron_secret"
    near = error(anonymous.post("/api/cron/chat-cleanup",
                                headers={"x-cron-secret": CRON_SECRET + "x"}), 401)
    assert near["code"] == "invalid_cron_secret"
    # the secret is checked before the job: no telling which jobs exist without it
    assert error(anonymous.post("/api/cron/no-such-job"), 401)["code"] == "invalid_cron_secret"

    unknown = error(anonymous.post("/api/cron/no-such-job", headers=CRON), 404)
    assert unknown["code"] == "job_not_found"

    before = job_runs(system, "chat-cleanup")
    outcome = cron(anonymous, "chat-cleanup")
    assert outcome["job"] == "chat-cleanup" and outcome["outcome"] == "success", outcome
    assert set(outcome["results"]) == {"tickets.end_inactive_chats"}, outcome
    assert outcome["results"]["tickets.end_inactive_chats"]["ended"] >= 0
    assert isinstance(outcome["duration_seconds"], (int, float)) and outcome["tick"]
    assert job_runs(system, "chat-cleanup") == before + 1  # the outcome goes to metrics

    for job in ("chat-cleanup", "usb-cleanup", "lunch-pause"):
        refused = error(anonymous.post(f"/api/cron/{job}", headers=CRON, params={"dry_run": "true"}), 422)
        assert refused["code"] == "validation_failed", (job, refused)
    assert job_runs(system, "chat-cleanup") == before + 1  # refused: never ran
    assert ran(anonymous, "chat-cleanup", dry_run="false") is not None
    assert error(anonymous.post("/api/cron/retention-sweep", headers=CRON,
                                params={"dry_run": "maybe"}), 422)["code"] == "validation_failed"


# --- lunch pause ------------------------------------------------------------------------

def test_lunch_pause_pauses_internal_work_only(tenant):
    admin = tenant.admin
    _, agent = tenant.person("agent")
    internal, external, waiting = create(admin, "Interno"), create(admin, "Externo"), create(admin, "Fila")
    assert act(agent, internal, "start", work_type="INTERNAL")["work_in_progress"] == "INTERNAL"
    assert act(agent, external, "start", work_type="EXTERNAL")["work_in_progress"] == "EXTERNAL"

    results = ran(admin, "lunch-pause")
    assert results["tickets.lunch_pause"]["paused"] >= 1, results

    paused = get(admin, internal)
    assert paused["status"] == "PAUSED" and paused["work_in_progress"] is None, paused
    entries = [e for e in timeline(admin, internal) if e["kind"] == "PAUSED"]
    assert [e["data"]["reason"] for e in entries] == ["LUNCH_BREAK"], entries
    assert entries[0]["actor"] is None  # automatic, nobody's act

    going_on = get(admin, external)
    assert going_on["status"] == "AWAITING_ATTENDANCE" and going_on["work_in_progress"] == "EXTERNAL"
    assert "PAUSED" not in [e["kind"] for e in timeline(admin, external)]
    assert get(admin, waiting)["status"] == "PENDING"

    # a second run finds nothing more of ours to pause
    again = ran(admin, "lunch-pause")
    assert again["tickets.lunch_pause"]["paused"] == 0, again
    assert [e["kind"] for e in timeline(admin, internal)].count("PAUSED") == 1
    assert get(admin, external)["status"] == "AWAITING_ATTENDANCE"

    # after lunch the agent resumes the paused ticket as usual
    assert act(agent, internal, "start", work_type="INTERNAL")["status"] == "AWAITING_ATTENDANCE"


# --- retention --------------------------------------------------------------------------

def test_retention_sweep_dry_run_counts_then_deletes_only_old_rows(system, tenant, anonymous):
    admin = tenant.admin
    machine_id = register_machine(anonymous, tenant.company())["machine_id"]

    # days of hourly metrics 100 and 10 days old; the old one also holds an inventory change
    # (change history is kept forever: that day row loses only its metrics)
    dated = tuple(sql(system, "SELECT (now() - interval '100 days')::date, (now() - interval '10 days')::date")[0])
    change = ChangeRecord(1, day_start(dated[0]) + timedelta(hours=9), {})
    for day in dated:
        sql(system, "INSERT INTO devices.machine_days (machine_id, day, metrics, changes) "
                    "VALUES (:machine, :day, :metrics, :changes)", 1, machine=machine_id, day=day,
            metrics=pack_metrics({9: HourMetrics(60, 10.0, 20.0)}),
            changes=pack_changes([change], day) if day == dated[0] else None)
    # closed alerts, closed 200 and 10 days ago
    old_alert, recent_alert = str(uuid.uuid4()), str(uuid.uuid4())
    for alert_id, days in ((old_alert, 200), (recent_alert, 10)):
        sql(system, "INSERT INTO devices.alerts (id, machine_id, kind, details, opened_at, closed_at) "
                    "VALUES (:id, :machine, 'DISK_ALMOST_FULL', '{}', now() - make_interval(days => :opened), "
                    "now() - make_interval(days => :closed))", 1,
            id=alert_id, machine=machine_id, opened=days + 1, closed=days)
    # report exports, made on request, then made 40 days and 1 day old
    old_export = request_export(admin, {})["id"]
    recent_export = request_export(admin, {"status": "PENDING"})["id"]
    files = {export_id: system.workdir / "exports" / tenant.id / f"{export_id}.csv"
             for export_id in (old_export, recent_export)}
    for export_id in (old_export, recent_export):
        assert made(admin, export_id)["status"] == "DONE"
        assert files[export_id].exists(), files[export_id]
    sql(system, "UPDATE tickets.report_exports SET created_at = now() - interval '40 days' WHERE id = :id",
        1, id=old_export)
    sql(system, "UPDATE tickets.report_exports SET created_at = now() - interval '1 day' WHERE id = :id",
        1, id=recent_export)

    def metric_days() -> set:
        return {row[0] for row in sql(system, "SELECT day FROM devices.machine_days "
                                              "WHERE machine_id = :m AND metrics IS NOT NULL", m=machine_id)}

    def our_rows() -> tuple:
        return (metric_days(), present(system, "devices.alerts", "id", (old_alert, recent_alert)),
                present(system, "tickets.report_exports", "id", (old_export, recent_export)))

    everything = (set(dated), {old_alert, recent_alert}, {old_export, recent_export})
    assert our_rows() == everything
    totals = {table: sql(system, f"SELECT count(*) FROM {table}")[0][0]
              for table in ("devices.machine_days", "devices.alerts", "tickets.report_exports")}

    # dry run: counted, nothing deleted
    dry = cron(anonymous, "retention-sweep", dry_run="true")
    assert dry["outcome"] == "success", dry
    results = dry["results"]
    assert set(results) == {"tickets.apply_retention", "devices.apply_retention",
                            "accounts.apply_retention"}, results
    for target, kind in (("devices.apply_retention", "metrics_hourly"), ("devices.apply_retention", "alerts"),
                         ("tickets.apply_retention", "report_exports")):
        assert results[target]["dry_run"] is True, results[target]
        summary = results[target]["kinds"][kind]
        assert summary["past_policy"] >= 1 and summary["deleted"] == 0, (kind, summary)
        assert summary["oldest"] is not None, (kind, summary)
    assert results["tickets.apply_retention"]["kinds"]["tickets"] == {"policy": "kept forever"}
    for summary in results["accounts.apply_retention"]["kinds"].values():
        assert summary["deleted"] == 0, results["accounts.apply_retention"]
    assert our_rows() == everything
    assert {table: sql(system, f"SELECT count(*) FROM {table}")[0][0] for table in totals} == totals
    assert all(path.exists() for path in files.values())

    # the real sweep: exactly the old rows (and the old export's file) go
    swept = ran(anonymous, "retention-sweep")
    for target, kind in (("devices.apply_retention", "metrics_hourly"), ("devices.apply_retention", "alerts"),
                         ("tickets.apply_retention", "report_exports")):
        summary = swept[target]["kinds"][kind]
        assert swept[target]["dry_run"] is False
        assert summary["deleted"] >= 1 and summary["deleted"] == summary["past_policy"], (kind, summary)
    assert our_rows() == ({dated[1]}, {recent_alert}, {recent_export})
    assert [row[0] for row in sql(system, "SELECT changes FROM devices.machine_days WHERE machine_id = :m "
                                          "AND day = :day", m=machine_id, day=dated[0])] == \
        [pack_changes([change], dated[0])]
    assert not files[old_export].exists() and files[recent_export].exists()
    assert error(admin.get(f"/api/reports/exports/{old_export}"), 404)["code"] == "export_not_found"
    assert export_of(admin, recent_export)["status"] == "DONE"

    # a second sweep finds nothing of ours past policy, and still keeps the recent rows
    ran(anonymous, "retention-sweep")
    assert our_rows() == ({dated[1]}, {recent_alert}, {recent_export})


# --- report exports ---------------------------------------------------------------------

def test_report_export_csv_download_tenancy_and_the_runner_as_safety_net(system, rpc, tenant):
    admin = tenant.admin
    _, agent = tenant.person("agent")
    _, collaborator = tenant.person("collaborator")
    pending = [create(admin, f"Pendente {n}") for n in range(3)]
    act(agent, create(admin, "Em andamento"), "start")
    act(admin, create(admin, "Encerrado"), "resolve")
    other = new_tenant(system, rpc)
    create(other.admin, "De outro cliente")  # another tenant's PENDING ticket stays out

    export = request_export(admin, {"status": "PENDING"})
    assert export["filters"]["status"] == "PENDING" and export["rows"] is None, export

    # not for collaborators, and another tenant's export is unknown
    error(collaborator.post("/api/reports/exports", json={"filters": {}}), 403)
    error(collaborator.get(f"/api/reports/exports/{export['id']}"), 403)
    foreign = request_export(other.admin, {"status": "PENDING"})
    error(admin.get(f"/api/reports/exports/{foreign['id']}"), 404)
    error(admin.get(f"/api/reports/exports/{foreign['id']}/download"), 404)
    error(other.admin.get(f"/api/reports/exports/{export['id']}/download"), 404)
    error(admin.get(f"/api/reports/exports/{uuid.uuid4()}"), 404)
    assert error(admin.post("/api/reports/exports", json={"filters": {"status": "DONE"}}), 422)["code"] \
        == "validation_failed"

    done = made(admin, export["id"])  # by the tickets service, the runner job being off
    listed = admin.get("/api/tickets", params={"status": "PENDING", "limit": 100})
    assert listed.status_code == 200, listed.text
    assert done["status"] == "DONE" and done["rows"] == len(listed.json()["items"]) == len(pending), done
    assert done["finished_at"] is not None and done["error"] is None

    download = admin.get(f"/api/reports/exports/{export['id']}/download")
    assert download.status_code == 200, download.text
    assert download.headers["Content-Type"].startswith("text/csv"), download.headers
    assert "attachment" in download.headers.get("Content-Disposition", "")
    rows = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))
    header, body = rows[0], rows[1:]
    assert {"id", "reference", "subject", "status"} <= set(header), header
    assert len(body) == len(pending), rows
    records = [dict(zip(header, row)) for row in body]
    assert {r["id"] for r in records} == {t["id"] for t in pending}
    assert {r["status"] for r in records} == {"PENDING"}
    assert {r["subject"] for r in records} == {t["subject"] for t in pending}

    # the other tenant's export holds only its own ticket; the runner finds nothing to do
    assert made(other.admin, foreign["id"])["rows"] == 1
    assert error(admin.get(f"/api/reports/exports/{foreign['id']}/download"), 404)
    ran(admin, "report-export-runner")
    assert export_of(admin, export["id"]) == done

    # a maker's claim holds while it is renewed: the export is not ready, nobody else makes it
    sql(system, "UPDATE tickets.report_exports SET status = 'RUNNING', claimed_by = :claim, "
                "claimed_at = now(), rows = NULL, finished_at = NULL WHERE id = :id", 1,
        claim=str(uuid.uuid4()), id=export["id"])
    early = error(admin.get(f"/api/reports/exports/{export['id']}/download"), 409)
    assert early["code"] == "export_not_ready" and early["details"]["status"] == "RUNNING", early
    assert early["details"]["poll_after_seconds"] >= 1, early
    ran(admin, "report-export-runner")
    assert export_of(admin, export["id"])["status"] == "RUNNING"
    # a dead maker's claim (not renewed for minutes) is taken over: the runner job, like the
    # service's own recovery, makes the export again
    sql(system, "UPDATE tickets.report_exports SET claimed_at = now() - interval '10 minutes' "
                "WHERE id = :id", 1, id=export["id"])
    ran(admin, "report-export-runner")
    remade = made(admin, export["id"])
    assert remade["status"] == "DONE" and remade["rows"] == len(pending), remade
    assert remade["finished_at"] > done["finished_at"]


# --- local archive ----------------------------------------------------------------------

def test_archive_local_writes_old_resolved_tickets_once(system, rpc, tenant):
    admin = tenant.admin
    _, agent = tenant.person("agent")
    old = [create(admin, f"Antigo {n}") for n in range(3)]
    for ticket in old:
        act(admin, ticket, "resolve", message="Resolvido")
    recent = create(admin, "Resolvido ontem")
    act(admin, recent, "resolve")
    still_open = create(admin, "Ainda aberto")
    other = new_tenant(system, rpc)
    foreign = create(other.admin, "De outro cliente")
    act(other.admin, foreign, "resolve")

    aged = [t["id"] for t in old] + [foreign["id"]]
    sql(system, "UPDATE tickets.tickets SET resolved_at = now() - interval '40 days' "
                "WHERE id::text = ANY(:ids)", len(aged), ids=aged)
    sql(system, "UPDATE tickets.tickets SET created_at = now() - interval '50 days' WHERE id = :id",
        1, id=still_open["id"])  # old but not resolved: never archived

    # admins only, a whole number of days of at least one
    assert error(agent.post("/api/admin/tickets/archive-local", json={"older_than_days": 30}), 403)
    for bad in (0, -1, "30", 30.5, None):
        refused = error(admin.post("/api/admin/tickets/archive-local", json={"older_than_days": bad}), 422)
        assert refused["code"] == "validation_failed", (bad, refused)
    error(admin.post("/api/admin/tickets/archive-local", json={}), 422)

    response = admin.post("/api/admin/tickets/archive-local", json={"older_than_days": 30})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["archived"] == len(old), result
    path = Path(result["file"])
    assert path.exists() and path.suffix == ".jsonl", result
    assert (system.workdir / "archives") in path.parents, path
    lines = path.read_text().splitlines()
    assert len(lines) == len(old), lines
    records = [orjson.loads(line) for line in lines]
    assert sorted(r["ticket"]["id"] for r in records) == sorted(t["id"] for t in old)
    assert {r["ticket"]["status"] for r in records} == {"RESOLVED"}
    assert all("RESOLVED" in [e["kind"] for e in r["timeline"]] for r in records), records
    assert not list(path.parent.glob("*.partial"))

    again = admin.post("/api/admin/tickets/archive-local", json={"older_than_days": 30})
    assert again.status_code == 200, again.text
    assert again.json() == {"archived": 0, "file": None}
    assert path.read_text().splitlines() == lines  # the first file untouched
    assert len(list(path.parent.glob("*.jsonl"))) == 1

    # the other tenant's old ticket waited for its own admin
    theirs = other.admin.post("/api/admin/tickets/archive-local", json={"older_than_days": 30})
    assert theirs.status_code == 200, theirs.text
    assert theirs.json()["archived"] == 1
    assert [orjson.loads(line)["ticket"]["id"] for line in Path(theirs.json()["file"]).read_text().splitlines()] \
        == [foreign["id"]]

    # a one-day cutoff still leaves the ticket resolved moments ago, and open tickets never go
    assert admin.post("/api/admin/tickets/archive-local", json={"older_than_days": 1}).json()["archived"] == 0
    assert get(admin, recent)["status"] == "RESOLVED"
    assert get(admin, still_open)["status"] == "PENDING"


# --- no row per run ---------------------------------------------------------------------

def test_jobs_leave_no_row_per_run(system, rpc):
    jobs = ("chat-cleanup", "offline-sweep", "usb-cleanup")
    for job in jobs:  # whatever real work is pending from earlier tests is done first
        assert rpc.scheduler.run_job_now(job)["outcome"] == "success"
    before = settled_counts(system)
    assert before and all(any(t.startswith(f'"{s}".') for t in before) for s in SCHEMAS), before
    runs_before = {job: job_runs(system, job) for job in jobs}

    for index in range(100):
        job = jobs[index % len(jobs)]
        outcome = rpc.scheduler.run_job_now(job)
        assert outcome["job"] == job and outcome["outcome"] == "success", (index, outcome)

    after = settled_counts(system)
    assert after == before, {t: (before.get(t), after.get(t)) for t in set(before) | set(after)
                             if before.get(t) != after.get(t)}
    expected = {job: sum(1 for i in range(100) if jobs[i % len(jobs)] == job) for job in jobs}
    assert {job: job_runs(system, job) - runs_before[job] for job in jobs} == expected


# --- storage maintenance ----------------------------------------------------------------------

def test_storage_maintenance_vacuums_the_tables_that_churn(system, anonymous):
    """Without autovacuum (off on the machines this was measured on) dead row versions of
    rewritten rows would pile up; the job reclaims them in every service with a database."""
    results = ran(anonymous, "storage-maintenance")
    assert set(results["devices.maintain_storage"]["vacuumed"]) >= {"heartbeat_state", "inventories",
                                                                    "machine_days", "outbox",
                                                                    "idempotency_keys"}
    assert results["tickets.maintain_storage"]["vacuumed"] == ["outbox", "idempotency_keys"]
    assert results["accounts.maintain_storage"]["vacuumed"] == ["outbox", "sign_in_throttle",
                                                                "idempotency_keys"]
    assert results["notifications.maintain_storage"]["vacuumed"] == ["deliveries", "inbox"]
    engine = create_engine(system.database_url)
    try:
        def vacuumed():
            with engine.connect() as connection:
                return connection.execute(text(
                    "SELECT last_vacuum FROM pg_stat_user_tables "
                    "WHERE schemaname = 'devices' AND relname = 'heartbeat_state'")).scalar()
        assert eventually(vacuumed, timeout=15)
    finally:
        engine.dispose()
