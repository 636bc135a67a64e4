"""Admin ▸ Saúde (/admin/health) and Relatórios (CSV exports)."""
from __future__ import annotations

import logging
import time
from datetime import date, datetime, timezone

import eventlet

from common.contracts.tickets import STATUSES
from common.errors import DomainError, Forbidden
from services.gateway.console import catalogue
from services.gateway.console.formatting import LOCAL_ZONE
from services.gateway.console.views.home import attempt
from services.gateway.console.web import error_message, error_page, page

log = logging.getLogger(__name__)

REPORTS_PATH = "/relatorios"
RECENT_EXPORTS = 20
# the tickets service makes an export as soon as it is asked for: the page waits this long
# for it, so the file is usually ready when the page comes back (the list refreshes itself)
EXPORT_WAIT_SECONDS, EXPORT_WAIT_STEP = 4.0, 0.2
CONSOLE_DELIMITER = ";"  # what a spreadsheet set to Portuguese (Brazil) splits columns on
# the retention summary's kinds in reading order; a kind added later is listed after them
RETENTION_ORDER = ("sessions", "report_exports", "metrics_hourly", "alerts", "tickets")
# the RPC of each health section, to name the service that did not answer
SECTION_SERVICES = {"tickets": "tickets", "registrations": "accounts", "heartbeats": "devices",
                    "jobs": "scheduler"}


class OperationsViews:

    # Admin ▸ Saúde ---------------------------------------------------------------------

    @page("GET", "/admin/health")
    def health_page(self, page_):
        """Every section of the health snapshot; one whose service did not answer shows a
        warning and the others still show their numbers."""
        try:  # the API's route, with its own roles (the page has no operation= to check first)
            sections = self.operation("health_snapshot", page_.principal)
        except Forbidden:
            return error_page(page_, 403, catalogue.translate("errors.forbidden_page"))
        failures = {name: section_failure(name, answer) for name, answer in sections.items()
                    if isinstance(answer, Exception)}
        ok = {name: answer for name, answer in sections.items() if name not in failures}
        return page_.render(
            "health.html", failures=failures, statuses=STATUSES, tickets=ok.get("tickets"),
            registrations=ok.get("registrations"), heartbeats=ok.get("heartbeats"),
            retention=retention_rows(ok["retention"]) if "retention" in ok else None,
            jobs=[dict(job, title_key=known_key("health.job_title.", job["name"])) for job in ok["jobs"]]
            if "jobs" in ok else None,
            now=datetime.now(timezone.utc))

    # Relatórios ------------------------------------------------------------------------

    @page("GET", REPORTS_PATH, operation="request_export")
    def reports_page(self, page_):
        principal = page_.principal
        exports, exports_error = attempt(lambda: self.operation(
            "list_exports", principal, query={"limit": str(RECENT_EXPORTS)})["items"])
        companies, companies_error = attempt(lambda: self.operation(
            "list_companies", principal, query={})["items"])
        queues, queues_error = attempt(lambda: self.operation("list_queues", principal)["items"])
        return page_.render(
            "reports.html", statuses=STATUSES, exports=exports, exports_error=exports_error,
            companies=companies or [], queues=queues or [],
            choices_error=companies_error or queues_error,
            company_names={company["id"]: company["name"] for company in companies or []},
            queue_names={queue["id"]: queue["name"] for queue in queues or []},
            delimiter=CONSOLE_DELIMITER)

    @page("POST", REPORTS_PATH, operation="request_export")
    def request_report_submit(self, page_):
        """Ask for the export (the tickets service starts making it at once) and wait a
        moment for it, so the file is usually ready when the page comes back."""
        filters = {name: page_.field(name) for name in ("status", "company_id", "queue_id")
                   if page_.field(name)}
        for name in ("created_from", "created_to"):
            if page_.field(name):
                filters[name] = start_of_local_day(page_.field(name))
        export = self.operation("request_export", page_.principal, body={
            "filters": filters, "delimiter": page_.field("delimiter") or CONSOLE_DELIMITER})
        return self._when_made(page_, export)

    @page("GET", REPORTS_PATH + "/<export_id>/download", operation="download_export")
    def download_report(self, page_, export_id):
        return self.operation("download_export", page_.principal, export_id=export_id)

    def _when_made(self, page_, export: dict):
        t = page_.t
        deadline = time.monotonic() + EXPORT_WAIT_SECONDS
        try:
            while export["status"] in ("QUEUED", "RUNNING") and time.monotonic() < deadline:
                eventlet.sleep(EXPORT_WAIT_STEP)
                export = self.operation("get_export", page_.principal, export_id=export["id"])
        except DomainError:  # asked for already: the list says how it goes
            export = {"status": "QUEUED"}
        if export["status"] == "DONE":
            return page_.redirect(REPORTS_PATH, t("reports.ready", rows=export["rows"]))
        if export["status"] == "FAILED":
            return page_.redirect(REPORTS_PATH, t("reports.failed", reason=export["error"] or "—"), "error")
        return page_.redirect(REPORTS_PATH, t("reports.queued"))


def section_failure(name: str, exc: Exception) -> str:
    """Why a health section is missing, in the reader's words, naming the service."""
    if isinstance(exc, DomainError):
        reason = error_message(exc)
    else:  # a service's own unexpected error: logged there; here, the generic words
        log.warning("health section %s failed: %r", name, exc)
        reason = catalogue.translate("errors.internal")
    service = (getattr(exc, "details", None) or {}).get("service") or SECTION_SERVICES.get(name)
    return catalogue.translate("health.failed_service", reason=reason, service=service) if service else reason


def retention_rows(kinds: dict) -> list[dict]:
    ordered = [kind for kind in RETENTION_ORDER if kind in kinds] + \
        sorted(kind for kind in kinds if kind not in RETENTION_ORDER)
    return [dict(kinds[kind], kind=kind, title_key=known_key("health.retention_kind.", kind),
                 policy_key=known_key("health.retention_policy.", kind)) for kind in ordered]


def known_key(prefix: str, name: str) -> str | None:
    """The catalogue key for a name the services may extend (jobs, retention kinds);
    None when the catalogue does not know it yet, and the page shows the name itself."""
    key = prefix + name
    return key if catalogue.has(key) else None


def start_of_local_day(value: str) -> str:
    """A date field (YYYY-MM-DD) as midnight in the tenants' time zone, as the API's filters
    take it; anything else is passed on for the API's schema to refuse."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return value
    return datetime(day.year, day.month, day.day, tzinfo=LOCAL_ZONE).isoformat()
