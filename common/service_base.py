"""What every back-end service exposes besides its own work: `ping`, /metrics, /healthz."""
from nameko.rpc import rpc as nameko_rpc
from nameko.web.handlers import http

from common.errors import DomainError
from common.metrics import EntrypointMetrics, metrics_response


def rpc(method):
    """nameko's @rpc with domain errors expected: a 404 or a 409 is an answer to the
    caller, not a failure to log with a traceback."""
    return nameko_rpc(expected_exceptions=DomainError)(method)


class ServiceBase:
    entrypoint_metrics = EntrypointMetrics()

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
