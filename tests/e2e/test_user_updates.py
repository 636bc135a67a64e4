"""A user PATCH through the gateway reaches the snapshots other services keep of the user,
whatever the combination of fields (issue 13, item 1).

The admin's first day: "fix her name, set her company, give her a password" in one PATCH.
Before the fix, the company lookup and the session revocation inside `update_user`
autoflushed the pending changes, `session.is_modified(user)` answered False and no
`user_updated` left accounts: tickets kept the old requester name, tickets opened
afterwards got `company: null`, and `GET /api/tickets?company_id=` found none of them.
Nothing here publishes the event by hand: only the PATCH does.
"""
import uuid

import pytest

from tests.e2e.test_tickets import create, me, user
from tests.harness import Client, eventually, new_tenant
from tests.harness import fetch_ticket as get

OLD_NAME, NEW_NAME = "Maria Souza", "Maria Silva"
OLD_PASSWORD, NEW_PASSWORD = "pass-word-1", "nova-senha-2"  # `user()` signs in with the old one

# company_id in the PATCH: (the user's company before, the one the PATCH names); "absent":
# not in the PATCH at all
COMPANY_CASES = {
    "absent": ("a", None),
    "unchanged": ("a", "a"),
    "set": (None, "a"),
    "moved": ("a", "b"),
    "cleared": ("a", None),
}
CASES = [(name, email, company, password)
         for name in (False, True) for email in (False, True)
         for company in COMPANY_CASES for password in (False, True)
         if name or email or company != "absent" or password]


def case_id(name, email, company, password) -> str:
    parts = (["name"] if name else []) + (["email"] if email else []) + \
        ([f"company-{company}"] if company != "absent" else []) + (["password"] if password else [])
    return "+".join(parts)


def test_the_cases_cover_the_first_day_patch():
    assert (True, False, "set", True) in CASES  # name, company and password at once
    assert len(CASES) == 2 * 2 * len(COMPANY_CASES) * 2 - 1


@pytest.fixture(scope="module")
def office(system, rpc):
    """One tenant and its two companies for every case (each case has a Maria of its own):
    a tenant per case made the 39 cases take two minutes."""
    tenant = new_tenant(system, rpc)
    return tenant, {"a": tenant.company("Empresa A"), "b": tenant.company("Empresa B")}


@pytest.mark.parametrize("name,email,company,password", CASES,
                         ids=[case_id(*case) for case in CASES])
def test_a_user_patch_reaches_the_ticket_snapshots(office, name, email, company, password):
    tenant, companies = office
    admin = tenant.admin
    start, named = COMPANY_CASES[company]
    maria, maria_client = user(tenant, "collaborator", OLD_NAME,
                               company_id=companies[start]["id"] if start else None)
    start_company = {"id": companies[start]["id"], "name": companies[start]["name"]} if start else None
    before = create(maria_client, "Impressora não imprime")
    assert before["requester"] == {"id": maria["id"], "name": OLD_NAME, "email": maria["email"]}
    assert before["company"] == start_company

    body = {}
    if name:
        body["name"] = NEW_NAME
    if email:
        body["email"] = f"maria.silva-{uuid.uuid4().hex[:6]}@{tenant.slug}.test"
    if company != "absent":
        body["company_id"] = companies[named]["id"] if named else None
    if password:
        body["password"] = NEW_PASSWORD
    patched = admin.patch(f"/api/admin/users/{maria['id']}", json=body)
    assert patched.status_code == 200, patched.text

    expected_requester = {"id": maria["id"], "name": body.get("name", OLD_NAME),
                          "email": body.get("email", maria["email"])}
    if company == "absent":
        expected_company = start_company
    else:
        expected_company = {"id": companies[named]["id"], "name": companies[named]["name"]} \
            if named else None
    assert {key: patched.json()[key] for key in ("id", "name", "email")} == expected_requester
    assert patched.json()["company_id"] == (expected_company["id"] if expected_company else None)
    assert patched.json()["has_password"] is True

    # the ticket opened before: its requester snapshot follows (its company is history)
    def requester_followed():
        current = get(admin, before)
        return current if current["requester"] == expected_requester else None

    current = eventually(requester_followed)
    assert current, f"the ticket kept {get(admin, before)['requester']}, not {expected_requester}"
    assert current["company"] == start_company

    # a ticket opened for her afterwards: the company she has now
    def opened_with_her_company():
        opened = create(admin, "Sem rede", requester_id=maria["id"])
        return opened if opened["company"] == expected_company else None

    after = eventually(opened_with_her_company, interval=0.5)
    assert after, f"a new ticket of hers did not get the company {expected_company}"
    assert after["requester"] == expected_requester
    if expected_company is not None:
        listed = admin.get("/api/tickets", params={"company_id": expected_company["id"]})
        assert listed.status_code == 200, listed.text
        assert after["id"] in {t["id"] for t in listed.json()["items"]}

    # the password: a new one signs in and signs her other sessions out; none keeps them
    if password:
        assert maria_client.get("/api/me").status_code == 401
        again = Client(tenant.system.base_url).sign_in(expected_requester["email"], NEW_PASSWORD,
                                                       tenant=tenant.slug)
        assert me(again)["id"] == maria["id"]
        old = Client(tenant.system.base_url).post("/api/auth/sign-in", json={
            "email": expected_requester["email"], "password": OLD_PASSWORD, "tenant": tenant.slug})
        assert old.status_code == 401
    else:
        assert me(maria_client)["name"] == expected_requester["name"]
