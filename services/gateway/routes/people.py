"""The API's routes for people: sessions, companies, users (accounts)."""
from __future__ import annotations

from common.contracts import accounts as people
from services.gateway.http import ADMIN, STAFF, USER_ADMINS, bearer_token, client_address, route
from services.gateway.responses import json_response


class PeopleRoutes:
    """Sessions, companies and users."""

    # people: sessions ----------------------------------------------------------------

    @route("POST", "/api/auth/sign-in", summary="Sign in with email and password", tag="people",
           roles=None, body=people.SignIn, response=people.Session, raw=True)
    def sign_in(self, principal, body, request, client=None):
        """The client's address goes along: accounts limits failed sign-ins per account and
        per address (429 with Retry-After). The console calls this with `client` and no
        request, and gets the session itself."""
        if request is not None:
            client = client_address(request, self.settings.trusted_proxies)
        session = self.call("accounts", "sign_in", body, client)
        return session if request is None else json_response(200, session)

    @route("POST", "/api/auth/sign-out", summary="Revoke the bearer token", tag="people",
           raw=True, status=204)
    def sign_out(self, principal, request):
        self.end_session(bearer_token(request))
        return json_response(204)

    @route("GET", "/api/me", summary="Who the bearer token belongs to", tag="people",
           response=people.User)
    def me(self, principal):
        return self.call("accounts", "get_user", principal, principal["user_id"])

    @route("POST", "/api/me/password",
           summary="Change my password (the current one first); my other sessions end",
           tag="people", body=people.PasswordChange, status=204, raw=True)
    def change_password(self, principal, body, request, client=None):
        """The client's address goes along, as for a sign-in: wrong current passwords are
        counted per account and per address."""
        if request is not None:
            client = client_address(request, self.settings.trusted_proxies)
        self.call("accounts", "change_password", principal, body, client)
        return json_response(204) if request is not None else None

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

    @route("GET", "/api/admin/companies/<company_id>/provisioning-code",
           summary="The company's provisioning code (admin and manager)", tag="people",
           roles=people.PROVISIONING_ROLES, response=people.ProvisioningCode)
    def get_provisioning_code(self, principal, company_id):
        return self.call("accounts", "get_provisioning_code", principal, company_id)

    @route("POST", "/api/admin/companies/<company_id>/provisioning-code",
           summary="Rotate the company's provisioning code", tag="people",
           roles=people.PROVISIONING_ROLES, response=people.Company)
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
