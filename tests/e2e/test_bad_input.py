"""Bad input on every gateway route, through HTTP only, against the API's error contract.

Data-driven from the gateway's routes table (`services.gateway.http.ROUTES`), so a route
added later is covered by every check that applies to it: credentials for routes that need
a signed-in person, malformed and mistyped bodies for routes with a body schema, bad query
strings, bad path ids, wrong methods, roles, and a final sweep. The tables to extend by hand
are PATH_ID_FACTORIES (how to make a real row for a path parameter, for the cross-tenant
check), BASE_BODIES / BASE_QUERIES (a valid body or query string where the schema's own
minimum is not one the service accepts, so that a test varies one field of an otherwise good
request), MACHINE_TOKEN_ROUTE_IDS (public routes that take an agent's machine token instead
of a person's session), SECRET_HEADERS (routes behind a shared secret in a header) and
GLOBAL_PATH_PARAMS (path parameters that are not a tenant's rows).

Contract (API.md): every error is exactly {"error": {"code", "message", "details"}}, JSON,
4xx for anything the caller did wrong, never a 5xx and never a stack trace.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

import pytest
from marshmallow import fields, validate
from sqlalchemy import create_engine, text
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.routing import Map, Rule

import services.gateway.service  # noqa: F401  (declaring the routes fills ROUTES)
from common.contracts import Trimmed
from common.contracts import devices as fleet
from services.gateway.deadletters import DeadLetterSelection
from services.gateway.http import ROUTES
from tests.harness import CRON_SECRET, Client, Tenant, new_tenant

pytestmark = pytest.mark.e2e

DEFAULT_MAX_BODY_BYTES = 1_048_576
PYTHON_TEXT = ("Traceback", 'File "', '.py", line', "psycopg", "sqlalche", "RemoteError", "nameko")
ROLES_BELOW_ADMIN = ("collaborator", "agent", "manager")


# routes -------------------------------------------------------------------------------

def route_id(spec) -> str:
    return f"{spec.method} {spec.path}"


AUTH_ROUTES = [spec for spec in ROUTES if spec.roles is not None]
BODY_ROUTES = [spec for spec in ROUTES if spec.body is not None]
QUERY_ROUTES = [spec for spec in ROUTES if spec.query is not None]
ID_ROUTES = [spec for spec in ROUTES if spec.path_params]
# public in the table (no person's session), but the handler wants an agent's machine token
MACHINE_TOKEN_ROUTE_IDS = {"POST /api/machines/heartbeat"}
MACHINE_TOKEN_ROUTES = [spec for spec in ROUTES if route_id(spec) in MACHINE_TOKEN_ROUTE_IDS]
# public in the table, but the handler wants a shared secret in a header: sent by default, so
# the other checks reach what they are about (tests/e2e/test_scheduled_jobs.py refuses bad ones)
SECRET_HEADERS = {"POST /api/cron/<job>": {"x-cron-secret": CRON_SECRET}}
# path parameters that name something global (a job), not a row of a tenant
GLOBAL_PATH_PARAMS = {"job"}


def test_the_routes_table_is_filled():
    """Guards every data-driven test below against an empty (vacuous) parametrisation."""
    assert AUTH_ROUTES and BODY_ROUTES and QUERY_ROUTES and ID_ROUTES
    assert any(spec.roles is None for spec in ROUTES)
    assert all(spec.method in {"GET", "POST", "PUT", "PATCH", "DELETE"} for spec in ROUTES)
    assert {route_id(spec) for spec in MACHINE_TOKEN_ROUTES} == MACHINE_TOKEN_ROUTE_IDS, \
        "a machine-token route was renamed: update MACHINE_TOKEN_ROUTE_IDS"
    assert all(spec.roles is None for spec in MACHINE_TOKEN_ROUTES)
    assert set(SECRET_HEADERS) <= {route_id(spec) for spec in ROUTES}, "update SECRET_HEADERS"


# schemas ------------------------------------------------------------------------------

def schema_fields(schema) -> dict:
    """data key -> marshmallow field, as the schema loads them."""
    return {(field.data_key or name): field for name, field in schema().load_fields.items()}


def validator(field, kind):
    return next((v for v in field.validators if isinstance(v, kind)), None)


def valid_value(name: str, field):
    """A value the schema accepts for the field (the rest of a body around one bad field)."""
    one_of = validator(field, validate.OneOf)
    if one_of is not None:
        return list(one_of.choices)[0]
    if isinstance(field, fields.Email):
        return f"valid-{uuid.uuid4().hex[:8]}@example.com"
    if isinstance(field, fields.UUID):
        return str(uuid.uuid4())
    if isinstance(field, fields.Integer):
        bounds = validator(field, validate.Range)
        return bounds.min if bounds is not None and bounds.min is not None else 1
    if isinstance(field, fields.Number):
        return 1
    if isinstance(field, fields.Boolean):
        return True
    if isinstance(field, fields.DateTime):
        return "2026-01-01T00:00:00+00:00"
    if isinstance(field, fields.Dict):
        return {}
    if isinstance(field, fields.List):
        return [valid_value(name, field.inner)]
    if isinstance(field, fields.Nested):
        return minimal_body(type(field.schema))
    if isinstance(field, fields.String):
        return f"valid-{uuid.uuid4().hex[:8]}"
    raise AssertionError(f"no sample value for {type(field).__name__} field {name!r}: "
                         "teach valid_value() about it")


def minimal_body(schema) -> dict:
    return {name: valid_value(name, field) for name, field in schema_fields(schema).items()
            if field.required}


def required_fields(schema) -> set:
    return {name for name, field in schema_fields(schema).items() if field.required}


def wrong_values(field) -> list:
    """Values the schema itself must refuse for this field (a JSON body)."""
    values = [] if field.allow_none else [None]
    one_of = validator(field, validate.OneOf)
    length = validator(field, validate.Length)
    pattern = validator(field, validate.Regexp)
    if isinstance(field, fields.UUID):
        values += ["not-a-uuid", 123, ["x"], "0000"]
    elif isinstance(field, fields.Number):  # Integer too (non-strict: 1.5 loads as 1)
        values += ["abc", [], True, {"a": 1}]
        bounds = validator(field, validate.Range)
        if bounds is not None and bounds.min is not None:
            values.append(bounds.min - 1)
        if bounds is not None and bounds.max is not None:
            values.append(bounds.max + 1)
    elif isinstance(field, fields.Boolean):
        values += ["maybe", 2]
    elif isinstance(field, fields.DateTime):
        values += ["not-a-date", 123, "2026-13-45T00:00:00+00:00"]
        if isinstance(field, fields.AwareDateTime) and field.default_timezone is None:
            values.append("2026-01-01T00:00:00")
    elif isinstance(field, fields.Dict):
        values += ["x", [1]]
    elif isinstance(field, fields.List):
        values += ["not-a-list", {"a": 1}]
        if length is not None and length.max is not None:
            values.append([valid_value("item", field.inner) for _ in range(length.max + 1)])
    elif isinstance(field, fields.Nested):
        values += ["not-an-object", 123]
    elif isinstance(field, fields.String):  # Email is a String
        values += [123, ["x"], {"a": 1}]
        if isinstance(field, fields.Email):
            values += ["not-an-email", "x@"]
        if one_of is not None:
            values += ["king", ""]
        if length is not None and length.max is not None:
            values.append("x" * (length.max + 1))
        if length is not None and length.min:
            values.append("")
        if pattern is not None:
            values += [v for v in ("\u2603", "x" * 64, "A" * 64, "0" * 63) if not pattern.regex.match(v)]
    else:
        values += [{"unexpected": "shape"}]
    unique = []
    for value in values:
        if value not in unique:
            unique.append(value)
    return unique


def wrong_query_values(name: str, field) -> list:
    """Query-string values (always text) the schema must refuse."""
    values = []
    one_of = validator(field, validate.OneOf)
    length = validator(field, validate.Length)
    if isinstance(field, fields.Number):
        values += ["abc", "", "1e3x"]
        if isinstance(field, fields.Integer):
            values += ["1.5", "1e3"]
        bounds = validator(field, validate.Range)
        if bounds is not None and bounds.min is not None:
            values += [str(bounds.min - 1)] + (["-1"] if bounds.min > -1 else [])
        if bounds is not None and bounds.max is not None:
            values += [str(bounds.max + 1), "99999999999999999999999"]
            values += ["100000"] if bounds.max < 100000 else []
    elif isinstance(field, fields.UUID):
        values += ["not-a-uuid", "123", "' OR '1'='1"]
    elif isinstance(field, fields.Boolean):
        values += ["maybe"]
    elif isinstance(field, fields.DateTime):
        values += ["not-a-date", "2026-13-45T00:00:00+00:00"]
        if isinstance(field, fields.AwareDateTime) and field.default_timezone is None:
            values.append("2026-01-01T00:00:00")
    if one_of is not None:
        values += ["king", str(list(one_of.choices)[0]).upper() + "X"]
    if isinstance(field, fields.String) and length is not None and length.max is not None:
        values.append("x" * (length.max + 1))
    if isinstance(field, fields.String) and length is not None and length.min:
        values.append("")
    if name == "cursor":
        values += GARBAGE_CURSORS
    return list(dict.fromkeys(values))


def b64(value) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Not cursors the server issued: must be 422 naming `cursor`, never a 500 from deep inside.
GARBAGE_CURSOR_CASES = {
    "garbage": "garbage", "punctuation": "!!!!", "percent": "%%%",
    "b64 of non-utf8": b64(b"\xff\xfe"), "b64 object": b64({"a": 1}), "b64 [1]": b64([1]),
    "b64 [1,2,3]": b64([1, 2, 3]), "b64 string": b64("string"), "b64 null": b64(None),
    "b64 [null,null]": b64([None, None]), "b64 [1,2]": b64([1, 2]),
    "b64 [email,not-a-uuid]": b64(["a@example.com", "not-a-uuid"]),
    "b64 [list,object]": b64([["nested"], {"a": 1}]),
    "b64 [nul text,uuid]": b64(["a\u0000b", str(uuid.uuid4())]),
}
GARBAGE_CURSORS = list(GARBAGE_CURSOR_CASES.values())
CURSOR_LABELS = {value: f"<{label}>" for label, value in GARBAGE_CURSOR_CASES.items()}


def text_fields(schema) -> list:
    """Free-text fields the service stores or searches (not enums, emails, ids, secrets);
    trimmed ones (names, hostname) too."""
    return [name for name, field in schema_fields(schema).items()
            if type(field) in (fields.String, Trimmed) and validator(field, validate.OneOf) is None
            and "password" not in name]


# the error contract -------------------------------------------------------------------

def assert_error(response, status, code=None):
    """The one error shape; `status` and `code` may be a value or a set of accepted ones."""
    statuses = status if isinstance(status, (set, tuple, frozenset)) else {status}
    where = f"{response.request.method} {response.request.url[:200]}"
    assert response.status_code in statuses, \
        f"{where}: expected {sorted(statuses)}, got {response.status_code}: {response.text[:500]}"
    assert response.headers.get("Content-Type", "").startswith("application/json"), \
        f"{where}: error is not JSON: {response.headers.get('Content-Type')!r} {response.text[:300]}"
    for marker in PYTHON_TEXT:
        assert marker not in response.text, f"{where}: Python text in the body: {response.text[:500]}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"{where}: {body}"
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, f"{where}: {body}"
    assert isinstance(error["code"], str) and re.fullmatch(r"[a-z][a-z0-9_]*", error["code"]), body
    assert isinstance(error["message"], str) and error["message"].strip(), body
    assert isinstance(error["details"], dict), body
    if code is not None:
        codes = code if isinstance(code, (set, tuple, frozenset)) else {code}
        assert error["code"] in codes, f"{where}: expected code {sorted(codes)}, got {body}"
    if response.status_code == 401:
        assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), where
    return error


def assert_validation_failed(response, *field_names):
    error = assert_error(response, 422, "validation_failed")
    named = error["details"].get("fields")
    assert isinstance(named, dict) and named, f"422 without details.fields: {error}"
    for name in field_names:
        assert name in named, f"{name!r} not named in {named}"
        assert named[name], f"{name!r} named without a reason: {named}"
    return named


def assert_not_found(response):
    error = assert_error(response, 404)
    assert error["code"].endswith("_not_found"), error
    return error


def assert_client_error(response):
    """The sweep's bar: a 4xx in the error shape, whatever the exact status."""
    return assert_error(response, set(range(400, 500)))


