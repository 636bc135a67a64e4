"""Signing in and out, the dashboard (Painel / Últimos chamados), static files."""
from __future__ import annotations

from datetime import datetime, timezone

from common.contracts.accounts import STAFF_ROLES
from common.errors import DomainError, TooManyRequests, Unauthorized, ValidationFailed
from common.rpc import together
from services.gateway.console import catalogue
from services.gateway.http import client_address
from services.gateway.responses import error_headers
from services.gateway.server import json_http
from services.gateway.console.web import (SESSION_COOKIE, error_message, local_path, page,
                                          sign_in_cookie, static_response)

DASHBOARD_SIZE = 50


class HomeViews:

    @json_http("GET", "/static/<path:name>")
    def static_file(self, request, name):
        """Our CSS, JS and icons: public, so no session is looked up for them."""
        return static_response(name)

    @page("GET", "/", public=True)
    def home(self, page_):
        if page_.principal is None:
            return self._sign_in_form(page_, next_path=local_path(page_.request.args.get("proximo"), "/"))
        return self._dashboard(page_)

    @page("POST", "/entrar", public=True)
    def sign_in_submit(self, page_):
        email, tenant = page_.field("email"), page_.field("tenant")
        next_path = local_path(page_.field("proximo"), "/")
        body = {"email": email, "password": page_.form.get("password", "")}
        if tenant:
            body["tenant"] = tenant
        try:
            session = self.operation("sign_in", None, body=body,
                                     client=client_address(page_.request, self.settings.trusted_proxies))
        except Unauthorized:
            return self._sign_in_form(page_, next_path, email, tenant,
                                      catalogue.translate("auth.wrong_credentials"), 401)
        except ValidationFailed as exc:
            return self._sign_in_form(page_, next_path, email, tenant, error_message(exc), 422)
        except TooManyRequests as exc:  # failed sign-ins locked the account or the address
            response = self._sign_in_form(page_, next_path, email, tenant, error_message(exc), 429)
            response.headers.update(error_headers(429, exc))
            return response
        sign_in_cookie(page_, session["token"])
        return page_.redirect(next_path)

    @page("POST", "/sair")
    def sign_out_submit(self, page_):
        self.end_session(page_.token)
        page_.set_cookie(SESSION_COOKIE, "", max_age=0)
        page_.principal = None  # what follows is no longer personal
        return page_.redirect("/", catalogue.translate("auth.signed_out"))

    def _sign_in_form(self, page_, next_path="/", email="", tenant="", error=None, status=200):
        return page_.render("sign_in.html", status=status, next_path=next_path, email=email,
                            tenant=tenant, error=error)

    def _dashboard(self, page_):
        principal = page_.principal
        staff = principal["role"] in STAFF_ROLES
        # the counts are the tenant's for staff, a collaborator's own for them: the service's rule
        got = together(
            recent=lambda: attempt(lambda: self.operation(
                "recent_tickets", principal, query={"limit": str(DASHBOARD_SIZE)})["items"]),
            counts=lambda: attempt(lambda: self.console_lookups.get(
                "counts", principal, lambda: self.operation("my_ticket_counts", principal))))
        recent, recent_error = got["recent"]
        unassigned = [ticket for ticket in recent or [] if not ticket["assignee"]]
        others = [ticket for ticket in recent or [] if ticket["assignee"]]
        counts, counts_error = got["counts"]
        return page_.render("dashboard.html", unassigned=unassigned, others=others,
                            recent_error=recent_error, counts=counts, counts_error=counts_error,
                            mine=not staff, now=datetime.now(timezone.utc))


def attempt(fetch):
    """(value, None), or (None, readable reason) when a service did not answer: a page shows
    what it has, with a warning on the part that failed."""
    try:
        return fetch(), None
    except DomainError as exc:
        return None, error_message(exc)
