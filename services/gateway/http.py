"""The gateway's HTTP plumbing: JSON entrypoint, routes table, and the one error table.

Every response is JSON; every error has the API.md shape
`{"error": {"code", "message", "details"}}`; nothing unmapped leaks a stack trace
(ENGINEERING.md pitfall 11).
"""
from __future__ import annotations

import collections
import io
import ipaddress
import logging
import re
import socket
import time
from http import HTTPStatus
from urllib.parse import urlsplit
from dataclasses import dataclass, field
from typing import Callable

import eventlet
import orjson
from eventlet import wsgi as eventlet_wsgi
from nameko.exceptions import BadRequest as NamekoBadRequest
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import HttpOnlyProtocol, WebServer, WsgiApp
from prometheus_client import Counter, Histogram
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound as RouteNotFound
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Request, Response

from common.config import Settings
from common.contracts import StrictSchema, load
from common.outages import unavailable, warn_once
from common.rpc import BROKER_DOWN, broker_circuit
from common.errors import (BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge,
                           RequestTimeout, ServiceTimeout, ServiceUnavailable, TooManyRequests, Unauthorized,
                           ValidationFailed)

log = logging.getLogger(__name__)


# The one error-mapping table: domain error class -> HTTP status. First match wins.
ERROR_STATUS: tuple[tuple[type, int], ...] = (
    (BadRequest, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (RequestTimeout, 408),
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
    # 504 a service that did not answer in time (WARNING, once per interval and code: an
    # outage is one event, not one per request); the line's `entrypoint` is the route
    code, message = body["error"]["code"], body["error"]["message"]
    if status >= 500:
        warn_once(log, f"answered-{status}-{code}", "answered %d %s: %s", status, code, message)
    else:
        log.info("answered %d %s: %s", status, code, message)
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
    # a 409 that names a delay too (`request_in_progress`: an Idempotency-Key's first request
    # is still running)
    if status in (429, 503) or (status == 409 and "retry_after_seconds" in exc.details):
        seconds = exc.details.get("retry_after_seconds", DEFAULT_RETRY_AFTER_SECONDS)
        try:
            seconds = max(1, int(-(-float(seconds) // 1)))  # whole seconds, rounded up
        except (TypeError, ValueError):
            seconds = DEFAULT_RETRY_AFTER_SECONDS
        return {"Retry-After": str(seconds)}
    return None


# headers of every answer outside the console (the API and the operations routes): API
# answers carry tokens or personal data, health answers go stale at once
NO_SNIFF_NO_STORE = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key"
CORS_EXPOSE_HEADERS = "Retry-After, Location, Content-Disposition"  # what the API answers with
CORS_MAX_AGE_SECONDS = 600


def is_console_path(path: str) -> bool:
    """Addresses outside the API and the operations routes belong to people."""
    return path != "/api" and not path.startswith(("/api/", "/healthz", "/readyz", "/metrics"))


@dataclass(frozen=True)
class ConsoleErrorPages:
    """How an error on a people's address (`is_console_path`) is answered: with a page."""
    # (request, error) -> the page; werkzeug's routing errors, and what is refused before a
    # page runs (a slow body, the broker known down)
    routing_error: Callable[[Request, BaseException], Response]
    # (path, status, code) -> (body, content type, headers), for what the HTTP parser refused
    parser_error: Callable[[str, int, str], tuple[bytes, str, dict]]


# The console routes through this module (`json_http`), so this module cannot import it back:
# the gateway's service hands the console's pages in (`answer_console_errors_with`).
_console_error_pages: ConsoleErrorPages | None = None


def answer_console_errors_with(pages: ConsoleErrorPages) -> None:
    global _console_error_pages
    _console_error_pages = pages


def error_answer(request: Request, exc: BaseException) -> Response:
    """A page on a console address (once the console's pages are in), else the API's JSON."""
    if _console_error_pages is not None and is_console_path(request.path):
        return _console_error_pages.routing_error(request, exc)
    return error_response(exc)


def is_api_path(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


class Cors:
    """The CORS policy of /api/: off (no origin allowed) unless CORS_ALLOWED_ORIGINS names
    exact origins. An allowed origin gets itself back in Access-Control-Allow-Origin; a
    preflight (OPTIONS) from it is answered 204 with the path's real methods, and from any
    other origin 403 `cors_origin_not_allowed` (not 405)."""

    def __init__(self, allowed_origins=()):
        self.allowed_origins = frozenset(allowed_origins)

    def allows(self, origin: str | None) -> bool:
        return bool(origin) and origin in self.allowed_origins

    def headers(self, origin: str | None) -> dict:
        """For every /api/ answer: the CORS headers for this request's Origin."""
        if not self.allowed_origins:
            return {}
        if not self.allows(origin):
            return {"Vary": "Origin"}  # the answer depends on the Origin all the same
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Expose-Headers": CORS_EXPOSE_HEADERS}

    def preflight(self, origin: str | None, methods) -> Response:
        """The answer to OPTIONS on an /api/ path whose methods are `methods` (none: no such
        route). Without an Origin it is a plain OPTIONS: 204 with Allow."""
        methods = sorted(set(methods) - {"OPTIONS"})
        if not methods:
            return error_response(RouteNotFound())
        if origin is None:
            return json_response(204, headers={"Allow": ", ".join(methods + ["OPTIONS"])})
        if not self.allows(origin):
            return error_response(Forbidden(
                "this origin may not call the API from a browser", code="cors_origin_not_allowed",
                details={"origin": origin[:200]}))
        return json_response(204, headers={
            "Access-Control-Allow-Methods": ", ".join(methods),
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": str(CORS_MAX_AGE_SECONDS)})


def add_answer_headers(response: Response, path: str, origin: str | None, cors: Cors) -> Response:
    """nosniff and no-store on every answer outside the console (which sets its own), and the
    CORS headers on /api/ answers."""
    response.headers.update(NO_SNIFF_NO_STORE)
    if is_api_path(path):
        for name, value in cors.headers(origin).items():
            if name == "Vary" and response.headers.get("Vary"):
                value = f"{response.headers['Vary']}, {value}"
            response.headers[name] = value
    return response


class JsonWsgiApp(WsgiApp):
    """nameko's WSGI app, but routing failures (unknown path, wrong method) answer in the
    same JSON error shape as everything else (an HTML page outside /api/: the console's);
    every answer outside the console gets nosniff and no-store, /api/ ones the CORS policy,
    and OPTIONS on an /api/ path is a CORS preflight (never a 405)."""

    def __init__(self, server, cors: Cors | None = None):
        super().__init__(server)
        settings = Settings.from_mapping(server.container.config)
        if cors is None:
            cors = Cors(settings.cors_allowed_origins)
        self.cors = cors
        self.max_body_bytes, self.body_seconds = settings.max_body_bytes, settings.http_body_timeout_seconds

    def __call__(self, environ, start_response):
        request = Request(environ, shallow=True)
        adapter = self.url_map.bind_to_environ(environ)
        origin = request.headers.get("Origin")
        try:
            buffer_body(environ, self.max_body_bytes, self.body_seconds)
            # the request's deadline runs from here, waiting for a worker included
            environ[ARRIVED_AT_ENVIRON_KEY] = time.monotonic()
            response = answer_without_a_worker(request)
            if response is not None:
                pass
            elif request.method == "OPTIONS" and is_api_path(request.path):
                response = self.cors.preflight(origin, adapter.allowed_methods())
            else:
                provider, values = adapter.match()
                request.path_values = values
                response = provider.handle_request(request)
        except RequestRedirect as redirect:  # `//api//tickets`: to the address it means
            response = same_host_redirect(redirect)
        except Exception as exc:
            response = error_answer(request, exc)
        if not is_console_path(request.path):
            add_answer_headers(response, request.path, origin, self.cors)
        return response(environ, start_response)


def buffer_body(environ, max_bytes: int, seconds: float) -> None:
    """The whole body read now, within `seconds`, before the request is handed to a nameko
    worker: a worker is one of `max_workers` (10), and a request reading a slow body inside
    one held it for as long as the client liked — ten slow clients stopped the gateway
    (issue 26). eventlet's stream decodes chunks and stops at Content-Length; the handlers
    then read the bytes from memory, as a body of that Content-Length (werkzeug reads a
    chunked body as empty under eventlet). At most `max_bytes` + 1 are read: `read_body`
    answers 413 past the limit."""
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    length = environ.get("CONTENT_LENGTH") or ""
    if not chunked and length in ("", "0"):
        return
    if not chunked and length.isdigit() and int(length) > max_bytes:
        return  # refused by read_body without reading it
    deadline = eventlet.Timeout(seconds)
    try:
        raw = environ["wsgi.input"].read(max_bytes + 1)
    except eventlet.Timeout as timeout:
        if timeout is not deadline:
            raise
        close_connection(environ)
        raise RequestTimeout(f"the request's body took longer than {seconds:g} s to arrive",
                             details={"seconds": seconds}) from None
    except ValueError:  # eventlet reading a chunk size that is not a hexadecimal number
        close_connection(environ)
        raise BadRequest("the chunked body is malformed", code="malformed_chunked_body") from None
    except OSError:  # the client closed before its body's end: nobody may be left to answer
        close_connection(environ)
        raise BadRequest("the body ended before its announced end", code="malformed_body") from None
    finally:
        deadline.cancel()
    environ["wsgi.input"] = io.BytesIO(raw)
    environ["CONTENT_LENGTH"] = str(len(raw))
    environ.pop("HTTP_TRANSFER_ENCODING", None)


def same_host_redirect(redirect: RequestRedirect) -> Response:
    """werkzeug's redirect (repeated slashes merged), with a Location of path and query only:
    its own URL is built from the Host header, which the client writes."""
    target = urlsplit(redirect.new_url)
    location = target.path + (f"?{target.query}" if target.query else "")
    return json_response(redirect.code, error_body("moved", "this address is written with single "
                                                   "slashes", {"location": location}),
                         headers={"Location": location})


def liveness() -> Response:
    """/healthz: the process answers HTTP. Answered without a worker (workers may all be
    waiting on a dependency), so it answers within a second whatever the rest is doing."""
    return json_response(200, {"status": "ok"})


# paths that need no service behind them: answered while the broker is down
BROKERLESS_PATHS = ("/healthz", "/readyz", "/metrics", "/api/openapi.json", "/static/")


def answer_without_a_worker(request: Request) -> Response | None:
    """What is answered before a nameko worker is taken: liveness, and — while the broker is
    known to be down (common.rpc.broker_circuit) — a 503 with Retry-After for every path that
    would need it, instead of a worker held until its call fails (issue 26)."""
    if request.method == "GET" and request.path == "/healthz" and not request.query_string:
        return liveness()  # with a query string, the route refuses it (422)
    if not broker_circuit.is_open() or request.path.startswith(BROKERLESS_PATHS):
        return None
    return error_answer(request, unavailable("the message broker", BROKER_DOWN, log))


def close_connection(environ) -> None:
    """Answer, then close: eventlet would otherwise read the rest of the body to reuse the
    connection — with no deadline, from a client that has just shown it will not send it."""
    protocol = environ.get(PROTOCOL_ENVIRON_KEY)
    if protocol is not None:
        protocol.close_connection = 1


PROTOCOL_ENVIRON_KEY = "chamados.http_protocol"
ARRIVED_AT_ENVIRON_KEY = "chamados.arrived_at"  # time.monotonic() once the body was read

# what eventlet's HTTP parser refuses itself, before any WSGI app runs: status -> error code
PARSER_ERROR_CODES = {
    400: "bad_request",
    408: "request_timeout",
    414: "uri_too_long",
    431: "headers_too_large",
    505: "http_version_not_supported",
}
PARSER_ERROR_MESSAGES = {
    400: "malformed request",
    408: "the request line and headers took too long to arrive",
    414: "the URL is too long",
    431: "too many request headers, or a header too large",
    505: "this HTTP version is not supported",
}
PARSER_DRAIN_SECONDS, PARSER_DRAIN_BYTES = 1.0, 1 << 20
DEFAULT_HEADER_TIMEOUT_SECONDS = Settings.http_header_timeout_seconds


class JsonErrorProtocol(HttpOnlyProtocol):
    """eventlet's HTTP protocol, but what its parser refuses (request line over
    `url_length_limit`, a header line over 8 KB, headers over 64 KB or more than 100 of
    them, a malformed request line or Content-Length) is answered in the API's JSON error
    shape instead of eventlet's and http.server's plain text or HTML. Relies on eventlet
    0.41's `_read_request_line` and `parse_request` (tests/e2e/test_bad_input.py sends each
    case over a raw socket).

    The request line and headers must arrive within HTTP_HEADER_TIMEOUT_SECONDS in all: a
    client trickling a byte at a time (slowloris) is answered 408 and its connection closed;
    a kept-alive connection idle after its last answer is closed without a word."""

    _headers_deadline = None
    _request_started = False
    _requests_answered = 0

    def get_environ(self, *args, **kwargs):
        environ = super().get_environ(*args, **kwargs)
        environ[PROTOCOL_ENVIRON_KEY] = self  # so the app can end a connection it refused
        return environ

    def handle_one_request(self):
        self._request_started = False
        self._headers_deadline = eventlet.Timeout(getattr(self.server, "header_timeout_seconds",
                                                          DEFAULT_HEADER_TIMEOUT_SECONDS))
        try:
            handled = super().handle_one_request()
            self._requests_answered += 1
            return handled
        except eventlet.Timeout as timeout:
            if timeout is not self._headers_deadline:
                raise
            if self._request_started or not self._requests_answered:
                self.send_json_error(408, details={"seconds": self._headers_deadline.seconds})
            self.close_connection = True
        finally:
            self._headers_deadline.cancel()

    def _read_request_line(self):
        line = super()._read_request_line()
        self._request_started = bool(line and line.strip())
        limit = self.server.url_length_limit
        if line and len(line) >= limit:  # eventlet would write its own bodiless 414
            parts = line.split(b" " if isinstance(line, bytes) else " ", 2)
            path = parts[1] if len(parts) > 1 else "/api/"
            path = path.decode("latin-1") if isinstance(path, bytes) else path
            self.send_json_error(414, details={"max_bytes": limit - 1}, path=path)
            return ""  # eventlet then closes the connection
        return line

    def parse_request(self):
        try:
            return self._parse_request()
        finally:  # the headers are in (or refused): the app's time is not theirs
            if self._headers_deadline is not None:
                self._headers_deadline.cancel()

    def _parse_request(self):
        try:
            if not super().parse_request():
                return False  # answered by send_error (or an empty line: nothing to answer)
        except (eventlet_wsgi.HeaderLineTooLong, eventlet_wsgi.HeadersTooLarge):
            self.send_json_error(431, details={"max_line_bytes": eventlet_wsgi.MAX_HEADER_LINE,
                                               "max_total_bytes": eventlet_wsgi.MAX_TOTAL_HEADER_SIZE})
            return False
        # what eventlet refuses next in plain text, checked the same way before it does
        content_length = self.headers.get("content-length")
        if content_length is not None:
            try:
                if int(content_length) < 0:
                    raise ValueError
            except ValueError:
                self.send_json_error(400, "the Content-Length header is not a length")
                return False
            if self.headers.get("transfer-encoding") is not None:
                self.send_json_error(400, "Content-Length and Transfer-Encoding are not allowed together")
                return False
        return True

    def send_error(self, code, message=None, explain=None):
        """http.server's errors (bad request line, unsupported version, too many headers)."""
        self.send_json_error(int(code))

    def send_json_error(self, status: int, message: str | None = None, details=None,
                        path: str | None = None) -> None:
        """The error in the API's JSON shape; on a console `path` (when the parser got that
        far), the console's HTML error page instead."""
        code = PARSER_ERROR_CODES.get(status, "bad_request")
        message = message or PARSER_ERROR_MESSAGES.get(status, "malformed request")
        if path is not None and _console_error_pages is not None and is_console_path(path):
            body, content_type, extra = _console_error_pages.parser_error(path, status, code)
        else:
            body, content_type, extra = (orjson.dumps(error_body(code, message, details)),
                                         "application/json", NO_SNIFF_NO_STORE)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        head = [f"HTTP/1.1 {status} {phrase}", f"Content-Type: {content_type}",
                f"Content-Length: {len(body)}", "Connection: close"]
        head += [f"{name}: {value}" for name, value in extra.items()]
        self.close_connection = True
        log.info("answered %d %s: %s", status, code, message)
        try:
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            self.wfile.flush()
            self.drain()
        except OSError:  # the client left already
            pass

    def drain(self) -> None:
        """Closing with unread bytes (the rest of a long URL or of the headers) makes the
        kernel send a reset that can discard the answer before the client reads it: stop
        sending, then read what the client still sends, for a moment."""
        self.connection.shutdown(socket.SHUT_WR)
        self.connection.settimeout(PARSER_DRAIN_SECONDS)
        deadline, read = time.monotonic() + PARSER_DRAIN_SECONDS, 0
        try:
            while read < PARSER_DRAIN_BYTES and time.monotonic() < deadline:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                read += len(chunk)
        except OSError:
            pass


class GatewayWebServer(WebServer):
    """nameko's web server with the gateway's protocol and app, and at most
    HTTP_CONNECTIONS_PER_CLIENT connections open at once from one client address (a trusted
    proxy's excepted: its clients are many): one more is answered 429 and closed at once, so
    one host cannot hold every connection the process can serve."""

    def __init__(self):
        super().__init__()
        self.open_connections: collections.Counter = collections.Counter()

    def get_wsgi_app(self):
        return JsonWsgiApp(self)

    def get_wsgi_server(self, sock, wsgi_app, protocol=JsonErrorProtocol, debug=False):
        settings = Settings.from_mapping(self.container.config)
        self.connections_per_client = settings.http_connections_per_client
        self.trusted_proxies = settings.trusted_proxies
        server = super().get_wsgi_server(sock, wsgi_app, protocol=protocol, debug=debug)
        server.header_timeout_seconds = settings.http_header_timeout_seconds
        return server

    def process_request(self, sock, address):
        # eventlet writes the headers and the body in two sends: without TCP_NODELAY every
        # answer larger than a few KB waited ~40 ms for the client's delayed ACK (strace)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # the client left already; the server will notice
            pass
        peer = address[0] if address else ""
        capped = not self._is_trusted_proxy(peer)
        if capped and self.open_connections[peer] >= self.connections_per_client:
            self._refuse(sock, peer)
            return None
        self.open_connections[peer] += 1
        try:
            return super().process_request(sock, address)
        finally:
            self.open_connections[peer] -= 1
            if self.open_connections[peer] <= 0:
                del self.open_connections[peer]

    def _is_trusted_proxy(self, peer: str) -> bool:
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)

    def _refuse(self, sock, peer: str) -> None:
        body = orjson.dumps(error_body(
            "too_many_connections", "too many connections open from your address",
            {"max_connections": self.connections_per_client}))
        head = ["HTTP/1.1 429 Too Many Requests", "Content-Type: application/json",
                f"Content-Length: {len(body)}", "Connection: close",
                f"Retry-After: {DEFAULT_RETRY_AFTER_SECONDS}"]
        head += [f"{name}: {value}" for name, value in NO_SNIFF_NO_STORE.items()]
        warn_once(log, "connections-per-client", "refused a connection from %s: %d open already "
                  "(HTTP_CONNECTIONS_PER_CLIENT)", peer, self.connections_per_client)
        try:
            sock.settimeout(1)
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        except OSError:  # the client left already
            pass
        finally:
            sock.close()


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


def client_address(request: Request, trusted_proxies=()) -> str | None:
    """The address a request came from: the peer's, unless the peer is a trusted proxy
    (TRUSTED_PROXIES; none by default), then the right-most X-Forwarded-For entry that is
    not a trusted proxy itself (entries left of it are whatever the client wrote)."""
    def trusted(text):
        try:
            ip = ipaddress.ip_address(text.strip())
        except ValueError:
            return False
        return any(ip in network for network in trusted_proxies)

    address = request.remote_addr
    if not address or not trusted_proxies or not trusted(address):
        return address
    for hop in reversed(request.headers.get("X-Forwarded-For", "").split(",")[-20:]):
        hop = hop.strip()
        if not hop:
            continue
        if not trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return address  # a proxy we trust wrote nonsense: count the proxy
        address = hop
    return address
