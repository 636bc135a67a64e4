"""Operations routes that call services: cron jobs and the health snapshot."""
from __future__ import annotations

from common import rpc
from common.contracts import load
from common.contracts import tickets as helpdesk
from common.errors import NotFound, Unauthorized
from common.tokens import same_secret
from services.gateway.http import STAFF, bearer_token, check_roles, route
from services.gateway.responses import json_response
from services.gateway.schemas import HealthSnapshot


CRON_TIMEOUT_SECONDS = 660.0  # the longest job's own deadline, plus a margin
# the health route is raw (staff, or the internal token instead of a person): its roles
HEALTH_READERS = STAFF


class OperationRoutes:
    """A scheduler job run now, and the health snapshot."""

    # cron --------------------------------------------------------------------------------

    @route("POST", "/api/cron/<job>", summary="Run a scheduler job now (header x-cron-secret)",
           tag="operations", roles=None, query=helpdesk.CronQuery, raw=True)
    def run_cron_job(self, principal, request, job, query):
        """For an external crontab. Disabled (404 `cron_disabled`) unless CRON_SECRET is
        set; the secret is compared in constant time."""
        if not self.settings.cron_secret:
            # 404: this deployment has no cron route to run, and retrying will not change
            # that (503 would invite retries); not 401/403 either, which would send the
            # operator hunting for a wrong secret when none is configured. The code and the
            # message say why, and which setting turns the routes on.
            raise NotFound("cron routes are disabled: set CRON_SECRET on the gateway to enable "
                           "POST /api/cron/<job> (header x-cron-secret)", code="cron_disabled",
                           details={"setting": "CRON_SECRET"})
        if not same_secret(request.headers.get("x-cron-secret"), self.settings.cron_secret):
            raise Unauthorized("wrong or missing x-cron-secret", code="invalid_cron_secret")
        options = {"dry_run": True} if load(helpdesk.CronQuery, query)["dry_run"] else {}
        return json_response(200, self.call("scheduler", "run_job_now", job, options,
                                            timeout=CRON_TIMEOUT_SECONDS))

    # health snapshot -----------------------------------------------------------------------

    @route("GET", "/api/admin/health",
           summary="Tickets, registrations, heartbeat buckets, retention, jobs (staff or x-internal-token)",
           tag="operations", roles=None, raw=True, response=HealthSnapshot)
    def health_snapshot(self, principal, request):
        """Staff see their tenant; the internal token (INTERNAL_HEALTH_TOKEN) sees all. The
        console calls this with no request (Service.operation, as the staff it signed in) and
        gets the sections themselves, a failed one holding its error."""
        presented = None if request is None else request.headers.get("x-internal-token")
        if presented is not None:
            if not same_secret(presented, self.settings.internal_health_token):
                raise Unauthorized("wrong internal token", code="invalid_internal_token")
            tenant_id, scope = None, "all"
        else:
            if request is not None:
                principal = self.authenticate(bearer_token(request))
            check_roles(HEALTH_READERS, principal)
            tenant_id, scope = principal["tenant_id"], "tenant"
        sections = self.health_sections(tenant_id)
        if request is None:
            return sections
        failed = next((answer for answer in sections.values() if isinstance(answer, Exception)), None)
        if failed is not None:
            raise failed
        return json_response(200, {"scope": scope, **sections})

    def health_sections(self, tenant_id: str | None) -> dict:
        """The health snapshot's sections (tickets, registrations, heartbeats, retention,
        jobs), asked in parallel; a section whose service did not answer holds the error,
        so the console can still show the others."""
        def answer(service, method, *args):
            def ask():
                try:
                    return self.call(service, method, *args)
                except Exception as exc:  # a section's error is its answer
                    return exc
            return ask

        answers = rpc.together(
            tickets=answer("tickets", "ticket_counts", tenant_id),
            registrations=answer("accounts", "registration_counts", tenant_id),
            heartbeats=answer("devices", "health_buckets", tenant_id),
            jobs=answer("scheduler", "list_jobs"),
            **{f"retention:{service}": answer(service, "apply_retention", None, True, tenant_id)
               for service in ("accounts", "tickets", "devices")})
        retention = {}
        for key in [key for key in answers if key.startswith("retention:")]:
            answer = answers.pop(key)
            if isinstance(answer, Exception):
                retention = answer
            elif isinstance(retention, dict):
                retention.update(answer["kinds"])
        jobs = answers["jobs"]
        if not isinstance(jobs, Exception):
            jobs = [{key: job[key] for key in ("name", "enabled", "interval_seconds", "cron", "running",
                                                "last_run")} for job in jobs]
        return {"tickets": answers["tickets"], "registrations": answers["registrations"],
                "heartbeats": answers["heartbeats"], "retention": retention, "jobs": jobs}