# the world the tests run in: one tenant (and another one) per module -------------------

def make_company(tenant: Tenant) -> str:
    return tenant.company()["id"]


def make_user(tenant: Tenant) -> str:
    response = tenant.admin.post("/api/admin/users", json={
        "email": f"target-{uuid.uuid4().hex[:8]}@{tenant.slug}.test", "name": "Target Person",
        "role": "collaborator"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def make_ticket(tenant: Tenant) -> str:
    """Assigned to the admin (staff comment only once assigned), with a machine of the
    tenant (a chat starts only on a ticket with one)."""
    response = tenant.admin.post("/api/tickets", json={"subject": "Target ticket",
                                                       "machine_id": make_machine(tenant)})
    assert response.status_code == 201, response.text
    ticket_id = response.json()["id"]
    me = tenant.admin.get("/api/me").json()
    assigned = tenant.admin.post(f"/api/tickets/{ticket_id}/assign", json={"assignee_id": me["id"]})
    assert assigned.status_code == 200, assigned.text
    return ticket_id


def make_chat(tenant: Tenant) -> str:
    ticket_id = make_ticket(tenant)
    response = tenant.admin.post(f"/api/tickets/{ticket_id}/chat", json={})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def real_mac() -> str:
    """A MAC that names hardware: universally administered, unicast, not a hypervisor's OUI."""
    return "00:1A:" + ":".join(f"{byte:02X}" for byte in os.urandom(4))


def real_serial() -> str:
    return "PF" + uuid.uuid4().hex[:8].upper()


_PROVISIONING_CODES: dict = {}  # tenant id -> the code of a company of the tenant


def provisioning_code(tenant: Tenant) -> str:
    if tenant.id not in _PROVISIONING_CODES:
        _PROVISIONING_CODES[tenant.id] = tenant.company()["provisioning_code"]
    return _PROVISIONING_CODES[tenant.id]


def registration(tenant: Tenant) -> dict:
    """A registration the tenant accepts: its code, hardware of its own (a real MAC and
    serial, new each time, so it never re-enrols, and so revokes, another machine)."""
    suffix = uuid.uuid4().hex[:8]
    return {"provisioning_code": provisioning_code(tenant), "hostname": f"pc-{suffix}",
            "os": {"name": "Windows 11 Pro", "version": "23H2", "build": "22631", "arch": "x64"},
            "mac_addresses": [real_mac()], "serial_numbers": [real_serial()],
            "collaborator": {"email": f"owner-{suffix}@{tenant.slug}.test", "name": "Machine Owner"},
            "access_role": "collaborator"}


def register(tenant: Tenant, body: dict | None = None) -> dict:
    response = Client(tenant.system.base_url).post("/api/machines/register",
                                                    json=body or registration(tenant))
    assert response.status_code == 201, response.text
    return response.json()


def make_export(tenant: Tenant) -> str:
    """Queued; no scheduler tick runs it during the tests, so it stays as it is."""
    response = tenant.admin.post("/api/reports/exports", json={})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def make_machine(tenant: Tenant) -> str:
    """Enrolled through the API, as an agent does, in a company of the tenant."""
    return register(tenant)["machine_id"]


def heartbeat_body(**fields_) -> dict:
    """A heartbeat the gateway takes (202): sent now, with metrics and an inventory hash."""
    body = {"sent_at": datetime.now(timezone.utc).isoformat(),
            "metrics": {"cpu_percent": 12.5, "memory_percent": 40.0, "uptime_seconds": 3600,
                        "disks": [{"mount": "C:", "percent": 51.5}]},
            "inventory_hash": hashlib.sha256(b"inventory").hexdigest()}
    body.update(fields_)
    return body


# path parameter name -> how to make a real row of that kind in a tenant
def make_dead_letter(tenant: Tenant) -> str:
    """A message of the tenant parked in the dead-letter queue (its body names the tenant)."""
    from tests.e2e.test_dead_letters import park_for_tenant

    return park_for_tenant(tenant.system.amqp_uri, tenant.id)


PATH_ID_FACTORIES = {"company_id": make_company, "user_id": make_user, "ticket_id": make_ticket,
                     "chat_id": make_chat, "machine_id": make_machine, "export_id": make_export,
                     "letter_id": make_dead_letter}

# body / query schema -> a valid one for the world's tenant; minimal_body() for the others
BASE_BODIES = {
    fleet.Registration: lambda world: registration(world.tenant),
    fleet.Heartbeat: lambda world: heartbeat_body(),
    # a selection of nothing parked (an empty one is refused: it must say ids, a filter or all)
    DeadLetterSelection: lambda world: {"queue": "evt-bad-input--nothing.parked"},
    # a link names someone who exists (an unknown email is refused, never created)
    fleet.LinkCreate: lambda world: {"machine_id": world.ids["machine_id"],
                                     "email": world.tenant.admin_email},
}
BASE_QUERIES = {
    fleet.LinkQuery: lambda world: {"machine_id": world.ids["machine_id"], "user_id": world.ids["user_id"]},
}

NOT_UUIDS = ["not-a-uuid", "123", "' OR '1'='1", "çãõ", "\x00", "x" * 1000,
             "00000000-0000-0000-0000-00000000000g"]


@dataclass
class World:
    system: object
    tenant: Tenant
    other: Tenant
    ids: dict
    other_ids: dict
    people: dict  # role -> signed-in Client
    expired_token: str
    signed_out_token: str
    merged_token: str
    max_body: int
    machine_token: str  # the agent of a machine of the tenant, for MACHINE_TOKEN_ROUTES
    machine_tokens: dict  # a token of each kind the machine-token routes must refuse

    def body(self, spec) -> dict | None:
        """A body the route accepts (None when it takes none): new each call."""
        if spec.body is None:
            return None
        base = BASE_BODIES.get(spec.body)
        return base(self) if base else minimal_body(spec.body)

    def query(self, spec) -> dict:
        """The route's required query parameters, valid; {} when it needs none."""
        if spec.query is None:
            return {}
        base = BASE_QUERIES.get(spec.query)
        return base(self) if base else {name: str(value) for name, value in minimal_body(spec.query).items()}

    @property
    def admin(self) -> Client:
        return self.tenant.admin

    def anonymous(self) -> Client:
        return Client(self.system.base_url)

    def path(self, spec, **values) -> str:
        """The route's path with real ids of the tenant (random UUIDs for kinds we cannot make)."""
        path = spec.path
        for name in spec.path_params:
            value = values.get(name, self.ids.get(name) or str(uuid.uuid4()))
            path = re.sub(rf"<(?:\w+:)?{name}>", quote(str(value), safe=""), path)
        return path

    def fresh_path(self, spec) -> str:
        """The route's path with rows of its own, in a state where a good request succeeds."""
        return self.path(spec, **{name: PATH_ID_FACTORIES[name](self.tenant)
                                  for name in spec.path_params if name in PATH_ID_FACTORIES})

    def token_for(self, spec) -> str | None:
        """The admin's token; a fresh session for raw routes (their handler sees the token:
        sign-out revokes it), so a bug there cannot sign the module's admin out. The
        machine token on machine-token routes (so a 422 there is about the body, whatever
        the gateway checks first)."""
        if spec in MACHINE_TOKEN_ROUTES:
            return self.machine_token
        if spec.roles is None:
            return None
        return sign_in(self.tenant) if spec.raw else self.admin.token

    def send(self, spec, *, path=None, body=None, data=None, params=None, headers=None,
             token=None, query_string=None):
        """One request to the route; `body` is JSON-encoded (ASCII, escapes kept), `data` raw."""
        headers = {**SECRET_HEADERS.get(route_id(spec), {}), **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers.setdefault("Content-Type", "application/json")
        url = path or self.path(spec)
        if query_string is not None:
            url = f"{url}?{query_string}"
        client = self.anonymous()
        return client.request(spec.method, url, data=data, params=params, headers=headers,
                              token=token if token is not None else self.token_for(spec))


def sign_in(tenant: Tenant) -> str:
    """A new session of the tenant's admin."""
    return Client(tenant.system.base_url).sign_in(tenant.admin_email, tenant.admin_password,
                                                  tenant=tenant.slug).token


@pytest.fixture(scope="module")
def world(system, rpc):
    tenant, other = new_tenant(system, rpc), new_tenant(system, rpc)
    names = {name for spec in ROUTES for name in spec.path_params}
    ids = {name: PATH_ID_FACTORIES[name](tenant) for name in names if name in PATH_ID_FACTORIES}
    other_ids = {name: PATH_ID_FACTORIES[name](other) for name in names if name in PATH_ID_FACTORIES}
    people = {role: tenant.person(role)[1] for role in ROLES_BELOW_ADMIN}

    # an expired session: signed in, then its expiry moved into the past in the database
    expired = sign_in(tenant)
    assert Client(system.base_url, expired).get("/api/me").status_code == 200
    engine = create_engine(system.database_url)
    try:
        with engine.begin() as connection:
            moved = connection.execute(text(
                "UPDATE accounts.sessions SET expires_at = now() - interval '1 minute' "
                "WHERE token_hash = :hash"), {"hash": hashlib.sha256(expired.encode()).hexdigest()})
            assert moved.rowcount == 1
    finally:
        engine.dispose()

    # a signed-out session
    signed_out = sign_in(tenant)
    signed_out_client = Client(system.base_url, signed_out)
    assert signed_out_client.get("/api/me").status_code == 200
    assert signed_out_client.post("/api/auth/sign-out").status_code == 204

    # a session of a person merged into another one since
    merged_person, merged_client = tenant.person("collaborator")
    assert merged_client.get("/api/me").status_code == 200
    merge = tenant.admin.post("/api/admin/users/merge", json={
        "from_user_id": merged_person["id"], "into_user_id": make_user(tenant)})
    assert merge.status_code == 200, merge.text

    # machine tokens: one that works (a machine of its own, not a path id: no test resets
    # it), and one of each kind the agent routes must refuse, each shown working first
    machine_token = register(tenant)["token"]
    assert heartbeat(system, machine_token).status_code == 202

    reset = register(tenant)
    assert heartbeat(system, reset["token"]).status_code == 202
    revoked = tenant.admin.post(f"/api/admin/machines/{reset['machine_id']}/reset-agent", json={})
    assert revoked.status_code == 200 and revoked.json()["revoked_tokens"] >= 1, revoked.text

    enrolment = registration(tenant)
    replaced = register(tenant, enrolment)["token"]
    assert heartbeat(system, replaced).status_code == 202
    again = register(tenant, {**enrolment, "hostname": "re-enrolled"})
    assert again["reused"] is True and again["token"] != replaced, again

    expired_machine = register(tenant)["token"]
    engine = create_engine(system.database_url)
    try:
        with engine.begin() as connection:
            moved = connection.execute(text(
                "UPDATE devices.machine_tokens SET expires_at = now() - interval '1 minute' "
                "WHERE token_hash = :hash"), {"hash": hashlib.sha256(expired_machine.encode()).hexdigest()})
            assert moved.rowcount == 1
    finally:
        engine.dispose()

    machine_tokens = {"reset": reset["token"], "replaced": replaced, "expired": expired_machine,
                      "person": tenant.admin.token, "other_tenant_person": other.admin.token}
    return World(system, tenant, other, ids, other_ids, people, expired, signed_out,
                 merged_client.token, int(system.env.get("MAX_BODY_BYTES") or DEFAULT_MAX_BODY_BYTES),
                 machine_token, machine_tokens)


def heartbeat(system, token: str, body: dict | None = None, **kwargs):
    return Client(system.base_url).post("/api/machines/heartbeat", json=body or heartbeat_body(),
                                        token=token, **kwargs)


# 401: credentials -----------------------------------------------------------------------

AUTH_CASES = {
    "no header": ({}, "missing_token"),
    "empty header": ({"Authorization": ""}, {"missing_token", "invalid_token"}),
    "forged bearer": ({"Authorization": "Bearer forged-token"}, "invalid_token"),
    "basic scheme": ({"Authorization": "Basic abc"}, {"invalid_token", "missing_token"}),
    "bearer without token": ({"Authorization": "Bearer"}, "invalid_token"),
    "overlong token": ({"Authorization": "Bearer " + "x" * 300}, "invalid_token"),
    "huge token": ({"Authorization": "Bearer " + "x" * 6000}, "invalid_token"),
    "non-ascii token": ({"Authorization": "Bearer ção-çà"}, "invalid_token"),
    "valid token, other scheme": ("Token {valid}", "invalid_token"),
    "valid token, trailing garbage": ("Bearer {valid} garbage", "invalid_token"),
    "valid token, altered": ("Bearer {altered}", "invalid_token"),
    "expired token": ("Bearer {expired}", "invalid_token"),
    "signed-out token": ("Bearer {signed_out}", "invalid_token"),
    "merged person's token": ("Bearer {merged}", "invalid_token"),
}


# on every route: the cases of the contract; the header-parsing variants on one route per
# kind of role set (the parsing is shared, the role check before it is not)
EVERY_ROUTE_AUTH_CASES = ["no header", "forged bearer", "basic scheme", "expired token",
                          "signed-out token", "merged person's token"]
REPRESENTATIVE_AUTH_ROUTES = list({spec.roles: spec for spec in reversed(AUTH_ROUTES)}.values())
AUTH_ROUTE_CASES = [(spec, case) for spec in AUTH_ROUTES for case in EVERY_ROUTE_AUTH_CASES] + [
    (spec, case) for spec in REPRESENTATIVE_AUTH_ROUTES for case in AUTH_CASES
    if case not in EVERY_ROUTE_AUTH_CASES]


@pytest.mark.parametrize("spec,case", AUTH_ROUTE_CASES,
                         ids=[f"{route_id(s)}-{c}" for s, c in AUTH_ROUTE_CASES])
def test_routes_that_need_a_person_refuse_bad_credentials(world, spec, case):
    headers, code = AUTH_CASES[case]
    if isinstance(headers, str):
        valid = world.admin.token
        headers = {"Authorization": headers.format(
            valid=valid, altered=valid[:-1] + ("A" if valid[-1] != "A" else "B"),
            expired=world.expired_token, signed_out=world.signed_out_token,
            merged=world.merged_token)}
    body = world.body(spec)
    response = world.send(spec, body=body, headers=headers, token="")
    assert_error(response, 401, code)


def test_bad_credentials_leave_the_real_session_alone(world):
    """Sign-out with a forged or garbled token revokes nothing."""
    sign_out = next(spec for spec in AUTH_ROUTES if spec.path.endswith("/sign-out"))
    token = sign_in(world.tenant)
    for header in (f"Bearer {token}x", f"Token {token}", "Bearer forged-token"):
        assert_error(world.send(sign_out, headers={"Authorization": header}, token=""), 401)
    assert Client(world.system.base_url, token).get("/api/me").status_code == 200


# 401: machine tokens (the agent routes) ------------------------------------------------------

MACHINE_AUTH_CASES = {
    **{case: AUTH_CASES[case] for case in (
        "no header", "empty header", "forged bearer", "basic scheme", "bearer without token",
        "overlong token", "huge token", "non-ascii token", "valid token, other scheme",
        "valid token, trailing garbage", "valid token, altered")},
    "expired machine token": ("Bearer {expired}", "invalid_token"),
    "revoked by reset-agent": ("Bearer {reset}", "invalid_token"),
    "revoked by re-registration": ("Bearer {replaced}", "invalid_token"),
    "a person's session token": ("Bearer {person}", "invalid_token"),
    "another tenant's session token": ("Bearer {other_tenant_person}", "invalid_token"),
}
MACHINE_AUTH_ROUTE_CASES = [(spec, case) for spec in MACHINE_TOKEN_ROUTES for case in MACHINE_AUTH_CASES]


def test_a_good_machine_token_and_body_are_202(world):
    """The control for the refusals below: the same request with the real token is taken."""
    for spec in MACHINE_TOKEN_ROUTES:
        response = world.send(spec, body=world.body(spec))
        assert response.status_code == 202, response.text
        assert set(response.json()) == {"need_inventory", "usb_policy"}, response.text


@pytest.mark.parametrize("spec,case", MACHINE_AUTH_ROUTE_CASES,
                         ids=[f"{route_id(s)}-{c}" for s, c in MACHINE_AUTH_ROUTE_CASES])
def test_machine_token_routes_refuse_bad_machine_tokens(world, spec, case):
    """A valid body, so the 401 is about the token alone."""
    headers, code = MACHINE_AUTH_CASES[case]
    if isinstance(headers, str):
        valid = world.machine_token
        headers = {"Authorization": headers.format(
            valid=valid, altered=valid[:-1] + ("A" if valid[-1] != "A" else "B"), **world.machine_tokens)}
    response = world.send(spec, body=world.body(spec), headers=headers, token="")
    assert_error(response, 401, code)


@pytest.mark.parametrize("data", [b'{"a":', b'{"bogus": 1}', b"x" * (DEFAULT_MAX_BODY_BYTES + 1)],
                         ids=["malformed", "unknown field", "over the limit"])
@pytest.mark.parametrize("auth", ["no header", "forged bearer"])
@pytest.mark.parametrize("spec", MACHINE_TOKEN_ROUTES, ids=route_id)
def test_the_machine_token_is_checked_before_the_body(world, spec, auth, data):
    """As on the person routes (credentials and role before the body): a caller without a
    good token learns nothing of the body's schema, and the gateway reads no body for it."""
    headers, code = AUTH_CASES[auth]
    assert_error(world.send(spec, data=data, headers=headers, token=""), 401, code)


def test_a_refused_machine_token_stays_refused_and_the_good_one_keeps_working(world):
    """Re-registration revoked the old token for good; the refusals revoked nothing."""
    spec = MACHINE_TOKEN_ROUTES[0]
    for _ in range(2):
        assert_error(world.send(spec, body=world.body(spec), token=world.machine_tokens["replaced"]),
                     401, "invalid_token")
    assert world.send(spec, body=world.body(spec)).status_code == 202


# 403: roles -------------------------------------------------------------------------------

ROLE_CASES = [(spec, role) for spec in ROUTES if spec.roles
              for role in ROLES_BELOW_ADMIN if role not in spec.roles]


def test_role_cases_cover_staff_and_admin_only_routes():
    assert {role for _, role in ROLE_CASES} == set(ROLES_BELOW_ADMIN)
    assert any(spec.method != "GET" for spec, role in ROLE_CASES if role == "agent")


@pytest.mark.parametrize("spec,role", ROLE_CASES,
                         ids=[f"{role}-{route_id(spec)}" for spec, role in ROLE_CASES])
def test_a_role_outside_the_route_is_403(world, spec, role):
    body = world.body(spec)
    response = world.send(spec, body=body, token=world.people[role].token)
    error = assert_error(response, 403, "forbidden_role")
    assert error["details"].get("role") == role


@pytest.mark.parametrize("spec", [spec for spec in ROUTES if spec.roles and spec.body is not None],
                         ids=route_id)
def test_role_is_checked_before_the_body(world, spec):
    """A collaborator learns nothing about a staff route's schema from its 422s."""
    response = world.send(spec, data=b'{"a":', token=world.people["collaborator"].token)
    assert_error(response, 403, "forbidden_role")


# 400 / 413 / 422: bodies -------------------------------------------------------------------

MALFORMED_BODIES = {
    "truncated": b'{"a":',
    "open brace": b"{",
    "close brace": b"}",
    "bare word": b"nul",
    "single quotes": b"{'name': 'x'}",
    "missing colon": b'{"name" "x"}',
    "trailing comma": b'{"name": "x",}',
    "NaN": b'{"name": NaN}',
    "comment": b'{"name": "x" /* hi */}',
    "two documents": b'{"a": 1}{"b": 2}',
    "form encoded": b"name=x&apelido=y",
    "binary": bytes(range(256)),
}
NOT_AN_OBJECT = {
    "empty array": b"[]",
    "array of object": b'[{"name": "x"}]',
    "string": b'"hello"',
    "number": b"42",
    "null": b"null",
    "true": b"true",
}
UNDECODABLE = {
    "invalid utf-8": b'{"name": "\xff\xfe"}',
    "overlong utf-8": b'{"name": "\xc0\xaf"}',
    "lone surrogate escape": b'{"name": "\\ud800"}',
    "utf-8 bom": b"\xef\xbb\xbf{}",
    "utf-16": '{"name": "x"}'.encode("utf-16"),
    "nested 2000 deep": b"[" * 2000 + b"]" * 2000,
    "nested 100000 deep": b"[" * 100_000 + b"]" * 100_000,
    "object nested 5000 deep": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "object nested 900 deep": b'{"a":' * 900 + b"1" + b"}" * 900,  # parses; was a RecursionError (500)
    "number out of range": b'{"name": 1e400}',
}


# on every body route a core set; every case on one body route per kind of role set (the
# parsing is shared; what runs before it, authentication and the role check, is not)
CORE_BODY_CASES = {"truncated", "form encoded", "empty array", "string", "null",
                   "invalid utf-8", "utf-8 bom", "nested 100000 deep", "object nested 900 deep"}
REPRESENTATIVE_BODY_ROUTES = list({spec.roles: spec for spec in reversed(BODY_ROUTES)}.values())


def body_cases(table: dict) -> list:
    return [(spec, case) for spec in BODY_ROUTES for case in table
            if case in CORE_BODY_CASES or spec in REPRESENTATIVE_BODY_ROUTES]


NOT_JSON_OBJECT_CASES = body_cases({**MALFORMED_BODIES, **NOT_AN_OBJECT})
UNDECODABLE_CASES = body_cases(UNDECODABLE)


@pytest.mark.parametrize("spec,case", NOT_JSON_OBJECT_CASES,
                         ids=[f"{route_id(s)}-{c}" for s, c in NOT_JSON_OBJECT_CASES])
def test_a_body_that_is_not_a_json_object_is_400(world, spec, case):
    data = MALFORMED_BODIES.get(case, NOT_AN_OBJECT.get(case))
    assert_error(world.send(spec, data=data), 400, "malformed_json")


@pytest.mark.parametrize("spec,case", UNDECODABLE_CASES,
                         ids=[f"{route_id(s)}-{c}" for s, c in UNDECODABLE_CASES])
def test_undecodable_or_absurdly_nested_bodies_are_4xx(world, spec, case):
    response = world.send(spec, data=UNDECODABLE[case])
    assert_error(response, {400, 422}, {"malformed_json", "validation_failed"})


@pytest.mark.parametrize("spec", BODY_ROUTES, ids=route_id)
def test_a_deeply_nested_value_in_a_field_is_422_naming_it(world, spec):
    name = next(iter(schema_fields(spec.body)), "bogus")  # a body of no fields: unknown
    nested = "x"
    for _ in range(500):
        nested = {"a": nested}
    body = {**world.body(spec), name: nested}
    assert_validation_failed(world.send(spec, body=body), name)


WRONG_FIELD_CASES = [(spec, name, value) for spec in BODY_ROUTES
                     for name, field in schema_fields(spec.body).items()
                     for value in wrong_values(field)]


@pytest.mark.parametrize("spec,name,value", WRONG_FIELD_CASES,
                         ids=[f"{route_id(s)}-{n}={json.dumps(v)[:24]}" for s, n, v in WRONG_FIELD_CASES])
def test_a_wrong_value_is_422_naming_only_that_field(world, spec, name, value):
    body = {**world.body(spec), name: value}
    named = assert_validation_failed(world.send(spec, body=body), name)
    assert set(named) == {name}, f"only {name!r} is wrong, yet {named} were named"


def test_the_usual_suspects_are_among_the_wrong_values():
    cases = {(n, json.dumps(v)) for _, n, v in WRONG_FIELD_CASES}
    assert {("name", "123"), ("email", '["x"]'), ("role", '"king"'),
            ("company_id", '"not-a-uuid"')} <= cases


@pytest.mark.parametrize("spec", BODY_ROUTES, ids=route_id)
def test_unknown_fields_are_422_naming_them(world, spec):
    body = {**world.body(spec), "bogus": 1, "Name": "x", "__proto__": {"admin": True}}
    named = assert_validation_failed(world.send(spec, body=body), "bogus", "Name", "__proto__")
    assert set(named) == {"bogus", "Name", "__proto__"}


REQUIRED_ROUTES = [spec for spec in BODY_ROUTES if required_fields(spec.body)]


@pytest.mark.parametrize("data", [b"{}", b"", b"  \n "], ids=["empty object", "no body", "blank"])
@pytest.mark.parametrize("spec", REQUIRED_ROUTES, ids=route_id)
def test_an_empty_body_names_every_required_field(world, spec, data):
    named = assert_validation_failed(world.send(spec, data=data), *required_fields(spec.body))
    assert set(named) == required_fields(spec.body)


MISSING_CASES = [(spec, name) for spec in REQUIRED_ROUTES for name in sorted(required_fields(spec.body))]


@pytest.mark.parametrize("spec,name", MISSING_CASES,
                         ids=[f"{route_id(s)}-{n}" for s, n in MISSING_CASES])
def test_a_missing_required_field_is_422_naming_it(world, spec, name):
    body = world.body(spec)
    del body[name]
    named = assert_validation_failed(world.send(spec, body=body), name)
    assert set(named) == {name}


# inside objects and lists: os.name, collaborator.email, mac_addresses[0], metrics.disks[0].percent

MISSING = object()


def inner_paths(schema, prefix=()):
    """(path, field) of every field below the top level: in nested objects, and the first
    item of lists ("0")."""
    for name, field in schema_fields(schema).items():
        path = prefix + (name,)
        if prefix:
            yield path, field
        if isinstance(field, fields.List):
            yield path + ("0",), field.inner
            if isinstance(field.inner, fields.Nested):
                yield from inner_paths(type(field.inner.schema), path + ("0",))
        elif isinstance(field, fields.Nested):
            yield from inner_paths(type(field.schema), path)


def put(body: dict, schema, path: tuple, value) -> dict:
    """A copy of `body` with `value` at `path` (MISSING: without it), building the objects
    and lists on the way from the schema's minimum when the body has none."""
    body, (name, rest) = dict(body), (path[0], path[1:])
    if not rest:
        if value is MISSING:
            body.pop(name, None)
        else:
            body[name] = value
        return body
    field = schema_fields(schema)[name]
    if isinstance(field, fields.List):
        if len(rest) == 1:
            body[name] = [value]
        else:
            item_schema = type(field.inner.schema)
            body[name] = [put(minimal_body(item_schema), item_schema, rest[1:], value)]
    else:
        nested = type(field.schema)
        current = body.get(name)
        body[name] = put(current if isinstance(current, dict) else minimal_body(nested), nested, rest, value)
    return body


NESTED_CASES = [(spec, path, value) for spec in BODY_ROUTES for path, field in inner_paths(spec.body)
                for value in wrong_values(field) + ([MISSING] if field.required else [])]


def test_nested_cases_include_the_devices_shapes():
    cases = {(".".join(path), "missing" if v is MISSING else json.dumps(v)) for _, path, v in NESTED_CASES}
    assert {("os.name", "missing"), ("collaborator.email", '"not-an-email"'), ("mac_addresses.0", "123"),
            ("metrics.disks.0.percent", "101"), ("usb_policy_ack.mode", '"king"')} <= cases


@pytest.mark.parametrize("spec,path,value", NESTED_CASES, ids=[
    f"{route_id(s)}-{'.'.join(p)}={'<missing>' if v is MISSING else json.dumps(v)[:24]}"
    for s, p, v in NESTED_CASES])
def test_a_wrong_value_inside_an_object_or_list_is_422_naming_its_path(world, spec, path, value):
    body = put(world.body(spec), spec.body, path, value)
    named = assert_validation_failed(world.send(spec, body=body), path[0])
    assert set(named) == {path[0]}, f"only {'.'.join(path)} is wrong, yet {named} were named"
    reason = named
    for key in path:
        assert isinstance(reason, dict) and key in reason, f"{'.'.join(path)} not named in {named}"
        reason = reason[key]
    assert reason, f"{'.'.join(path)} named without a reason: {named}"


def object_paths(schema) -> list:
    """Paths of the nested objects of a body, top-level ones included."""
    top = [((name,), field) for name, field in schema_fields(schema).items()]
    return [path for path, field in top + list(inner_paths(schema)) if isinstance(field, fields.Nested)]


NESTED_OBJECT_CASES = [(spec, path) for spec in BODY_ROUTES for path in object_paths(spec.body)]


@pytest.mark.parametrize("spec,path", NESTED_OBJECT_CASES,
                         ids=[f"{route_id(s)}-{'.'.join(p)}" for s, p in NESTED_OBJECT_CASES])
def test_an_unknown_field_inside_an_object_is_422_naming_it(world, spec, path):
    body = put(world.body(spec), spec.body, path + ("bogus",), 1)
    named = assert_validation_failed(world.send(spec, body=body), path[0])
    reason = named
    for key in path + ("bogus",):
        assert isinstance(reason, dict) and key in reason, f"{'.'.join(path)}.bogus not named in {named}"
        reason = reason[key]


# devices: what the schema cannot say ---------------------------------------------------------

REGISTER = next(spec for spec in ROUTES if route_id(spec) == "POST /api/machines/register")

NO_REAL_IDENTIFIER = {
    "none at all": ([], []),
    "empty strings": ([""], [""]),
    "hypervisors' MACs": (["00:50:56:12:34:56", "08:00:27:12:34:56", "52:54:00:12:34:56",
                           "00:15:5D:12:34:56", "00:0C:29:12:34:56"], []),
    "locally administered MAC": (["02:1A:2B:3C:4D:5E", "DA:1A:2B:3C:4D:5E"], []),
    "multicast MAC": (["01:00:5E:00:00:01"], []),
    "all-zero and broadcast MACs": (["00:00:00:00:00:00", "FF:FF:FF:FF:FF:FF"], []),
    "not MACs": (["not-a-mac", "00:1A:2B", "00:1A:2B:3C:4D:5E:6F"], []),
    "placeholder serials": ([], ["To Be Filled By O.E.M.", "Default string", "System Serial Number",
                                 "0", "000000", "N/A", "None", "0123456789"]),
}


@pytest.mark.parametrize("case", list(NO_REAL_IDENTIFIER))
def test_a_registration_without_a_real_identifier_is_422(world, case):
    macs, serials = NO_REAL_IDENTIFIER[case]
    body = {**world.body(REGISTER), "mac_addresses": macs, "serial_numbers": serials}
    assert_validation_failed(world.send(REGISTER, body=body), "mac_addresses", "serial_numbers")


def test_one_real_identifier_among_placeholders_is_enough(world):
    """The control for the 422s above."""
    body = {**world.body(REGISTER), "mac_addresses": ["00:50:56:12:34:56", real_mac()],
            "serial_numbers": ["To Be Filled By O.E.M."]}
    response = world.send(REGISTER, body=body)
    assert response.status_code == 201, response.text


WRONG_CODES = {"unknown": "not-a-provisioning-code", "one character": "x",
               "longest": "x" * 128, "control characters": "a\u0001\u001fb", "spaces": "   ",
               "quote": "' OR '1'='1"}


@pytest.mark.parametrize("case", list(WRONG_CODES) + ["rotated", "real one with more", "real one cut"])
def test_a_wrong_provisioning_code_is_401(world, case):
    body = world.body(REGISTER)
    real = body["provisioning_code"]
    if case == "rotated":
        company = world.tenant.company()
        body["provisioning_code"] = company["provisioning_code"]
        rotated = world.admin.post(f"/api/admin/companies/{company['id']}/provisioning-code")
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["provisioning_code"] != company["provisioning_code"]
    elif case == "real one with more":
        body["provisioning_code"] = f"{real}x"
    elif case == "real one cut":
        body["provisioning_code"] = real[:-1]
    else:
        body["provisioning_code"] = WRONG_CODES[case]
    assert_error(world.send(REGISTER, body=body), 401, "invalid_provisioning_code")


TEXT_CASES = [(spec, name) for spec in BODY_ROUTES for name in text_fields(spec.body)]
STORED_TEXT_VALUES = {"nul": "a\u0000b", "nul only": "\u0000", "control": "a\u0001\u001fb"}


@pytest.mark.parametrize("value", list(STORED_TEXT_VALUES))
@pytest.mark.parametrize("spec,name", TEXT_CASES, ids=[f"{route_id(s)}-{n}" for s, n in TEXT_CASES])
def test_control_characters_in_text_are_never_a_5xx(world, spec, name, value):
    """PostgreSQL text cannot hold NUL: a value with one is kept (escaped, say) or refused as
    bad input, never a 500 from the database."""
    text_value = STORED_TEXT_VALUES[value]
    body = {**world.body(spec), name: text_value}
    response = world.send(spec, path=world.fresh_path(spec), body=body)
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        error = assert_client_error(response)
        if response.status_code == 422:
            assert name in error["details"].get("fields", {}), error


TRIMMED_FIELDS = {"name", "apelido", "subject"}  # common.contracts.trimmed(): 1+ characters


def must_not_be_blank(name, field) -> bool:
    length = validator(field, validate.Length)
    return name in TRIMMED_FIELDS or (isinstance(field, Trimmed) and length is not None
                                      and (length.min or 0) >= 1)


WHITESPACE_CASES = [(spec, name) for spec in BODY_ROUTES
                    for name, field in schema_fields(spec.body).items() if must_not_be_blank(name, field)]


@pytest.mark.parametrize("blank", ["   ", "\t\n", "\u00a0"], ids=["spaces", "tab-newline", "nbsp"])
@pytest.mark.parametrize("spec,name", WHITESPACE_CASES, ids=[f"{route_id(s)}-{n}" for s, n in WHITESPACE_CASES])
def test_a_blank_name_is_422(world, spec, name, blank):
    """Trimmed fields (names, apelido, subject) must not be empty after trimming."""
    body = {**world.body(spec), name: blank}
    # rows of its own: a bug here must not rename the shared ones
    assert_validation_failed(world.send(spec, path=world.fresh_path(spec), body=body), name)


def padded_body(size: int) -> bytes:
    """A JSON object of exactly `size` bytes (with an unknown field, so never accepted)."""
    head, tail = b'{"bogus": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


OVER_LIMIT_CASES = [(spec, 1) for spec in BODY_ROUTES] + [
    (spec, 4 * DEFAULT_MAX_BODY_BYTES) for spec in REPRESENTATIVE_BODY_ROUTES]


@pytest.mark.parametrize("spec,over", OVER_LIMIT_CASES,
                         ids=[f"{route_id(s)}-limit+{o}" for s, o in OVER_LIMIT_CASES])
def test_a_body_over_the_limit_is_413(world, spec, over):
    data = padded_body(world.max_body + over)
    assert_error(world.send(spec, data=data), 413, "payload_too_large")


@pytest.mark.parametrize("spec", BODY_ROUTES, ids=route_id)
def test_a_body_of_exactly_the_limit_is_read(world, spec):
    assert_validation_failed(world.send(spec, data=padded_body(world.max_body)), "bogus")


@pytest.mark.parametrize("spec", BODY_ROUTES, ids=route_id)
def test_a_chunked_body_over_the_limit_is_413(world, spec):
    """No Content-Length to trust: the limit still holds while reading."""
    chunk = b"x" * 65536

    def chunks():
        yield b'{"bogus": "'
        for _ in range(world.max_body // len(chunk) + 2):
            yield chunk
        yield b'"}'

    response = world.send(spec, data=chunks())
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize("spec", BODY_ROUTES, ids=route_id)
def test_a_small_chunked_body_is_read_not_dropped(world, spec):
    response = world.send(spec, data=iter([b'{"bogus"', b": 1}"]))
    assert_validation_failed(response, "bogus")


# devices: heartbeats --------------------------------------------------------------------------

HEARTBEAT = next(spec for spec in ROUTES if route_id(spec) == "POST /api/machines/heartbeat")


def inventory_of(packages: int) -> dict:
    return {"hostname": "pc", "software": [{"name": f"package-{i:06d}", "version": "1.0.0"}
                                           for i in range(packages)]}


def sized_heartbeat(size: int, packages: int | None = None) -> tuple[bytes, dict]:
    """A heartbeat of exactly `size` bytes of compact JSON, valid in every field: the bulk
    is a realistic inventory (many small objects, `size // 50` unless said), topped up with
    padding."""
    inventory = {**inventory_of(size // 50 if packages is None else packages), "notes": ""}
    body = {"sent_at": datetime.now(timezone.utc).isoformat(), "inventory": inventory}
    short = size - len(json.dumps(body, separators=(",", ":")).encode())
    assert short >= 0, "too many packages for the size"
    inventory["notes"] = "n" * short
    data = json.dumps(body, separators=(",", ":")).encode()
    assert len(data) == size
    return data, body


def chunked(data: bytes, size: int = 65536):
    return (data[start:start + size] for start in range(0, len(data), size))


@pytest.mark.parametrize("over", [1, 4 * DEFAULT_MAX_BODY_BYTES])
@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
def test_a_real_heartbeat_over_the_limit_is_413(world, transfer, over):
    """An agent with a good token whose inventory makes the body too large: 413, not 202."""
    data, _ = sized_heartbeat(world.max_body + over)
    response = world.send(HEARTBEAT, data=data if transfer == "content-length" else chunked(data))
    assert_error(response, 413, "payload_too_large")


def machine_view(tenant: Tenant, machine_id: str) -> dict:
    response = tenant.admin.get(f"/api/admin/machines/{machine_id}")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("packages", [None, 600], ids=["dense", "a real machine's"])
def test_a_heartbeat_of_exactly_the_limit_is_refused_or_processed_never_dropped(world, packages):
    """Within the limit the gateway must not answer 202 for a heartbeat the devices
    service will then dead-letter: it answers 413, or 422 for an inventory past the
    contract's bounds (a megabyte of tiny packages holds more values than any machine
    has), or the inventory arrives."""
    from chamados_protocol.inventory import inventory_hash

    enrolment = register(world.tenant)
    data, body = sized_heartbeat(world.max_body, packages)
    response = world.send(HEARTBEAT, data=data, token=enrolment["token"])
    if packages is not None:  # within every bound: it must arrive
        assert response.status_code == 202, response.text
    if response.status_code == 413:
        assert_error(response, 413, "payload_too_large")
        return
    if response.status_code == 422:
        assert_validation_failed(response, "inventory")
        assert "values" in response.text
        return
    assert response.status_code == 202, response.text
    expected = inventory_hash(body["inventory"])
    # a small, later heartbeat behind it: once that one is in, the big one has been handled
    marker = heartbeat_body(inventory_hash=expected, metrics={"cpu_percent": 77.5})
    assert world.send(HEARTBEAT, body=marker, token=enrolment["token"]).status_code == 202
    deadline = time.monotonic() + 20
    while True:
        machine = machine_view(world.tenant, enrolment["machine_id"])
        if (machine["last_metrics"] or {}).get("cpu_percent") == 77.5:
            break
        assert time.monotonic() < deadline, f"the heartbeats were not processed: {machine}"
        time.sleep(0.2)
    assert machine["inventory_hash"] == expected, \
        "answered 202, but the inventory never arrived: the heartbeat was dropped after acceptance"


@pytest.mark.parametrize("extra", [{}, {"inventory": None, "inventory_hash": None}],
                         ids=["neither", "both null"])
def test_a_heartbeat_without_inventory_or_hash_is_422(world, extra):
    body = world.body(HEARTBEAT)
    del body["inventory_hash"]
    body.update(extra)
    assert_validation_failed(world.send(HEARTBEAT, body=body), "inventory_hash")


@pytest.mark.parametrize("where", ["value", "key", "in a list"])
def test_a_nul_in_the_inventory_is_422(world, where):
    """The inventory is stored as text: a NUL must be refused at the door, not dead-lettered."""
    inventory = {"value": {"os": "a\u0000b"}, "key": {"a\u0000b": 1},
                 "in a list": {"software": [{"name": "x\u0000"}]}}[where]
    response = world.send(HEARTBEAT, body=world.body(HEARTBEAT) | {"inventory": inventory})
    error = assert_error(response, 422, "validation_failed")
    assert any(path.split(".")[0] == "inventory" for path in error["details"].get("fields", {})), error


def test_a_message_id_over_128_characters_is_422(world):
    response = world.send(HEARTBEAT, body=world.body(HEARTBEAT), headers={"X-Message-Id": "m" * 129})
    assert_validation_failed(response, "X-Message-Id")
    response = world.send(HEARTBEAT, body=world.body(HEARTBEAT), headers={"X-Message-Id": "m" * 128})
    assert response.status_code == 202, response.text


# 422: query strings ----------------------------------------------------------------------

@pytest.mark.parametrize("spec", ROUTES, ids=route_id)
def test_an_unknown_query_parameter_is_422(world, spec):
    body = world.body(spec)
    query = urlencode({**world.query(spec), "bogus": "1"})
    response = world.send(spec, body=body, query_string=query)
    named = assert_validation_failed(response, "bogus")
    assert set(named) == {"bogus"}


@pytest.mark.parametrize("spec", QUERY_ROUTES, ids=route_id)
def test_an_undecodable_query_string_is_422(world, spec):
    assert_error(world.send(spec, query_string="%ff%fe=%c0%af&%=%"), 422, "validation_failed")


REPEATED_CASES = [(spec, name, field) for spec in QUERY_ROUTES
                  for name, field in schema_fields(spec.query).items()]


@pytest.mark.parametrize("spec,name,field", REPEATED_CASES,
                         ids=[f"{route_id(s)}-{n}" for s, n, _ in REPEATED_CASES])
def test_a_repeated_query_parameter_is_422(world, spec, name, field):
    query = world.query(spec)
    value = query.pop(name, None) or str(valid_value(name, field))
    response = world.send(spec, params=[*query.items(), (name, value), (name, value)])
    named = assert_validation_failed(response, name)
    assert set(named) == {name}


QUERY_VALUE_CASES = [(spec, name, value) for spec in QUERY_ROUTES
                     for name, field in schema_fields(spec.query).items()
                     for value in wrong_query_values(name, field)]


def test_query_cases_include_limit_and_cursor():
    cases = {(n, v) for _, n, v in QUERY_VALUE_CASES}
    assert {("limit", "abc"), ("limit", "0"), ("limit", "100000"), ("cursor", "garbage")} <= cases


@pytest.mark.parametrize("spec,name,value", QUERY_VALUE_CASES,
                         ids=[f"{route_id(s)}-{n}={CURSOR_LABELS.get(v, v[:24])}"
                              for s, n, v in QUERY_VALUE_CASES])
def test_a_bad_query_value_is_422_naming_it(world, spec, name, value):
    response = world.send(spec, params={**world.query(spec), name: value})
    named = assert_validation_failed(response, name)
    assert set(named) == {name}


QUERY_TEXT_CASES = [(spec, name) for spec in QUERY_ROUTES for name in text_fields(spec.query)
                    if name != "cursor"]


@pytest.mark.parametrize("spec,name", QUERY_TEXT_CASES,
                         ids=[f"{route_id(s)}-{n}" for s, n in QUERY_TEXT_CASES])
def test_a_nul_in_a_query_text_is_never_a_5xx(world, spec, name):
    response = world.send(spec, params={**world.query(spec), name: "a\u0000b"})
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        error = assert_client_error(response)
        if response.status_code == 422:
            assert name in error["details"].get("fields", {}), error


# 404: path ids -----------------------------------------------------------------------------

ID_CASES = [(spec, value) for spec in ID_ROUTES for value in NOT_UUIDS]


@pytest.mark.parametrize("spec,value", ID_CASES,
                         ids=[f"{route_id(s)}-{v[:16]!r}" for s, v in ID_CASES])
def test_a_path_id_that_is_not_a_uuid_is_404(world, spec, value):
    body = world.body(spec)
    path = world.path(spec, **{name: value for name in spec.path_params})
    assert_not_found(world.send(spec, path=path, body=body))


@pytest.mark.parametrize("value", ["random", "nil", "max"])
@pytest.mark.parametrize("spec", ID_ROUTES, ids=route_id)
def test_an_unknown_uuid_is_404(world, spec, value):
    ids = {"random": lambda: str(uuid.uuid4()), "nil": lambda: str(uuid.UUID(int=0)),
           "max": lambda: str(uuid.UUID(int=2 ** 128 - 1))}[value]
    body = world.body(spec)
    path = world.path(spec, **{name: ids() for name in spec.path_params})
    assert_not_found(world.send(spec, path=path, body=body))


def read_route(spec):
    """The GET route for the same resource, to see that a refused request changed nothing."""
    return next((r for r in ROUTES if r.method == "GET" and r.path_params == spec.path_params
                 and r.path.endswith(f"<{spec.path_params[-1]}>")), None)


TENANT_ID_ROUTES = [spec for spec in ID_ROUTES if not set(spec.path_params) & GLOBAL_PATH_PARAMS]


@pytest.mark.parametrize("spec", TENANT_ID_ROUTES, ids=route_id)
def test_another_tenants_id_is_404_like_an_unknown_one_and_changes_nothing(world, spec):
    missing = [name for name in spec.path_params if name not in world.other_ids]
    if missing:
        pytest.fail(f"no factory for path parameter(s) {missing}: add them to PATH_ID_FACTORIES")
    body = world.body(spec)
    reader = read_route(spec)
    theirs = world.path(spec, **world.other_ids)
    before = world.other.admin.get(world.path(reader, **world.other_ids)) if reader else None
    if reader:
        assert before.status_code == 200, before.text

    cross = world.send(spec, path=theirs, body=body)
    unknown = world.send(spec, path=world.path(spec, **{n: str(uuid.uuid4()) for n in spec.path_params}),
                         body=body)
    cross_error, unknown_error = assert_not_found(cross), assert_not_found(unknown)
    assert cross_error["code"] == unknown_error["code"], "another tenant's id must look unknown"
    assert cross_error["message"] == unknown_error["message"]
    if reader:
        after = world.other.admin.get(world.path(reader, **world.other_ids))
        assert after.status_code == 200 and after.json() == before.json()


def test_ids_of_another_tenant_in_a_body_are_404_and_change_nothing(world):
    admin, theirs = world.admin, world.other_ids
    email = f"cross-{uuid.uuid4().hex[:8]}@example.com"
    created = admin.post("/api/admin/users", json={
        "email": email, "name": "Cross", "role": "collaborator", "company_id": theirs["company_id"]})
    assert_not_found(created)
    assert admin.get("/api/admin/users", params={"q": email}).json()["items"] == []

    moved = admin.patch(f"/api/admin/users/{world.ids['user_id']}",
                        json={"company_id": theirs["company_id"]})
    assert_not_found(moved)
    assert admin.get(f"/api/admin/users/{world.ids['user_id']}").json()["company_id"] is None

    merged = admin.post("/api/admin/users/merge", json={
        "from_user_id": world.ids["user_id"], "into_user_id": theirs["user_id"]})
    assert_not_found(merged)
    assert admin.get(f"/api/admin/users/{world.ids['user_id']}").json()["merged_into_id"] is None


def test_machine_ids_of_another_tenant_in_links_are_404_like_unknown_ones_and_change_nothing(world):
    admin, other_admin = world.admin, world.other.admin
    machine_id = make_machine(world.other)
    their_email = f"linked-{uuid.uuid4().hex[:8]}@{world.other.slug}.test"
    person = other_admin.post("/api/admin/users", json={
        "email": their_email, "name": "Linked Person", "role": "collaborator"})
    assert person.status_code == 201, person.text
    linked = other_admin.post("/api/admin/devices/links", json={"machine_id": machine_id, "email": their_email})
    assert linked.status_code == 201, linked.text
    their_user = linked.json()["linked_users"][0]["id"]
    before = machine_view(world.other, machine_id)

    email = f"cross-{uuid.uuid4().hex[:8]}@{world.tenant.slug}.test"
    link = admin.post("/api/admin/devices/links", json={"machine_id": machine_id, "email": email})
    unknown_link = admin.post("/api/admin/devices/links",
                              json={"machine_id": str(uuid.uuid4()), "email": email})
    unlink = admin.delete("/api/admin/devices/links",
                          params={"machine_id": machine_id, "user_id": their_user})
    unknown_unlink = admin.delete("/api/admin/devices/links",
                                  params={"machine_id": str(uuid.uuid4()), "user_id": their_user})
    for cross, unknown in ((link, unknown_link), (unlink, unknown_unlink)):
        cross_error, unknown_error = assert_not_found(cross), assert_not_found(unknown)
        assert cross_error["code"] == unknown_error["code"], "another tenant's machine must look unknown"
        assert cross_error["message"] == unknown_error["message"]
    assert machine_view(world.other, machine_id) == before
    assert admin.get("/api/admin/users", params={"q": email}).json()["items"] == [], \
        "a refused link must not create the person"


def test_another_tenants_machines_are_never_listed(world):
    theirs = machine_view(world.other, world.other_ids["machine_id"])
    for params in ({"company_id": theirs["company_id"]}, {"q": theirs["hostname"]}):
        response = world.admin.get("/api/admin/machines", params=params)
        if response.status_code != 200:
            assert_error(response, {404, 422})
            continue
        assert theirs["id"] not in {item["id"] for item in response.json()["items"]}, params


def test_resetting_another_tenants_machine_is_404_and_its_agent_keeps_working(world):
    enrolment = register(world.other)
    assert_not_found(world.admin.post(f"/api/admin/machines/{enrolment['machine_id']}/reset-agent", json={}))
    assert heartbeat(world.system, enrolment["token"]).status_code == 202


# 404 / 405: routing -----------------------------------------------------------------------

URL_MAP = Map([Rule(spec.path, methods=[spec.method], endpoint=index)
               for index, spec in enumerate(ROUTES)])


def wrong_method_cases() -> list:
    """(route, method, allowed) where the route's URL exists but not with that method, as
    werkzeug routes it (GET /api/admin/users/merge is GET /api/admin/users/<user_id>).
    OPTIONS on an /api/ path is a CORS preflight, never a 405 (see the preflight tests)."""
    cases, seen = [], set()
    for spec in ROUTES:
        sample = re.sub(r"<(?:\w+:)?\w+>", str(uuid.UUID(int=1)), spec.path)
        if sample in seen:
            continue
        seen.add(sample)
        adapter = URL_MAP.bind("localhost")
        methods = ("GET", "POST", "PUT", "PATCH", "DELETE") + (() if sample.startswith("/api/") else ("OPTIONS",))
        for method in methods:
            try:
                adapter.match(sample, method=method)
            except MethodNotAllowed as exc:
                cases.append((spec, method, frozenset(exc.valid_methods)))
    return cases


WRONG_METHOD_CASES = wrong_method_cases()


def test_wrong_method_cases_cover_every_path():
    assert {spec.path for spec, _, _ in WRONG_METHOD_CASES} >= {"/api/me", "/api/admin/users"}


@pytest.mark.parametrize("spec,method,allowed", WRONG_METHOD_CASES,
                         ids=[f"{m} {s.path}" for s, m, _ in WRONG_METHOD_CASES])
def test_a_wrong_method_on_a_known_path_is_405(world, spec, method, allowed):
    response = world.admin.request(method, world.path(spec), data=b'{"a": 1}',
                                   headers={"Content-Type": "application/json"})
    error = assert_error(response, 405, "method_not_allowed")
    assert set(allowed) <= set(error["details"].get("allowed", [])), error
    assert method not in error["details"]["allowed"]


UNKNOWN_PATHS = ["/api", "/api/", "/api/nope", "/api/me/", "/api/Me", "/api/me.json",
                 "/api/admin", "/api/admin/users/", "/api/admin/users/merge/extra",
                 "/api/admin/companies/{company_id}/nope", "/api/admin/users/{user_id}/",
                 "/api/%ff%fe", "/api/%00", "/api/admin/users;drop",
                 "/api/" + "x" * 4000, "/api/openapi.json/x", "/healthz/x"]
# outside /api/ the addresses are the console's: people get its HTML 404 page
UNKNOWN_CONSOLE_PATHS = ["/API/me", "/.env", "/api/../etc/passwd", "/chamados/1/nope", "/%ff%fe",
                         "/" + "x" * 4000]


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", UNKNOWN_PATHS)
def test_an_unknown_path_is_404_route_not_found(world, path, method, signed_in):
    path = path.format(**world.ids)
    client = world.admin if signed_in else world.anonymous()
    response = client.request(method, path)
    assert_error(response, 404, "route_not_found")


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", UNKNOWN_CONSOLE_PATHS)
def test_an_unknown_console_address_is_the_consoles_404_page(world, path, method):
    response = world.anonymous().request(method, path)
    assert response.status_code == 404, response.text[:300]
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Página não encontrada." in response.text and "Traceback" not in response.text
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_the_console_home_is_a_page_and_posting_to_it_is_405(world):
    assert world.anonymous().request("GET", "/").status_code == 200
    refused = world.anonymous().request("POST", "/")
    assert refused.status_code == 405 and refused.headers["Content-Type"].startswith("text/html")


# the sweep: several bad requests at every route, none may be a 5xx or leave the shape -----

def sweep_requests(world, spec):
    bogus = "__bogus=1"
    yield "anonymous, garbage body", dict(data=b'{"a":', token="", query_string=bogus)
    yield "unknown parameter", dict(query_string=bogus)
    yield "undecodable query", dict(query_string="%ff=%fe&" + bogus)
    yield "binary body", dict(data=bytes(range(256)) * 64, query_string=bogus)
    yield "form body", dict(data=b"a=1&b=2", query_string=bogus,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    yield "multipart body", dict(data=b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--",
                                 query_string=bogus,
                                 headers={"Content-Type": "multipart/form-data; boundary=x"})
    yield "body over the limit", dict(data=padded_body(world.max_body + 1), query_string=bogus)
    yield "non-latin token", dict(headers={"Authorization": "Bearer ção"}, token="", query_string=bogus)
    yield "huge header", dict(headers={"Authorization": "Bearer " + "y" * 6000}, token="",
                              query_string=bogus)
    yield "collaborator", dict(token=world.people["collaborator"].token, query_string=bogus)
    if spec.path_params:
        yield "garbage ids", dict(path=world.path(spec, **{n: "' OR 1=1 --" for n in spec.path_params}))
    if spec.query is not None:
        yield "every parameter wrong", dict(params={
            name: (wrong_query_values(name, field) or ["\u0000"])[0]
            for name, field in schema_fields(spec.query).items()})
    if spec.body is not None and schema_fields(spec.body):  # an empty body schema has none to spoil
        yield "every field wrong", dict(body={name: wrong_values(field)[0]
                                              for name, field in schema_fields(spec.body).items()})


@pytest.mark.parametrize("spec", ROUTES, ids=route_id)
def test_sweep_every_route_answers_bad_requests_with_a_4xx_error(world, spec):
    failures = []
    for label, kwargs in sweep_requests(world, spec):
        response = world.send(spec, **kwargs)
        try:
            assert_client_error(response)
        except AssertionError as exc:
            failures.append(f"{label}: {exc}")
    assert not failures, "\n".join(failures)
