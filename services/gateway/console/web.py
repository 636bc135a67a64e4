"""The console's HTTP plumbing: pages, the session cookie, CSRF, flash messages, security
headers, rendering, and the one place where an error becomes a readable page.

A page handler is `fn(self, page) -> Response`, declared with `@page(method, path)`; it
calls the API's operations (`self.operation(name, principal, ...)`, same roles and schemas
as the HTTP API) and answers with `page.render(...)` or `page.redirect(...)`.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound as RouteNotFound
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.security import safe_join
from werkzeug.wrappers import Request, Response

from common.errors import DomainError, Unauthorized, ValidationFailed
from services.gateway.console import catalogue, formatting
from services.gateway.console.lookups import changes_what_pages_show
from services.gateway.http import (ERROR_STATUS, OPERATIONS, ConsoleErrorPages, json_http, mapped_error,
                                   observe, role_allows)

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
SESSION_COOKIE = "chamados_sessao"
SIGN_IN_CSRF_COOKIE = "chamados_csrf"  # double-submit token of the sign-in form (no session yet)
FLASH_COOKIE = "chamados_aviso"
MAX_FORM_BYTES = 256 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}


def _asset_versions() -> dict[str, str]:
    """Cache-busting: each asset's URL carries a hash of its content."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:10]
            for path in STATIC_DIR.iterdir() if path.suffix in STATIC_TYPES}


ASSET_VERSIONS = _asset_versions()


def static_url(name: str) -> str:
    return f"/static/{name}?v={ASSET_VERSIONS.get(name, '0')}"


TEMPLATES = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                        autoescape=select_autoescape(default=True, default_for_string=True),
                        trim_blocks=True, lstrip_blocks=True)  # absent optional values read as empty
TEMPLATES.globals.update(static_url=static_url, t=catalogue.translate, **formatting.TEMPLATE_HELPERS)


@dataclass(frozen=True)
class PageSpec:
    method: str
    path: str
    public: bool  # reachable signed out (the sign-in form, static files)
    operation: str | None  # the API operation whose roles this page needs


PAGES: list[PageSpec] = []


def page(method: str, path: str, *, public: bool = False, operation: str | None = None):
    """Declare a console page. `operation` names the API operation the page is built on:
    a person whose role may not use it gets the 403 page (and no link in the menu)."""
    spec = PageSpec(method, path, public, operation)
    PAGES.append(spec)

    def decorate(fn):
        def endpoint(self, request, **path_values):
            return handle_page(self, spec, fn, request, path_values)

        endpoint.__name__ = f"console_{fn.__name__}"
        endpoint.__doc__ = fn.__doc__
        return json_http(method, path)(endpoint)

    return decorate


def may(principal: dict | None, operation: str) -> bool:
    """Whether this person may use an API operation: the route table decides."""
    return principal is not None and role_allows(OPERATIONS[operation][0], principal)


def csrf_for_session(token: str) -> str:
    """The CSRF token of a signed-in person: derived from their secret session token, so it
    needs no storage and dies with the session."""
    return hmac.new(token.encode(), b"chamados-console-csrf", hashlib.sha256).hexdigest()


def local_path(candidate: str | None, default: str) -> str:
    """Only a path of this site (no scheme, no //host): redirects never leave the console."""
    if candidate and candidate.startswith("/") and not candidate.startswith(("//", "/\\")) \
            and len(candidate) <= 2000 and all(32 < ord(c) < 127 for c in candidate):
        return candidate
    return default


