"""Admin ▸ Empresas and Admin ▸ Usuários."""
from __future__ import annotations

from urllib.parse import urlencode

from services.gateway.console.views.home import attempt
from services.gateway.console.web import page, quote_path

# the roles a person can be given here; machine users come only from device registration
PERSON_ROLES = ("admin", "manager", "agent", "collaborator")
USER_TYPES = ("all", "people", "machines")  # the tabs of Admin ▸ Usuários, as the API names them


def company_path(company: dict) -> str:
    return f"/admin/empresas/{quote_path(str(company['id']))}"


def user_path(user: dict) -> str:
    return f"/admin/usuarios/{quote_path(str(user['id']))}"


def users_list_path(**params) -> str:
    """Admin ▸ Usuários with these filters (empty ones left out)."""
    query = urlencode({name: value for name, value in params.items() if value})
    return "/admin/usuarios" + (f"?{query}" if query else "")


class PeopleViews:

    # Admin ▸ Empresas ------------------------------------------------------------------

    @page("GET", "/admin/empresas", operation="list_companies")
    def companies(self, page_):
        filters = page_.args("q")
        companies = self.operation("list_companies", page_.principal, query=filters)["items"]
        return page_.render("companies.html", companies=companies, filters=filters)

    @page("POST", "/admin/empresas", operation="create_company")
    def company_create(self, page_):
        company = self.operation("create_company", page_.principal, body={
            "name": page_.field("name"), "apelido": page_.field("apelido")})
        return page_.redirect(company_path(company), page_.t("companies.created", name=company["name"]))

    @page("GET", "/admin/empresas/<company_id>", operation="get_company")
    def company(self, page_, company_id):
        company = self.operation("get_company", page_.principal, company_id=company_id)
        return page_.render("companies_detail.html", company=company,
                            users_path=users_list_path(company_id=company["id"]))

    @page("POST", "/admin/empresas/<company_id>", operation="update_company")
    def company_update(self, page_, company_id):
        company = self.operation("update_company", page_.principal, company_id=company_id, body={
            "name": page_.field("name"), "apelido": page_.field("apelido")})
        return page_.redirect(company_path(company), page_.t("companies.saved"))

    @page("POST", "/admin/empresas/<company_id>/codigo", operation="rotate_provisioning_code")
    def company_rotate_code(self, page_, company_id):
        company = self.operation("rotate_provisioning_code", page_.principal, company_id=company_id)
        return page_.redirect(company_path(company), page_.t("companies.code_rotated"))

    # Admin ▸ Usuários ------------------------------------------------------------------

    @page("GET", "/admin/usuarios", operation="list_users")
    def users(self, page_):
        filters = page_.args("type", "q", "company_id", "cursor")
        listing = self.operation("list_users", page_.principal, query=filters)
        shown_type, next_cursor = filters.get("type"), listing["next_cursor"]
        kept = {"q": filters.get("q"), "company_id": filters.get("company_id")}  # what a tab keeps
        tabs = [{"type": kind, "href": users_list_path(type=None if kind == "all" else kind, **kept),
                 "current": kind == (shown_type or "all")} for kind in USER_TYPES]
        return page_.render(
            "users.html", users=listing["items"], filters=filters, tabs=tabs, roles=PERSON_ROLES,
            next_path=users_list_path(type=shown_type, **kept, cursor=next_cursor) if next_cursor else None,
            first_path=users_list_path(type=shown_type, **kept) if "cursor" in filters else None,
            clear_path=users_list_path(type=shown_type), **self._companies(page_))

    @page("POST", "/admin/usuarios", operation="create_user")
    def user_create(self, page_):
        body = {"name": page_.field("name"), "email": page_.field("email"), "role": page_.field("role"),
                "company_id": page_.field("company_id") or None}
        if page_.form.get("password"):  # none: the person cannot sign in until one is set
            body["password"] = page_.form["password"]
        user = self.operation("create_user", page_.principal, body=body)
        return page_.redirect(user_path(user), page_.t("users.created", name=user["name"]))

    @page("GET", "/admin/usuarios/<user_id>", operation="get_user")
    def user(self, page_, user_id):
        principal = page_.principal
        user = self.operation("get_user", principal, user_id=user_id)
        machines, machines_error = attempt(
            lambda: self.operation("user_machines", principal, user_id=user["id"])["items"])
        merged_into = None
        if user["merged_into_id"]:
            merged_into, _ = attempt(lambda: self.operation("get_user", principal, user_id=user["merged_into_id"]))
        return page_.render("users_detail.html", user=user, machines=machines or [],
                            machines_error=machines_error, merged_into=merged_into, roles=PERSON_ROLES,
                            **self._companies(page_))

    @page("POST", "/admin/usuarios/<user_id>", operation="update_user")
    def user_update(self, page_, user_id):
        body = {"name": page_.field("name"), "email": page_.field("email"),
                "company_id": page_.field("company_id") or None}
        if page_.field("role"):  # a machine user's form has no role: it cannot change
            body["role"] = page_.field("role")
        user = self.operation("update_user", page_.principal, user_id=user_id, body=body)
        return page_.redirect(user_path(user), page_.t("users.saved"))

    @page("POST", "/admin/usuarios/<user_id>/senha", operation="update_user")
    def user_password(self, page_, user_id):
        # as typed: a password's spaces are part of it
        user = self.operation("update_user", page_.principal, user_id=user_id,
                              body={"password": page_.form.get("password", "")})
        return page_.redirect(user_path(user), page_.t("users.password_reset", name=user["name"]))

    @page("GET", "/admin/usuarios/<user_id>/unificar", operation="merge_users")
    def user_merge(self, page_, user_id):
        """Pick the account that stays, then confirm: this page names both accounts and
        says what moves before anything does."""
        principal = page_.principal
        source = self.operation("get_user", principal, user_id=user_id)
        wanted = page_.args("q", "destino")
        if "destino" in wanted:
            target = self.operation("get_user", principal, user_id=wanted["destino"])
            return page_.render("users_merge.html", source=source, target=target, candidates=None, q="")
        candidates = None
        if "q" in wanted:  # only accounts of the same kind: the service never merges a person with a machine
            kind = "machines" if source["role"] == "machine" else "people"
            found = self.operation("list_users", principal, query={"type": kind, "q": wanted["q"]})["items"]
            candidates = [user for user in found if user["id"] != source["id"]]
        return page_.render("users_merge.html", source=source, target=None, candidates=candidates,
                            q=wanted.get("q", ""))

    @page("POST", "/admin/usuarios/unificar", operation="merge_users")
    def user_merge_submit(self, page_):
        merged = self.operation("merge_users", page_.principal, body={
            "from_user_id": page_.field("from_user_id"), "into_user_id": page_.field("into_user_id")})
        return page_.redirect(user_path(merged["into"]), page_.t(
            "users.merged", source=merged["from"]["name"], target=merged["into"]["name"]))

    def _companies(self, page_) -> dict:
        """Every company (the tenant's full list, as the API gives it) for the filters and
        forms, their names for the rows, and why they are missing when the list failed."""
        companies, companies_error = attempt(
            lambda: self.operation("list_companies", page_.principal, query={})["items"])
        return {"companies": companies or [], "companies_error": companies_error,
                "company_names": {company["id"]: company["name"] for company in companies or []}}
