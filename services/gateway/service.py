"""gateway: the HTTP API. It authenticates, validates shapes, calls services over RPC with
a deadline, and maps errors; it holds no business rule."""
from __future__ import annotations

import logging
import time

from nameko.rpc import RpcProxy

from common import idempotency, rpc
from common.contracts import load
from common.errors import DomainError, ServiceTimeout
from common.metrics import EntrypointMetrics
from services.gateway.auth_cache import TokenCacheProvider
from services.gateway.console import web as console_web
from services.gateway.console.lookups import LookupsProvider, changes_what_pages_show
from services.gateway.console.views import ConsoleViews
from services.gateway.deadletters import DeadLetterRoutes
from services.gateway.dependencies import (BusGauges, HeartbeatPublisher, RequestArrival, SettingsProvider,
                                           WorkerData)
from services.gateway.http import (OPERATIONS, NoQuery, bearer_token, check_role, idempotency_key, observe,
                                   parse_json_body, parse_query)
from services.gateway.readiness import ReadinessRoutes
from services.gateway.responses import answer_console_errors_with, error_response, json_response
# in the order their routes are listed in the OpenAPI document
from services.gateway.routes.people import PeopleRoutes
from services.gateway.routes.tickets import TicketRoutes
from services.gateway.routes.devices import DeviceRoutes
from services.gateway.routes.reports import ReportRoutes
from services.gateway.routes.operations import OperationRoutes

log = logging.getLogger(__name__)

answer_console_errors_with(console_web.ERROR_PAGES)  # people get pages, the API JSON

# accounts operations after which a verified token may mean something else (another role,
# company, or nobody): the gateway's token cache is emptied when one succeeds
CHANGES_WHO_MAY_DO_WHAT = frozenset({"update_user", "merge_users", "change_password"})


class Service(ReadinessRoutes, PeopleRoutes, TicketRoutes, DeviceRoutes, ReportRoutes, OperationRoutes,
              ConsoleViews, DeadLetterRoutes):
    """The JSON API at /api/, operations routes, and the console for people at /: the routes
    come from the mixins by area (routes/, readiness.py, deadletters.py, console/views/); this
    class holds the dependencies and the plumbing every route goes through."""
    name = "gateway"
    settings = SettingsProvider()
    publish_heartbeat = HeartbeatPublisher()
    bus_gauges = BusGauges()
    worker_data = WorkerData()
    arrived_at = RequestArrival()
    entrypoint_metrics = EntrypointMetrics()
    verified_tokens = TokenCacheProvider()
    console_lookups = LookupsProvider()
    accounts = RpcProxy("accounts")
    tickets = RpcProxy("tickets")
    devices = RpcProxy("devices")
    scheduler = RpcProxy("scheduler")
    notifications = RpcProxy("notifications")  # /readyz pings it

    # plumbing ------------------------------------------------------------------------

    def operation(self, name: str, principal: dict, *, body=None, query=None, **path_values):
        """An API operation without HTTP, for the console: the route's own role check and
        schemas, then its handler (so roles and validation live in one place)."""
        spec, handler = OPERATIONS[name]
        check_role(spec, principal)
        kwargs = dict(path_values)
        if spec.body is not None:
            kwargs["body"] = body = {} if body is None else body
            load(spec.body, body)
        if spec.query is not None:
            kwargs["query"] = query = {} if query is None else query
            load(spec.query, query)
        if spec.raw:
            kwargs["request"] = None
        return handler(self, principal, **kwargs)

    def call(self, service: str, method: str, *args, timeout: float | None = None):
        """Every RPC has a deadline (the in-service proxy has none, pitfall 10), and all the
        calls of one HTTP request share RPC_TIMEOUT_SECONDS (or a longer `timeout` its route
        asks for: an archive, a cron job) from the request's arrival."""
        request_limit = max(timeout or 0, self.settings.rpc_timeout_seconds)
        timeout = timeout or self.settings.rpc_timeout_seconds
        if self.arrived_at is not None:
            left = self.arrived_at + request_limit - time.monotonic()
            if left <= 0:
                raise ServiceTimeout(f"the request waited past its {request_limit:g} s deadline",
                                     details={"service": service})
            timeout = min(timeout, left)
        answer = rpc.call(getattr(self, service), service, method, *args, timeout=timeout,
                          broker_uri=self.settings.amqp_uri)
        if service == "accounts" and method in CHANGES_WHO_MAY_DO_WHAT:
            self.verified_tokens.clear()
        return answer

    def authenticate(self, token: str) -> dict:
        """Whose token this is, from accounts, or from the last second's answer for it
        (auth_cache.py: a revoked token is refused within AUTH_CACHE_SECONDS)."""
        return self.verified_tokens.verified(token, lambda: self.call("accounts", "authenticate", token))

    def end_session(self, token: str) -> None:
        """Sign-out: revoked in accounts, forgotten here at once."""
        self.verified_tokens.forget(token)
        self.call("accounts", "sign_out", token)

    def machine_hint(self, spec, request) -> tuple[dict, dict]:
        """(devices' hint, the body) for a machine's route: devices checks the token and
        decides from what the heartbeat says of its inventory whether to ask for it
        (`need_inventory`). A refused token is answered before any problem of the body, so
        anonymous callers learn nothing of it."""
        token = bearer_token(request)
        try:
            body, problem = parse_json_body(request, spec.body, self.settings.max_body_bytes), None
        except DomainError as exc:
            body, problem = {}, exc
        hint = self.call("devices", "heartbeat_hint", token, body.get("inventory_hash"),
                         body.get("inventory") is not None, body.get("sent_at"))
        if problem is not None:
            raise problem
        return hint, body

    def handle_route(self, spec, handler, request, path_values):
        started = time.perf_counter()
        try:
            principal = None
            kwargs = dict(path_values)
            if spec.machine:
                principal, kwargs["body"] = self.machine_hint(spec, request)
            elif spec.roles is not None:
                principal = self.authenticate(bearer_token(request))
                check_role(spec, principal)
            # every state-changing request of a person is idempotent: the client's
            # Idempotency-Key, or one of our own for this HTTP request, so an RPC that nameko
            # redelivers after a broker outage replays its first answer (common/idempotency.py)
            key = (idempotency_key(request) or idempotency.fresh_key()) \
                if spec.method != "GET" and principal is not None and not spec.machine else None
            if spec.body is not None and not spec.machine:
                kwargs["body"] = parse_json_body(request, spec.body, self.settings.max_body_bytes)
            query = parse_query(request, spec.query or NoQuery)
            if key is not None:
                self.worker_data.update({
                    idempotency.KEY_DATA: key,
                    idempotency.REQUEST_DATA: idempotency.request_fingerprint(
                        spec.method, request.full_path,
                        request.environ.get("chamados.raw_body", b""))})
            if spec.query is not None:
                kwargs["query"] = query
            try:
                result = handler(self, principal, request=request, **kwargs) if spec.raw else \
                    handler(self, principal, **kwargs)
            finally:
                if changes_what_pages_show(spec.method, principal, spec.machine):
                    self.console_lookups.clear()
            response = result if spec.raw else json_response(spec.status, result)
        except Exception as exc:
            response = error_response(exc)
        observe(spec, started, response.status_code)
        return response