class Page:
    """One request to a console page: who asks, the form, and how to answer."""

    def __init__(self, gateway, spec: PageSpec, request: Request, principal: dict | None,
                 token: str | None):
        self.gateway = gateway
        self.spec = spec
        self.request = request
        self.principal = principal
        self.token = token
        self.cookies: list[tuple[str, str, dict]] = []
        self.flash = self._take_flash()
        self._form = None
        if principal is not None:
            self.csrf = csrf_for_session(token)
        else:
            self.csrf = request.cookies.get(SIGN_IN_CSRF_COOKIE) or ""
            if len(self.csrf) != 32 or not self.csrf.isalnum():
                self.csrf = secrets.token_hex(16)
                self.set_cookie(SIGN_IN_CSRF_COOKIE, self.csrf, max_age=3600)

    # input ---------------------------------------------------------------------------

    @property
    def form(self):
        if self._form is None:
            self.request.max_form_memory_size = MAX_FORM_BYTES
            self.request.max_content_length = MAX_FORM_BYTES
            self._form = self.request.form
        return self._form

    def field(self, name: str, default: str = "") -> str:
        """A form field as text; empty when absent."""
        return self.form.get(name, default).strip()

    def args(self, *names: str) -> dict:
        """Query-string values by name, empty ones dropped."""
        return {name: self.request.args.get(name, "").strip() for name in names
                if self.request.args.get(name, "").strip()}

    # output --------------------------------------------------------------------------

    def t(self, key: str, **params) -> str:
        return catalogue.translate(key, **params)

    def render(self, template: str, status: int = 200, **values) -> Response:
        html = TEMPLATES.get_template(template).render(
            page=self, principal=self.principal, csrf=self.csrf,
            flash=self.flash, menu=menu_for(self.principal), may=lambda op: may(self.principal, op),
            path=self.request.path, **values)
        return Response(html, status=status, content_type="text/html; charset=utf-8")

    def redirect(self, location: str, notice: str | None = None, kind: str = "ok") -> Response:
        if notice:
            self.set_flash(notice, kind)
        return Response("", status=303, headers={"Location": location})

    def set_flash(self, text: str, kind: str = "ok") -> None:
        value = base64.urlsafe_b64encode(orjson.dumps({"k": kind, "m": text[:600]})).decode()
        self.set_cookie(FLASH_COOKIE, value, max_age=120)

    def set_cookie(self, name: str, value: str, **options) -> None:
        self.cookies.append((name, value, options))

    def _take_flash(self) -> dict | None:
        raw = self.request.cookies.get(FLASH_COOKIE)
        if not raw:
            return None
        self.set_cookie(FLASH_COOKIE, "", max_age=0)
        try:
            data = orjson.loads(base64.urlsafe_b64decode(raw[:1200].encode()))
            kind = data["k"] if data.get("k") in ("ok", "error") else "ok"
            return {"kind": kind, "text": str(data["m"])[:600]}
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def back(self, default: str) -> str:
        """Where a form comes back to: its `voltar` field when it is a path of this site."""
        return local_path(self.form.get("voltar"), default)


def menu_for(principal: dict | None) -> list[dict]:
    """The navigation bar: only the entries this person's role may open."""
    if principal is None:
        return []
    entries = [("/", "nav.dashboard", None), ("/chamados", "nav.tickets", "list_tickets"),
               ("/chamados/novo", "nav.new_ticket", "create_ticket"),
               ("/relatorios", "nav.reports", "request_export"),
               ("/admin/empresas", "nav.companies", "list_companies"),
               ("/admin/usuarios", "nav.users", "list_users"),
               ("/admin/dispositivos", "nav.devices", "list_machines"),
               ("/admin/health", "nav.health", "list_machines")]
    return [{"href": href, "label": catalogue.translate(label)} for href, label, operation in entries
            if operation is None or may(principal, operation)]


# the request cycle ---------------------------------------------------------------------

def handle_page(gateway, spec: PageSpec, fn, request: Request, path_values: dict) -> Response:
    started = time.perf_counter()
    token = request.cookies.get(SESSION_COOKIE)
    principal = None
    page_ = None
    try:
        if token:
            try:
                principal = gateway.authenticate(token)
            except Unauthorized:
                token = None
        page_ = Page(gateway, spec, request, principal, token)
        if principal is None and request.cookies.get(SESSION_COOKIE):
            page_.set_cookie(SESSION_COOKIE, "", max_age=0)
        if principal is None and not spec.public:
            target = request.full_path.rstrip("?") if request.method == "GET" else "/"
            response = page_.redirect("/?" + urlencode({"proximo": target}),
                                      catalogue.translate("auth.sign_in_first") if request.method != "GET" else None,
                                      "error")
        else:
            if request.method == "POST":
                check_csrf(page_)
            if spec.operation and not may(principal, spec.operation):
                response = error_page(page_, 403, catalogue.translate("errors.forbidden_page"))
            else:
                try:
                    response = fn(gateway, page_, **path_values)
                finally:
                    if changes_what_pages_show(request.method, principal):
                        gateway.console_lookups.clear()
    except Exception as exc:
        # failed before the page was set up (e.g. accounts unreachable): answer as signed out
        page_ = page_ or Page(gateway, spec, request, None, None)
        response = failure_response(page_, exc)
    finish(page_, response)
    observe(spec, started, response.status_code)
    return response


class CsrfRefused(Exception):
    pass


def check_csrf(page_: Page) -> None:
    presented = page_.form.get("csrf", "")
    if not presented or not hmac.compare_digest(presented.encode(), page_.csrf.encode()):
        raise CsrfRefused()


