"""Report exports: a CSV file of the tickets a filter selects, made after the request has
answered (by this process's export maker, export_maker.py, or the scheduler's runner job),
kept 30 days. Each export is claimed before it is made, so no two makers make one; a maker
renews its claim while it writes, and a claim left to lapse is a dead maker's."""
from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import orjson

from common.actor import Actor
from common.contracts import load, parse_id
from common.contracts import tickets as contract
from common.db import utcnow
from common.errors import Conflict, NotFound
from common.unit_of_work import UnitOfWorkSource
from services.tickets import domain
from services.tickets.permissions import require_staff
from services.tickets.models import ReportExport
from services.tickets.tickets import resolve_me

log = logging.getLogger(__name__)
REPORT_RETENTION = timedelta(days=30)
EXPORT_PAGE = 1000
EXPORT_CLAIM_ROUNDS = 50  # a run stops after this many rounds of claims (20 exports each)


class ExportClaimLost(Exception):
    """Another maker took this export over (ours stopped renewing its claim in time)."""


def export_path(export_dir, export: ReportExport) -> Path:
    return Path(export_dir) / str(export.tenant_id) / f"{export.id}.csv"


def export_view(export: ReportExport) -> dict:
    return contract.ExportRun().dump({
        "id": export.id, "status": export.status, "filters": orjson.loads(export.filters),
        "delimiter": export.delimiter, "rows": export.rows, "error": export.error,
        "created_at": export.created_at, "finished_at": export.finished_at,
        "poll_after_seconds": domain.export_poll_seconds(export.status)})


def find_export(uow, actor: Actor, export_id) -> ReportExport:
    require_staff(actor, "read exports")
    export = uow.repo.export(actor.tenant_id, parse_id(export_id, "export"))
    if export is None:
        raise NotFound("export not found", code="export_not_found")
    return export


def request_export(source: UnitOfWorkSource, actor: Actor, payload: dict, wake_maker: Callable[[], None]) -> dict:
    """Record the export and answer at once; `wake_maker` starts this process's maker on it
    right after the commit (a crash before it does is recovered: export_maker.py)."""
    require_staff(actor, "export reports")
    data = load(contract.ExportRequest, payload)
    with source.unit_of_work() as uow:
        export = uow.repo.add(ReportExport(
            tenant_id=actor.tenant_id, requested_by=actor.user_id, status="QUEUED",
            delimiter=data["delimiter"],
            filters=orjson.dumps(contract.TicketFilters().dump(data["filters"])).decode()))
        uow.commit()
        wake_maker()
        return export_view(export)


def get_export(source: UnitOfWorkSource, actor: Actor, export_id) -> dict:
    with source.unit_of_work() as uow:
        return export_view(find_export(uow, actor, export_id))


def list_exports(source: UnitOfWorkSource, actor: Actor, query: dict) -> dict:
    """The tenant's most recent exports, newest first (Relatórios lists them)."""
    require_staff(actor, "read exports")
    data = load(contract.ExportQuery, query)
    with source.unit_of_work() as uow:
        return {"items": [export_view(export) for export in uow.repo.recent_exports(actor.tenant_id, data["limit"])]}


def download_export(source: UnitOfWorkSource, export_dir, actor: Actor, export_id) -> dict:
    with source.unit_of_work() as uow:
        export = find_export(uow, actor, export_id)
        if export.status != "DONE":
            raise Conflict(f"the export is {export.status}", code="export_not_ready",
                           details={"status": export.status,
                                    "poll_after_seconds": domain.export_poll_seconds(export.status)})
        path = export_path(export_dir, export)
        if not path.exists():
            raise NotFound("the export's file is gone", code="export_file_missing")
        # as written: the BOM and CRLF line ends stay (no newline translation)
        with open(path, encoding="utf-8", newline="") as handle:
            content = handle.read()
        return {"filename": f"chamados-tickets-{export.id}.csv", "content": content}


