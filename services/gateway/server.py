"""The gateway's HTTP server: the WSGI app in front of nameko's workers (routing errors,
bodies read before a worker is taken, answers without a worker), eventlet's protocol with
JSON parser errors and header deadlines, and the per-client connection cap."""
from __future__ import annotations

import collections
import io
import ipaddress
import logging
import socket
import time
from http import HTTPStatus
from urllib.parse import urlsplit

import eventlet
import orjson
from eventlet import wsgi as eventlet_wsgi
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import HttpOnlyProtocol, WebServer, WsgiApp
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Request, Response

from common.config import Settings
from common.errors import BadRequest, RequestTimeout
from common.outages import unavailable, warn_once
from common.rpc import BROKER_DOWN, broker_circuit
from services.gateway.responses import (DEFAULT_RETRY_AFTER_SECONDS, NO_SNIFF_NO_STORE, Cors,
                                        add_answer_headers, console_error_pages, error_answer, error_body,
                                        error_response, is_api_path, is_console_path, json_response,
                                        liveness)

log = logging.getLogger(__name__)


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
        pages = console_error_pages()
        if path is not None and pages is not None and is_console_path(path):
            body, content_type, extra = pages.parser_error(path, status, code)
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
