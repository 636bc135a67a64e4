"""What every back-end service exposes besides its own work: `ping`, /metrics, /healthz."""
import functools
import logging
from datetime import datetime

from nameko.rpc import rpc as nameko_rpc
from nameko.web.handlers import http

from common.db import utcnow
from common.errors import DomainError
from common.idempotency import purge
from common.metrics import EntrypointMetrics, metrics_response
from common.outages import is_database_outage, unavailable

log = logging.getLogger(__name__)


def rpc(method):
    """nameko's @rpc with domain errors expected: a 404 or a 409 is an answer to the
    caller, not a failure to log with a traceback. An unreachable database is one too: the
    caller gets ServiceUnavailable (a 503), the log one warning per interval."""
    @functools.wraps(method)
    def answering(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            if is_database_outage(exc):
                raise unavailable(f"the {self.name} database", exc, log) from None
            raise

    return nameko_rpc(expected_exceptions=DomainError)(answering)


class ServiceBase:
    entrypoint_metrics = EntrypointMetrics()
    # tables whose rows are rewritten or deleted in normal work (their dead versions need
    # VACUUM; autovacuum may be off, as on the machines this was measured on)
    churning_tables: tuple[str, ...] = ("outbox",)

    # the service's Idempotency-Key records (common/idempotency.py), purged past 24 hours
    idempotency_records = None

    @rpc
    def maintain_storage(self, now: str | None = None) -> dict:
        """Delete what has expired (`purge_expired`), then VACUUM (ANALYZE) the tables that
        churn, so their space is reused instead of growing; the scheduler's
        `storage-maintenance` job calls it (with its tick)."""
        store = getattr(self, "db", None)
        if store is None:
            return {"vacuumed": []}
        when = datetime.fromisoformat(now) if now else utcnow()
        with store.unit_of_work() as uow:
            deleted = self.purge_expired(uow, when)
            uow.commit()
        return {**store.vacuum(self.churning_tables), **deleted}

    def purge_expired(self, uow, when: datetime) -> dict:
        """Rows past their time, deleted in the maintenance's transaction: {what_deleted: n}.
        A service with more adds its own."""
        if self.idempotency_records is None:
            return {}
        return {"idempotency_keys_deleted": purge(uow.session, self.idempotency_records, when)}

    @rpc
    def ping(self) -> dict:
        """Alive and, where the service has a database, able to reach it."""
        store = getattr(self, "db", None)
        if store is not None:
            store.ping()
        return {"service": self.name, "ok": True}

    @http("GET", "/metrics")
    def serve_metrics(self, request):
        return metrics_response()

    @http("GET", "/healthz")
    def serve_healthz(self, request):
        return 200, {"Content-Type": "application/json"}, '{"status": "ok"}'
