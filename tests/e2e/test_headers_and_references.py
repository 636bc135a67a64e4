"""Issue 12 items 8 and 9, end to end against the running system: the API's answer headers
(nosniff, no-store, CORS and its preflight), what the HTTP parser refuses answered as JSON
(raw sockets), a ticket's machine must be one of its tenant's, a link never creates a
person, and provisioning codes are for admins and managers only (the service refuses too)."""
import socket
import uuid

import orjson
import pytest
import requests

from common.errors import Forbidden
from services.gateway.console.web import SESSION_COOKIE
from tests.harness import CORS_TEST_ORIGIN, Client, new_tenant

pytestmark = pytest.mark.e2e

OTHER_ORIGIN = "https://elsewhere.example.test"


def error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def assert_no_sniff_no_store(response):
    assert response.headers["X-Content-Type-Options"] == "nosniff", response.headers
    assert response.headers["Cache-Control"] == "no-store", response.headers


def enrol(tenant) -> str:
    """A machine of the tenant, enrolled with one of its companies' provisioning codes."""
    company = tenant.company()
    suffix = uuid.uuid4().hex
    response = Client(tenant.system.base_url).post("/api/machines/register", json={
        "provisioning_code": company["provisioning_code"], "hostname": f"pc-{suffix[:6]}",
        "os": {"name": "Windows 11 Pro", "version": "11", "build": "26100", "arch": "x86_64"},
        "mac_addresses": ["00:1A:" + ":".join(suffix[i:i + 2] for i in (0, 2, 4, 6))],
        "serial_numbers": [f"BR{suffix[8:18].upper()}"],
        "collaborator": {"email": f"owner-{suffix[:8]}@{tenant.slug}.test", "name": "Dona"}})
    assert response.status_code == 201, response.text
    return response.json()["machine_id"]


# --- headers ----------------------------------------------------------------------------------

def test_api_answers_and_errors_are_nosniff_and_no_store(tenant, anonymous):
    for response in (tenant.admin.get("/api/me"),  # personal data
                     anonymous.get("/api/me"),  # 401
                     anonymous.get("/api/no-such-route"),  # 404 from routing
                     tenant.admin.post("/api/tickets", json={"subject": ""}),  # 422
                     anonymous.get("/healthz"), anonymous.get("/metrics")):
        assert_no_sniff_no_store(response)
    signed_in = Client(tenant.system.base_url).post("/api/auth/sign-in", json={
        "email": tenant.admin_email, "password": tenant.admin_password, "tenant": tenant.slug})
    assert signed_in.status_code == 200 and "token" in signed_in.json()
    assert_no_sniff_no_store(signed_in)


def test_the_console_keeps_its_own_headers(anonymous):
    page = anonymous.get("/")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "Access-Control-Allow-Origin" not in page.headers


def test_an_allowed_origin_may_read_api_answers(tenant):
    response = tenant.admin.get("/api/me", headers={"Origin": CORS_TEST_ORIGIN})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == CORS_TEST_ORIGIN
    assert "Origin" in response.headers["Vary"]
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
    refused = tenant.admin.get("/api/me", headers={"Origin": OTHER_ORIGIN})
    assert refused.status_code == 200 and "Access-Control-Allow-Origin" not in refused.headers
    assert "Origin" in refused.headers["Vary"]
    # errors carry them too: a browser client must be able to read why it was refused
    unauthorised = Client(tenant.system.base_url).get("/api/me", headers={"Origin": CORS_TEST_ORIGIN})
    error(unauthorised, 401)
    assert unauthorised.headers["Access-Control-Allow-Origin"] == CORS_TEST_ORIGIN


