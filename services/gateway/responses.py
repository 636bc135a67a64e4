"""The gateway's answers: JSON bodies, the one error table, the console's error pages handed
in, and the headers of every answer (nosniff, no-store, CORS).

Every response is JSON; every error has the API.md shape
`{"error": {"code", "message", "details"}}`; nothing unmapped leaks a stack trace
(ENGINEERING.md pitfall 11).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import orjson
from nameko.exceptions import BadRequest as NamekoBadRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound as RouteNotFound
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from common.outages import warn_once
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



def console_error_pages() -> ConsoleErrorPages | None:
    """The console's pages once the gateway's service has handed them in."""
    return _console_error_pages


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



def liveness() -> Response:
    """/healthz: the process answers HTTP. Answered without a worker (workers may all be
    waiting on a dependency), so it answers within a second whatever the rest is doing."""
    return json_response(200, {"status": "ok"})

