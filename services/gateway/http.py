"""The gateway's HTTP plumbing: JSON entrypoint, routes table, and the one error table.

Every response is JSON; every error has the API.md shape
`{"error": {"code", "message", "details"}}`; nothing unmapped leaks a stack trace
(ENGINEERING.md pitfall 11).
"""
from __future__ import annotations

import logging
import re
import socket
import time
from dataclasses import dataclass, field

import orjson
from nameko.exceptions import BadRequest as NamekoBadRequest
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer, WsgiApp
from prometheus_client import Counter, Histogram
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound as RouteNotFound
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from common.contracts import StrictSchema, load
from common.errors import (BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge,
                           ServiceTimeout, ServiceUnavailable, TooManyRequests, Unauthorized,
                           ValidationFailed)

log = logging.getLogger(__name__)


# The one error-mapping table: domain error class -> HTTP status. First match wins.
ERROR_STATUS: tuple[tuple[type, int], ...] = (
    (BadRequest, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (ValidationFailed, 422),
    (TooManyRequests, 429),
    (ServiceUnavailable, 503),
    (ServiceTimeout, 504),
)

HTTP_REQUESTS = Counter("chamados_http_requests_total", "Gateway HTTP requests by route and status",
                        ["route", "method", "status"])
HTTP_DURATION = Histogram("chamados_http_request_duration_seconds", "Gateway HTTP request time",
                          ["route", "method"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def json_response(status: int, payload=None, headers=None) -> Response:
    body = b"" if payload is None else orjson.dumps(payload)
    return Response(body, status=status, headers=headers,
                    content_type="application/json" if payload is not None else None)


def error_body(code: str, message: str, details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(exc: BaseException) -> Response:
    mapped = mapped_error(exc)
    if mapped is None:
        log.exception("unmapped error in the gateway", exc_info=exc)
        return json_response(500, error_body("internal_error", "internal error; it has been logged"))
    status, body, headers = mapped
    # one line and never a traceback for a mapped error: a 4xx is an answer (INFO), a 503 or
    # 504 a service that did not answer in time (WARNING); the line's `entrypoint` is the route
    log.log(logging.WARNING if status >= 500 else logging.INFO, "answered %d %s: %s",
            status, body["error"]["code"], body["error"]["message"])
    return json_response(status, body, headers)


def mapped_error(exc: BaseException) -> tuple[int, dict, dict | None] | None:
    """(status, body, headers) from the error table, or None for an unmapped error."""
    for error_class, status in ERROR_STATUS:
        if isinstance(exc, error_class):
            return status, error_body(exc.code, exc.message, exc.details), error_headers(status, exc)
    if isinstance(exc, RequestEntityTooLarge):
        return 413, error_body("payload_too_large", "the request body is too large"), None
    if isinstance(exc, MethodNotAllowed):
        allowed = sorted(exc.valid_methods or [])
        return 405, error_body("method_not_allowed", "method not allowed on this route",
                               {"allowed": allowed}), {"Allow": ", ".join(allowed)}
    if isinstance(exc, RouteNotFound):
        return 404, error_body("route_not_found", "no such route"), None
    if isinstance(exc, HTTPException):
        return exc.code or 400, error_body("bad_request", exc.name), None
    if isinstance(exc, NamekoBadRequest):
        return 400, error_body("bad_request", "malformed request"), None
    return None


# what a client is told to wait before retrying a 503 that names no delay of its own
DEFAULT_RETRY_AFTER_SECONDS = 5


def error_headers(status: int, exc) -> dict | None:
    if status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if status in (429, 503):
        seconds = exc.details.get("retry_after_seconds", DEFAULT_RETRY_AFTER_SECONDS)
        try:
            seconds = max(1, int(-(-float(seconds) // 1)))  # whole seconds, rounded up
        except (TypeError, ValueError):
            seconds = DEFAULT_RETRY_AFTER_SECONDS
        return {"Retry-After": str(seconds)}
    return None


class JsonWsgiApp(WsgiApp):
    """nameko's WSGI app, but routing failures (unknown path, wrong method) answer in the
    same JSON error shape as everything else (an HTML page outside /api/: the console's)."""

    def __call__(self, environ, start_response):
        request = Request(environ, shallow=True)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, values = adapter.match()
            request.path_values = values
            response = provider.handle_request(request)
        except Exception as exc:
            from services.gateway.console.web import is_console_path, routing_error_page
            response = routing_error_page(request, exc) if is_console_path(request.path) \
                else error_response(exc)
        return response(environ, start_response)


class GatewayWebServer(WebServer):
    def get_wsgi_app(self):
        return JsonWsgiApp(self)

    def process_request(self, sock, address):
        # eventlet writes the headers and the body in two sends: without TCP_NODELAY every
        # answer larger than a few KB waited ~40 ms for the client's delayed ACK (strace)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # the client left already; the server will notice
            pass
        return super().process_request(sock, address)


class JsonHttpEntrypoint(HttpRequestHandler):
    server = GatewayWebServer()

    def response_from_exception(self, exc):
        return error_response(exc)


json_http = JsonHttpEntrypoint.decorator


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str  # werkzeug rule, e.g. /api/admin/users/<user_id>
    summary: str
    tag: str
    roles: frozenset | None  # None: public (or a machine); empty: any signed-in person
    body: type | None = None
    query: type | None = None
    response: type | None = None
    status: int = 200
    raw: bool = False  # the handler returns its own werkzeug Response
    path_params: tuple = field(default=())
    machine: bool = False  # authenticated by a machine token instead of a person's


ROUTES: list[RouteSpec] = []
# handler name -> (spec, handler): the console calls the same operations as the API, with
# the same roles and schemas (services/gateway/console)
OPERATIONS: dict[str, tuple[RouteSpec, object]] = {}
ANY_PERSON = frozenset()


def route(method, path, *, summary, tag, roles=ANY_PERSON, body=None, query=None,
          response=None, status=200, raw=False, machine=False):
    """Declare a gateway route: auth, role check, body/query validation, JSON response,
    metrics, error mapping. The handler is `fn(self, principal, body=?, query=?, **path)`."""
    spec = RouteSpec(method, path, summary, tag, None if machine else roles, body, query, response,
                     status, raw, tuple(re.findall(r"<(?:\w+:)?(\w+)>", path)), machine)
    ROUTES.append(spec)

    def decorate(fn):
        OPERATIONS[fn.__name__] = (spec, fn)

        def endpoint(self, request, **path_values):
            return self.handle_route(spec, fn, request, path_values)

        endpoint.__name__ = fn.__name__
        endpoint.__doc__ = fn.__doc__
        return json_http(method, path)(endpoint)

    return decorate


def role_allows(spec: RouteSpec, principal: dict | None) -> bool:
    """Whether this person may use the route: the one place a route's roles are read."""
    if spec.roles is None:
        return True
    return principal is not None and (not spec.roles or principal["role"] in spec.roles)


def check_role(spec: RouteSpec, principal: dict) -> None:
    if not role_allows(spec, principal):
        raise Forbidden("your role may not do this", code="forbidden_role",
                        details={"role": principal["role"]})


def read_body(request: Request, max_bytes: int) -> bytes:
    """At most `max_bytes`, with or without Content-Length. werkzeug reads a chunked body
    as empty under eventlet (no `wsgi.input_terminated`), so read eventlet's stream, which
    decodes chunks and stops at Content-Length."""
    too_large = PayloadTooLarge(f"the body is larger than {max_bytes} bytes",
                                details={"max_bytes": max_bytes})
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    raw = request.environ["wsgi.input"].read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise too_large
    return raw


def parse_json_body(request: Request, schema, max_bytes: int):
    raw = read_body(request, max_bytes)
    request.environ["chamados.raw_body"] = raw  # for a handler that forwards it untouched
    if not raw.strip():
        data = {}
    else:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest("the body is not valid JSON", code="malformed_json",
                             details={"position": exc.pos}) from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", code="malformed_json")
    load(schema, data)  # fail here, before any RPC, with the fields at fault
    return data


class NoQuery(StrictSchema):
    """Routes without query parameters reject any, as bodies reject unknown fields."""


def parse_query(request: Request, schema):
    data = {}
    for key, values in request.args.lists():
        if len(values) > 1:
            raise ValidationFailed("a query parameter was given twice",
                                   details={"fields": {key: ["give it once"]}})
        data[key] = values[0]
    load(schema, data)
    return data


def observe(spec: RouteSpec, started: float, status: int) -> None:
    HTTP_REQUESTS.labels(spec.path, spec.method, str(status)).inc()
    HTTP_DURATION.labels(spec.path, spec.method).observe(time.perf_counter() - started)
