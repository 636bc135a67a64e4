"""gateway: the HTTP API. It authenticates, validates shapes, calls services over RPC with
a deadline, and maps errors; it holds no business rule."""
from __future__ import annotations

import logging
import socket
import time

import eventlet
from kombu import Connection
from nameko.exceptions import UnknownService
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy

from common.config import Settings
from common.contracts import accounts as people
from common.errors import Forbidden, Unauthorized
from common.metrics import EntrypointMetrics, metrics_response
from services.gateway import openapi
from services.gateway.http import (ROUTES, GatewayTimeout, NoQuery, ServiceUnavailable,
                                   error_response, json_response, observe, parse_json_body,
                                   parse_query, route)
from services.gateway.schemas import Readiness

log = logging.getLogger(__name__)

STAFF = people.STAFF_ROLES
USER_ADMINS = frozenset({"admin", "manager"})
ADMIN = frozenset({"admin"})
BACKENDS = ("accounts", "tickets", "devices", "scheduler")


class SettingsProvider(DependencyProvider):
    def setup(self):
        self.settings = Settings.from_mapping(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.settings


def bearer_token(request) -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise Unauthorized("sign in first: send Authorization: Bearer <token>", code="missing_token")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 256:
        raise Unauthorized("invalid or expired token", code="invalid_token")
    return token


class Service:
    name = "gateway"
    settings = SettingsProvider()
    entrypoint_metrics = EntrypointMetrics()
    accounts = RpcProxy("accounts")
    tickets = RpcProxy("tickets")
    devices = RpcProxy("devices")
    scheduler = RpcProxy("scheduler")

    # plumbing ------------------------------------------------------------------------

    def call(self, service: str, method: str, *args, timeout: float | None = None):
        """Every RPC has a deadline: the in-service proxy has none (pitfall 10)."""
        timeout = timeout or self.settings.rpc_timeout_seconds
        proxy = getattr(self, service)
        try:
            with eventlet.Timeout(timeout):
                return getattr(proxy, method).call_async(*args).result()
        except eventlet.Timeout:
            raise GatewayTimeout(f"{service} did not answer within {timeout:g}s",
                                 details={"service": service}) from None
        except UnknownService:
            raise ServiceUnavailable(f"{service} is not running", details={"service": service}) from None
        except (socket.error, IOError) as exc:
            log.warning("broker unreachable calling %s.%s: %s", service, method, exc)
            raise ServiceUnavailable("the message broker is unreachable") from None

    def handle_route(self, spec, handler, request, path_values):
        started = time.perf_counter()
        try:
            principal = None
            if spec.roles is not None:
                principal = self.call("accounts", "authenticate", bearer_token(request))
                if spec.roles and principal["role"] not in spec.roles:
                    raise Forbidden("your role may not do this", code="forbidden_role",
                                    details={"role": principal["role"]})
            kwargs = dict(path_values)
            if spec.body is not None:
                kwargs["body"] = parse_json_body(request, spec.body, self.settings.max_body_bytes)
            query = parse_query(request, spec.query or NoQuery)
            if spec.query is not None:
                kwargs["query"] = query
            result = handler(self, principal, request=request, **kwargs) if spec.raw else \
                handler(self, principal, **kwargs)
            response = result if spec.raw else json_response(spec.status, result)
        except Exception as exc:
            response = error_response(exc)
        observe(spec, started, response.status_code)
        return response

    # operations ----------------------------------------------------------------------

    @route("GET", "/healthz", summary="The gateway process is alive", tag="operations",
           roles=None, raw=True)
    def healthz(self, principal, request):
        return json_response(200, {"status": "ok"})

    @route("GET", "/readyz", summary="Broker and every service (with its database) reachable",
           tag="operations", roles=None, raw=True, response=Readiness)
    def readyz(self, principal, request):
        checks = {"broker": self._broker_reachable()}
        pool = eventlet.GreenPool()
        for service, ok in zip(BACKENDS, pool.imap(self._pings, BACKENDS)):
            checks[service] = ok
        ready = all(value == "ok" for value in checks.values())
        return json_response(200 if ready else 503,
                             {"status": "ready" if ready else "not_ready", "checks": checks})

    def _pings(self, service):
        try:
            self.call(service, "ping", timeout=min(3.0, self.settings.rpc_timeout_seconds))
            return "ok"
        except Exception as exc:
            return getattr(exc, "code", exc.__class__.__name__)

    def _broker_reachable(self):
        try:
            with Connection(self.settings.amqp_uri, connect_timeout=2) as connection:
                connection.ensure_connection(max_retries=1)
            return "ok"
        except Exception as exc:
            return f"unreachable: {exc.__class__.__name__}"

    @route("GET", "/metrics", summary="Prometheus metrics of the gateway process",
           tag="operations", roles=None, raw=True)
    def serve_metrics(self, principal, request):
        return metrics_response()

    @route("GET", "/api/openapi.json", summary="This API, as OpenAPI 3", tag="operations",
           roles=None, raw=True)
    def openapi_document(self, principal, request):
        return json_response(200, openapi.document(ROUTES))

    # people: sessions ----------------------------------------------------------------

    @route("POST", "/api/auth/sign-in", summary="Sign in with email and password", tag="people",
           roles=None, body=people.SignIn, response=people.Session)
    def sign_in(self, principal, body):
        return self.call("accounts", "sign_in", body)

    @route("POST", "/api/auth/sign-out", summary="Revoke the bearer token", tag="people",
           raw=True, status=204)
    def sign_out(self, principal, request):
        self.call("accounts", "sign_out", bearer_token(request))
        return json_response(204)

    @route("GET", "/api/me", summary="Who the bearer token belongs to", tag="people",
           response=people.User)
    def me(self, principal):
        return self.call("accounts", "get_user", principal, principal["user_id"])

    # people: companies ---------------------------------------------------------------

    @route("GET", "/api/admin/companies", summary="Every company of the tenant", tag="people",
           roles=STAFF, query=people.CompanyQuery, response=people.CompanyList)
    def list_companies(self, principal, query):
        return self.call("accounts", "list_companies", principal, query)

    @route("POST", "/api/admin/companies", summary="Create a company", tag="people",
           roles=USER_ADMINS, body=people.CompanyCreate, response=people.Company, status=201)
    def create_company(self, principal, body):
        return self.call("accounts", "create_company", principal, body)

    @route("GET", "/api/admin/companies/<company_id>", summary="One company", tag="people",
           roles=STAFF, response=people.Company)
    def get_company(self, principal, company_id):
        return self.call("accounts", "get_company", principal, company_id)

    @route("PATCH", "/api/admin/companies/<company_id>", summary="Rename a company or change its apelido",
           tag="people", roles=USER_ADMINS, body=people.CompanyUpdate, response=people.Company)
    def update_company(self, principal, company_id, body):
        return self.call("accounts", "update_company", principal, company_id, body)

    @route("POST", "/api/admin/companies/<company_id>/provisioning-code",
           summary="Rotate the company's provisioning code", tag="people", roles=USER_ADMINS,
           response=people.Company)
    def rotate_provisioning_code(self, principal, company_id):
        return self.call("accounts", "rotate_provisioning_code", principal, company_id)

    # people: users -------------------------------------------------------------------

    @route("GET", "/api/admin/users", summary="Users of the tenant (people, machines or all)",
           tag="people", roles=STAFF, query=people.UserQuery, response=people.UserList)
    def list_users(self, principal, query):
        return self.call("accounts", "list_users", principal, query)

    @route("POST", "/api/admin/users", summary="Create a user", tag="people", roles=USER_ADMINS,
           body=people.UserCreate, response=people.User, status=201)
    def create_user(self, principal, body):
        return self.call("accounts", "create_user", principal, body)

    @route("POST", "/api/admin/users/merge", summary="Merge one account into another",
           tag="people", roles=ADMIN, body=people.UserMerge, response=people.MergeResult)
    def merge_users(self, principal, body):
        return self.call("accounts", "merge_users", principal, body)

    @route("GET", "/api/admin/users/<user_id>", summary="One user", tag="people", roles=STAFF,
           response=people.User)
    def get_user(self, principal, user_id):
        return self.call("accounts", "get_user", principal, user_id)

    @route("PATCH", "/api/admin/users/<user_id>", summary="Change a user; the id stays",
           tag="people", roles=USER_ADMINS, body=people.UserUpdate, response=people.User)
    def update_user(self, principal, user_id, body):
        return self.call("accounts", "update_user", principal, user_id, body)