def failure_response(page_: Page, exc: BaseException) -> Response:
    """A readable page for every failure: a refused form goes back with the reason on top;
    anything else is an error page with the status the API would give. Never a traceback."""
    if isinstance(exc, CsrfRefused):
        return error_page(page_, 403, catalogue.translate("errors.csrf"))
    if isinstance(exc, RequestEntityTooLarge):
        return error_page(page_, 413, catalogue.translate("errors.payload_too_large"))
    if isinstance(exc, DomainError):
        message = error_message(exc)
        if page_.request.method == "POST" and page_.principal is not None and \
                not isinstance(exc, Unauthorized):
            return page_.redirect(page_.back(page_.request.path), message, "error")
        status = next((status for error_class, status in ERROR_STATUS if isinstance(exc, error_class)), 400)
        if isinstance(exc, Unauthorized):
            return page_.redirect("/", catalogue.translate("auth.sign_in_first"), "error")
        return error_page(page_, status, message)
    if isinstance(exc, HTTPException):
        return error_page(page_, exc.code or 400, catalogue.translate("errors.bad_request"))
    log.exception("unmapped error in the console", exc_info=exc)
    return error_page(page_, 500, catalogue.translate("errors.internal"))


def error_message(exc: DomainError) -> str:
    """The catalogue's words for a domain error code; the service's own message otherwise.
    A validation error names its fields."""
    text = catalogue.translate_error(exc.code, exc.message)
    if isinstance(exc, ValidationFailed):
        fields = (exc.details or {}).get("fields") or {}
        if isinstance(fields, dict) and fields:
            parts = [f"{catalogue.translate_field(name)}: "
                     f"{formatting.join_problems(problems, catalogue.translate_field, catalogue.translate_problem)}"
                     for name, problems in list(fields.items())[:6]]
            text = f"{text} ({'; '.join(parts)})"
    return text


def error_page(page_: Page, status: int, message: str) -> Response:
    try:
        return page_.render("error.html", status=status, status_code=status, message=message)
    except Exception:  # the error page itself must never fail
        log.exception("the console's error page failed")
        return Response(f"<!doctype html><title>{status}</title><p>{Markup.escape(message)}</p>",
                        status=status, content_type="text/html; charset=utf-8")


def finish(page_: Page | None, response: Response) -> None:
    """Cookies and the headers every console answer carries."""
    secure = bool(page_ and page_.gateway.settings.console_https)
    for name, value, options in (page_.cookies if page_ else []):
        response.set_cookie(name, value, path="/", httponly=True, samesite="Lax", secure=secure,
                            **options)
    response.headers.update(SECURITY_HEADERS)
    if page_ is not None and page_.principal is not None:
        response.headers["Cache-Control"] = "no-store"  # personal data
    elif "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-cache"


def sign_in_cookie(page_: Page, token: str) -> None:
    page_.set_cookie(SESSION_COOKIE, token)  # a session cookie; the server's session expires it
    page_.set_cookie(SIGN_IN_CSRF_COOKIE, "", max_age=0)


def static_response(name: str) -> Response:
    path = safe_join(str(STATIC_DIR), name)
    suffix = Path(name).suffix
    if path is None or suffix not in STATIC_TYPES or not Path(path).is_file():
        response = Response("not found", status=404, content_type="text/plain; charset=utf-8")
    else:
        response = Response(Path(path).read_bytes(), content_type=STATIC_TYPES[suffix],
                            headers={"Cache-Control": "public, max-age=86400"})
    response.headers.update(SECURITY_HEADERS)
    return response


def routing_error_page(request: Request, exc: BaseException) -> Response:
    """Unknown console addresses, and what is refused before a page runs (a slow body, the
    broker known down), get an HTML page, not the API's JSON."""
    headers = {}
    if isinstance(exc, DomainError) and (mapped := mapped_error(exc)) is not None:
        status, _, headers = mapped
        message = catalogue.translate_error(exc.code, exc.message)
    else:
        status = 405 if isinstance(exc, MethodNotAllowed) else 404 if isinstance(exc, RouteNotFound) else 400
        key = {404: "errors.not_found_page", 405: "errors.method_not_allowed"}.get(status, "errors.bad_request")
        message = catalogue.translate(key)
    html = TEMPLATES.get_template("error.html").render(
        page=None, principal=None, csrf="", flash=None, menu=[],
        may=lambda op: False, path=request.path, status_code=status, message=message)
    response = Response(html, status=status, content_type="text/html; charset=utf-8")
    response.headers.update(SECURITY_HEADERS)
    response.headers.update(headers or {})
    return response


def console_parser_error_page(path: str, status: int, code: str) -> tuple[bytes, str, dict]:
    """(body, content type, headers) of the HTML page for what the HTTP parser refused on a
    console address (a URL too long): people get a page, not the API's JSON."""
    html = TEMPLATES.get_template("error.html").render(
        page=None, principal=None, csrf="", flash=None, menu=[], may=lambda op: False,
        path=path[:200], status_code=status, message=catalogue.translate_error(code, catalogue.translate("errors.bad_request")))
    return html.encode("utf-8"), "text/html; charset=utf-8", SECURITY_HEADERS


# what the gateway's service hands to services/gateway/http.py
ERROR_PAGES = ConsoleErrorPages(routing_error=routing_error_page, parser_error=console_parser_error_page)


def quote_path(value: str) -> str:
    return quote(value, safe="")