def make_exports(source: UnitOfWorkSource, export_dir) -> dict:
    """Every export waiting (QUEUED, or RUNNING under a dead maker's claim) becomes a
    CSV file under `export_dir`; each is claimed first, so no two makers make one."""
    done = failed = 0
    for _ in range(EXPORT_CLAIM_ROUNDS):
        now = utcnow()
        with source.unit_of_work() as uow:
            waiting = uow.repo.claimable_exports(now - domain.EXPORT_CLAIM_LEASE)
        if not waiting:
            break
        claimed = 0
        for export_id in waiting:
            outcome = make_export(source, export_dir, export_id)
            claimed += outcome is not None
            done += outcome == "DONE"
            failed += outcome == "FAILED"
        if not claimed:  # others hold them all
            break
    if done or failed:
        log.info("exports made: %d done, %d failed", done, failed)
    return {"done": done, "failed": failed}


def make_export(source: UnitOfWorkSource, export_dir, export_id) -> str | None:
    """DONE or FAILED once made by us; None when another maker has it."""
    claim, now = uuid.uuid4(), utcnow()
    with source.unit_of_work() as uow:
        if not uow.repo.claim_export(export_id, claim, now, now - domain.EXPORT_CLAIM_LEASE):
            return None
        uow.commit()
    try:
        return write_export(source, export_dir, export_id, claim)
    except ExportClaimLost:
        log.warning("export %s: taken over by another maker; this one stops", export_id)
        return None
    except Exception as exc:  # one bad export must not stop the others
        log.exception("export %s failed", export_id)
        with source.unit_of_work() as uow:
            if uow.repo.settle_export(export_id, claim, status="FAILED", finished_at=utcnow(),
                                      error=f"{exc.__class__.__name__}: {exc}"[:500]):
                uow.commit()
        return "FAILED"


def write_export(source: UnitOfWorkSource, export_dir, export_id, claim) -> str:
    with source.unit_of_work() as uow:
        export = uow.repo.export_by_id(export_id)
        filters = resolve_me(load(contract.TicketFilters, orjson.loads(export.filters)), export.requested_by)
        path = export_path(export_dir, export)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{claim}.partial")  # a maker's own
        rows, after, renewed = 0, None, utcnow()
        try:
            with open(partial, "w", encoding="utf-8", newline="") as handle:
                writer = domain.ExportCsv(handle, export.delimiter)
                while True:  # keyset pages: memory stays flat however many tickets
                    page = uow.repo.export_page(export.tenant_id, filters, after=after, limit=EXPORT_PAGE)
                    rows += writer.write(page)
                    if len(page) < EXPORT_PAGE:
                        break
                    after = (page[-1].created_at, page[-1].id)
                    if utcnow() - renewed >= domain.EXPORT_CLAIM_RENEW:  # still ours, still alive
                        renewed = utcnow()
                        if not uow.repo.settle_export(export.id, claim, claimed_at=renewed):
                            raise ExportClaimLost(export.id)
                        uow.commit()
                        log.info("export %s: %d tickets written", export.id, rows)
                handle.flush()
                os.fsync(handle.fileno())
            finished = utcnow()
            if not uow.repo.settle_export(export.id, claim, status="DONE", rows=rows,
                                          finished_at=finished, file_name=path.name):
                raise ExportClaimLost(export.id)
            partial.replace(path)  # then commit: a crash between leaves it to be made again
            uow.commit()
        finally:
            partial.unlink(missing_ok=True)
        log.info("export %s done: %d tickets in %s", export.id, rows, path)
        return "DONE"


def apply_retention(source: UnitOfWorkSource, export_dir, now: datetime, tenant_id=None,
                    dry_run: bool = False) -> dict:
    """Report runs and their files go after 30 days; tickets are kept forever. With
    `tenant_id` (a dry run only: common.retention.retention_scope), that tenant's alone."""
    cutoff = now - REPORT_RETENTION
    with source.unit_of_work() as uow:
        old = uow.repo.exports_before(cutoff, tenant_id)
        summary = {"report_exports": {"past_policy": len(old), "deleted": 0,
                                      "oldest": min((e.created_at for e in old), default=None)},
                   "tickets": {"policy": "kept forever"}}
        if old and not dry_run:
            for export in old:
                export_path(export_dir, export).unlink(missing_ok=True)
                uow.repo.delete(export)
            uow.commit()
            summary["report_exports"]["deleted"] = len(old)
    oldest = summary["report_exports"]["oldest"]
    summary["report_exports"]["oldest"] = oldest.isoformat() if oldest else None
    return {"dry_run": dry_run, "kinds": summary}