@pytest.mark.parametrize("path, methods", [
    ("/api/tickets", {"GET", "POST"}),
    (f"/api/tickets/{uuid.uuid4()}", {"GET", "PATCH"}),
    ("/api/auth/sign-in", {"POST"}),
])
def test_a_preflight_from_the_allowed_origin_is_204_with_the_paths_methods(anonymous, path, methods):
    response = anonymous.request("OPTIONS", path, headers={
        "Origin": CORS_TEST_ORIGIN, "Access-Control-Request-Method": sorted(methods)[-1],
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert response.status_code == 204, response.text
    assert response.headers["Access-Control-Allow-Origin"] == CORS_TEST_ORIGIN
    allowed = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert allowed - {"HEAD"} == methods
    allowed_headers = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key"} <= allowed_headers
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert_no_sniff_no_store(response)


@pytest.mark.parametrize("origin", [OTHER_ORIGIN, CORS_TEST_ORIGIN + ".evil.test", "null"])
def test_a_preflight_from_another_origin_is_403_not_405(anonymous, origin):
    response = anonymous.request("OPTIONS", "/api/tickets", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST"})
    error(response, 403, "cors_origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in response.headers
    assert_no_sniff_no_store(response)


def test_options_on_an_unknown_api_path_is_404(anonymous):
    error(anonymous.request("OPTIONS", "/api/no-such-route", headers={"Origin": CORS_TEST_ORIGIN}),
          404, "route_not_found")


# --- what the HTTP parser refuses, over a raw socket ---------------------------------------------

def raw_exchange(system, request: bytes) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", system.gateway_port), timeout=10) as client:
        client.sendall(request)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return int(lines[0].split()[1]), dict(line.split(": ", 1) for line in lines[1:]), body


def assert_raw_json_error(answer, status: int, code: str):
    got, headers, body = answer
    assert got == status, answer
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"
    parsed = orjson.loads(body)
    assert set(parsed) == {"error"} and parsed["error"]["code"] == code, parsed
    assert set(parsed["error"]) == {"code", "message", "details"}


def test_a_url_over_8_kb_is_414_in_the_error_shape(system):
    request = f"GET /api/tickets?q={'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    assert_raw_json_error(raw_exchange(system, request), 414, "uri_too_long")


def test_a_url_over_8_kb_on_a_console_page_is_414_as_a_page(system):
    request = f"GET /chamados?q={'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    status, headers, body = raw_exchange(system, request)
    assert status == 414, (status, headers)
    assert headers["Content-Type"].startswith("text/html"), headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    page = body.decode()
    assert "<html" in page.lower() and "O endereço pedido é longo demais." in page, page[:500]


@pytest.mark.parametrize("path, location", [("//api//tickets", "/api/tickets"),
                                            ("/api//tickets?status=PENDING", "/api/tickets?status=PENDING")])
def test_repeated_slashes_redirect_to_the_address_with_a_location(system, path, location):
    response = requests.get(system.base_url + path, allow_redirects=False, timeout=10,
                            headers={"Host": "elsewhere.example"})
    assert response.status_code == 308, response.text
    assert response.headers["Location"] == location  # a path: never the Host the client wrote
    assert response.json()["error"]["code"] == "moved"


def test_too_many_headers_are_431_in_the_error_shape(system):
    headers = "".join(f"X-Extra-{i}: {i}\r\n" for i in range(120))
    request = f"GET /api/me HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()
    assert_raw_json_error(raw_exchange(system, request), 431, "headers_too_large")


def test_a_header_line_over_8_kb_is_431_in_the_error_shape(system):
    request = b"GET /api/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"t" * 9000 + b"\r\n\r\n"
    assert_raw_json_error(raw_exchange(system, request), 431, "headers_too_large")


def test_a_malformed_request_line_is_400_in_the_error_shape(system):
    assert_raw_json_error(raw_exchange(system, b"GET /api/me HTTP/1.1 x\r\n\r\n"), 400, "bad_request")


def test_the_gateway_still_answers_after_the_refusals(system, anonymous):
    status, headers, body = raw_exchange(system, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200 and orjson.loads(body) == {"status": "ok"}


# --- a ticket's machine is one of its tenant's ----------------------------------------------------

def test_a_tickets_machine_must_be_one_of_its_tenants(system, rpc, tenant):
    admin = tenant.admin
    other = new_tenant(system, rpc)
    ours, theirs = enrol(tenant), enrol(other)

    for machine_id in (theirs, str(uuid.uuid4())):
        refused = admin.post("/api/tickets", json={"subject": "Com máquina", "machine_id": machine_id})
        assert error(refused, 404, "machine_not_found")["message"] == "machine not found"
    _, collaborator = tenant.person("collaborator")
    error(collaborator.post("/api/tickets", json={"subject": "Minha", "machine_id": theirs}), 404,
          "machine_not_found")

    created = admin.post("/api/tickets", json={"subject": "Com máquina", "machine_id": ours})
    assert created.status_code == 201 and created.json()["machine_id"] == ours, created.text
    ticket_id = created.json()["id"]
    error(admin.patch(f"/api/tickets/{ticket_id}", json={"machine_id": theirs}), 404, "machine_not_found")
    assert admin.get(f"/api/tickets/{ticket_id}").json()["machine_id"] == ours  # unchanged
    again = admin.patch(f"/api/tickets/{ticket_id}", json={"machine_id": ours, "priority": "HIGH"})
    assert again.status_code == 200, again.text
    cleared = admin.patch(f"/api/tickets/{ticket_id}", json={"machine_id": None})
    assert cleared.status_code == 200 and cleared.json()["machine_id"] is None, cleared.text


# --- a link never creates a person ------------------------------------------------------------------

def test_linking_a_machine_to_an_unknown_email_is_refused_and_creates_nobody(tenant):
    admin = tenant.admin
    machine_id = enrol(tenant)
    email = f"ninguem-{uuid.uuid4().hex[:8]}@{tenant.slug}.test"
    refused = admin.post("/api/admin/devices/links", json={"machine_id": machine_id, "email": email})
    assert error(refused, 404, "email_not_found")["details"]["fields"]["email"]
    assert admin.get("/api/admin/users", params={"q": email}).json()["items"] == []
    assert admin.get(f"/api/admin/machines/{machine_id}").json()["linked_users"] == []

    person, _ = tenant.person("collaborator")
    linked = admin.post("/api/admin/devices/links", json={"machine_id": machine_id, "email": person["email"]})
    assert linked.status_code == 201, linked.text
    assert [u["id"] for u in linked.json()["linked_users"]] == [person["id"]]


# --- provisioning codes: admin and manager only ------------------------------------------------------

def test_the_lowest_staff_role_may_not_read_or_rotate_provisioning_codes(tenant, rpc):
    company = tenant.company()
    path = f"/api/admin/companies/{company['id']}/provisioning-code"
    agent_user, agent = tenant.person("agent")

    error(agent.get(path), 403, "forbidden_role")
    error(agent.post(path), 403, "forbidden_role")
    assert agent.get(f"/api/admin/companies/{company['id']}").json()["provisioning_code"] is None
    listed = agent.get("/api/admin/companies").json()["items"]
    assert listed and all(item["provisioning_code"] is None for item in listed)

    # the service refuses too, whoever calls it
    actor = {"user_id": agent_user["id"], "tenant_id": tenant.id, "role": "agent"}
    for method in (rpc.accounts.get_provisioning_code, rpc.accounts.rotate_provisioning_code):
        with pytest.raises(Forbidden) as refused:
            method(actor, company["id"])
        assert refused.value.code == "forbidden_role"
    assert tenant.admin.get(path).json()["provisioning_code"] == company["provisioning_code"]  # not rotated

    _, manager = tenant.person("manager")
    for client in (manager, tenant.admin):
        read = client.get(path)
        assert read.status_code == 200, read.text
        assert read.json() == {"company_id": company["id"], "provisioning_code": read.json()["provisioning_code"]}
        assert client.get(f"/api/admin/companies/{company['id']}").json()["provisioning_code"] == \
            read.json()["provisioning_code"]
        rotated = client.post(path)
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["provisioning_code"] not in (None, read.json()["provisioning_code"])
        assert client.get(path).json()["provisioning_code"] == rotated.json()["provisioning_code"]


def test_the_console_shows_the_code_to_a_manager_and_not_to_an_agent(tenant):
    company = tenant.company()
    seen = {}
    for role in ("agent", "manager"):
        _, client = tenant.person(role)
        page = client.http.get(f"{tenant.system.base_url}/admin/empresas/{company['id']}",
                               cookies={SESSION_COOKIE: client.token}, allow_redirects=False, timeout=30)
        assert page.status_code == 200, page.text[:300]
        seen[role] = company["provisioning_code"] in page.text
    assert seen == {"agent": False, "manager": True}
