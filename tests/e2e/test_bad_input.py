"""Bad input on every gateway route, through HTTP only, against the API's error contract.

Data-driven from the gateway's routes table (`services.gateway.http.ROUTES`), so a route
added later is covered by every check that applies to it: credentials for routes that need
a signed-in person, malformed and mistyped bodies for routes with a body schema, bad query
strings, bad path ids, wrong methods, roles, and a final sweep. The only table to extend by
hand is PATH_ID_FACTORIES (how to make a real row for a path parameter), for the
cross-tenant check.

Contract (API.md): every error is exactly {"error": {"code", "message", "details"}}, JSON,
4xx for anything the caller did wrong, never a 5xx and never a stack trace.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from marshmallow import fields, validate
from sqlalchemy import create_engine, text
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.routing import Map, Rule

import services.gateway.service  # noqa: F401  (declaring the routes fills ROUTES)
from services.gateway.http import ROUTES
from tests.harness import Client, Tenant, new_tenant

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


def test_the_routes_table_is_filled():
    """Guards every data-driven test below against an empty (vacuous) parametrisation."""
    assert AUTH_ROUTES and BODY_ROUTES and QUERY_ROUTES and ID_ROUTES
    assert any(spec.roles is None for spec in ROUTES)
    assert all(spec.method in {"GET", "POST", "PUT", "PATCH", "DELETE"} for spec in ROUTES)


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
    """Free-text fields the service stores or searches (not enums, emails, ids, secrets)."""
    return [name for name, field in schema_fields(schema).items()
            if type(field) is fields.String and validator(field, validate.OneOf) is None
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
    """Assigned to the admin (staff comment only once assigned), with a machine (so the chat
    sweep, NO_DEVICE, leaves its chats alone)."""
    response = tenant.admin.post("/api/tickets", json={"subject": "Target ticket",
                                                       "machine_id": str(uuid.uuid4())})
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


# path parameter name -> how to make a real row of that kind in a tenant
PATH_ID_FACTORIES = {"company_id": make_company, "user_id": make_user, "ticket_id": make_ticket,
                     "chat_id": make_chat}

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
        sign-out revokes it), so a bug there cannot sign the module's admin out."""
        if spec.roles is None:
            return None
        return sign_in(self.tenant) if spec.raw else self.admin.token

    def send(self, spec, *, path=None, body=None, data=None, params=None, headers=None,
             token=None, query_string=None):
        """One request to the route; `body` is JSON-encoded (ASCII, escapes kept), `data` raw."""
        headers = dict(headers or {})
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

    return World(system, tenant, other, ids, other_ids, people, expired, signed_out,
                 merged_client.token, int(system.env.get("MAX_BODY_BYTES") or DEFAULT_MAX_BODY_BYTES))


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
    body = minimal_body(spec.body) if spec.body is not None else None
    response = world.send(spec, body=body, headers=headers, token="")
    assert_error(response, 401, code)


def test_bad_credentials_leave_the_real_session_alone(world):
    """Sign-out with a forged or garbled token revokes nothing."""
    sign_out = next(spec for spec in AUTH_ROUTES if spec.path.endswith("/sign-out"))
    token = sign_in(world.tenant)
    for header in (f"Bearer {token}x", f"Token {token}", "Bearer forged-token"):
        assert_error(world.send(sign_out, headers={"Authorization": header}, token=""), 401)
    assert Client(world.system.base_url, token).get("/api/me").status_code == 200


# 403: roles -------------------------------------------------------------------------------

ROLE_CASES = [(spec, role) for spec in ROUTES if spec.roles
              for role in ROLES_BELOW_ADMIN if role not in spec.roles]


def test_role_cases_cover_staff_and_admin_only_routes():
    assert {role for _, role in ROLE_CASES} == set(ROLES_BELOW_ADMIN)
    assert any(spec.method != "GET" for spec, role in ROLE_CASES if role == "agent")


@pytest.mark.parametrize("spec,role", ROLE_CASES,
                         ids=[f"{role}-{route_id(spec)}" for spec, role in ROLE_CASES])
def test_a_role_outside_the_route_is_403(world, spec, role):
    body = minimal_body(spec.body) if spec.body is not None else None
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
    "number out of range": b'{"name": 1e400}',
}


# on every body route a core set; every case on one body route per kind of role set (the
# parsing is shared; what runs before it, authentication and the role check, is not)
CORE_BODY_CASES = {"truncated", "form encoded", "empty array", "string", "null",
                   "invalid utf-8", "utf-8 bom", "nested 100000 deep"}
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
    body = {**minimal_body(spec.body), name: nested}
    assert_validation_failed(world.send(spec, body=body), name)


WRONG_FIELD_CASES = [(spec, name, value) for spec in BODY_ROUTES
                     for name, field in schema_fields(spec.body).items()
                     for value in wrong_values(field)]


@pytest.mark.parametrize("spec,name,value", WRONG_FIELD_CASES,
                         ids=[f"{route_id(s)}-{n}={json.dumps(v)[:24]}" for s, n, v in WRONG_FIELD_CASES])
def test_a_wrong_value_is_422_naming_only_that_field(world, spec, name, value):
    body = {**minimal_body(spec.body), name: value}
    named = assert_validation_failed(world.send(spec, body=body), name)
    assert set(named) == {name}, f"only {name!r} is wrong, yet {named} were named"


def test_the_usual_suspects_are_among_the_wrong_values():
    cases = {(n, json.dumps(v)) for _, n, v in WRONG_FIELD_CASES}
    assert {("name", "123"), ("email", '["x"]'), ("role", '"king"'),
            ("company_id", '"not-a-uuid"')} <= cases


@pytest.mark.parametrize("spec", BODY_ROUTES, ids=route_id)
def test_unknown_fields_are_422_naming_them(world, spec):
    body = {**minimal_body(spec.body), "bogus": 1, "Name": "x", "__proto__": {"admin": True}}
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
    body = minimal_body(spec.body)
    del body[name]
    named = assert_validation_failed(world.send(spec, body=body), name)
    assert set(named) == {name}


TEXT_CASES = [(spec, name) for spec in BODY_ROUTES for name in text_fields(spec.body)]
STORED_TEXT_VALUES = {"nul": "a\u0000b", "nul only": "\u0000", "control": "a\u0001\u001fb"}


@pytest.mark.parametrize("value", list(STORED_TEXT_VALUES))
@pytest.mark.parametrize("spec,name", TEXT_CASES, ids=[f"{route_id(s)}-{n}" for s, n in TEXT_CASES])
def test_control_characters_in_text_are_never_a_5xx(world, spec, name, value):
    """PostgreSQL text cannot hold NUL: a value with one is kept (escaped, say) or refused as
    bad input, never a 500 from the database."""
    text_value = STORED_TEXT_VALUES[value]
    body = {**minimal_body(spec.body), name: text_value}
    response = world.send(spec, path=world.fresh_path(spec), body=body)
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        error = assert_client_error(response)
        if response.status_code == 422:
            assert name in error["details"].get("fields", {}), error


TRIMMED_FIELDS = {"name", "apelido", "subject"}  # common.contracts.trimmed(): 1+ characters
WHITESPACE_CASES = [(spec, name) for spec in BODY_ROUTES for name in schema_fields(spec.body)
                    if name in TRIMMED_FIELDS]


@pytest.mark.parametrize("blank", ["   ", "\t\n", "\u00a0"], ids=["spaces", "tab-newline", "nbsp"])
@pytest.mark.parametrize("spec,name", WHITESPACE_CASES, ids=[f"{route_id(s)}-{n}" for s, n in WHITESPACE_CASES])
def test_a_blank_name_is_422(world, spec, name, blank):
    """Trimmed fields (names, apelido, subject) must not be empty after trimming."""
    body = {**minimal_body(spec.body), name: blank}
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


# 422: query strings ----------------------------------------------------------------------

@pytest.mark.parametrize("spec", ROUTES, ids=route_id)
def test_an_unknown_query_parameter_is_422(world, spec):
    body = minimal_body(spec.body) if spec.body is not None else None
    response = world.send(spec, body=body, query_string="bogus=1")
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
    value = str(valid_value(name, field))
    response = world.send(spec, params=[(name, value), (name, value)])
    assert_validation_failed(response, name)


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
    response = world.send(spec, params={name: value})
    named = assert_validation_failed(response, name)
    assert set(named) == {name}


QUERY_TEXT_CASES = [(spec, name) for spec in QUERY_ROUTES for name in text_fields(spec.query)
                    if name != "cursor"]


@pytest.mark.parametrize("spec,name", QUERY_TEXT_CASES,
                         ids=[f"{route_id(s)}-{n}" for s, n in QUERY_TEXT_CASES])
def test_a_nul_in_a_query_text_is_never_a_5xx(world, spec, name):
    response = world.send(spec, params={name: "a\u0000b"})
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
    body = minimal_body(spec.body) if spec.body is not None else None
    path = world.path(spec, **{name: value for name in spec.path_params})
    assert_not_found(world.send(spec, path=path, body=body))


@pytest.mark.parametrize("value", ["random", "nil", "max"])
@pytest.mark.parametrize("spec", ID_ROUTES, ids=route_id)
def test_an_unknown_uuid_is_404(world, spec, value):
    ids = {"random": lambda: str(uuid.uuid4()), "nil": lambda: str(uuid.UUID(int=0)),
           "max": lambda: str(uuid.UUID(int=2 ** 128 - 1))}[value]
    body = minimal_body(spec.body) if spec.body is not None else None
    path = world.path(spec, **{name: ids() for name in spec.path_params})
    assert_not_found(world.send(spec, path=path, body=body))


def read_route(spec):
    """The GET route for the same resource, to see that a refused request changed nothing."""
    return next((r for r in ROUTES if r.method == "GET" and r.path_params == spec.path_params
                 and r.path.endswith(f"<{spec.path_params[-1]}>")), None)


@pytest.mark.parametrize("spec", ID_ROUTES, ids=route_id)
def test_another_tenants_id_is_404_like_an_unknown_one_and_changes_nothing(world, spec):
    missing = [name for name in spec.path_params if name not in world.other_ids]
    if missing:
        pytest.fail(f"no factory for path parameter(s) {missing}: add them to PATH_ID_FACTORIES")
    body = minimal_body(spec.body) if spec.body is not None else None
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


# 404 / 405: routing -----------------------------------------------------------------------

URL_MAP = Map([Rule(spec.path, methods=[spec.method], endpoint=index)
               for index, spec in enumerate(ROUTES)])


def wrong_method_cases() -> list:
    """(route, method, allowed) where the route's URL exists but not with that method, as
    werkzeug routes it (GET /api/admin/users/merge is GET /api/admin/users/<user_id>)."""
    cases, seen = [], set()
    for spec in ROUTES:
        sample = re.sub(r"<(?:\w+:)?\w+>", str(uuid.UUID(int=1)), spec.path)
        if sample in seen:
            continue
        seen.add(sample)
        adapter = URL_MAP.bind("localhost")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
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


UNKNOWN_PATHS = ["/", "/api", "/api/", "/api/nope", "/api/me/", "/API/me", "/api/Me", "/api/me.json",
                 "/api/admin", "/api/admin/users/", "/api/admin/users/merge/extra",
                 "/api/admin/companies/{company_id}/nope", "/api/admin/users/{user_id}/",
                 "/api/%ff%fe", "/api/%00", "/api/admin/users;drop", "/.env", "/api/../etc/passwd",
                 "/api/" + "x" * 4000, "/api/openapi.json/x", "/healthz/x"]


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", UNKNOWN_PATHS)
def test_an_unknown_path_is_404_route_not_found(world, path, method, signed_in):
    path = path.format(**world.ids)
    client = world.admin if signed_in else world.anonymous()
    response = client.request(method, path)
    assert_error(response, 404, "route_not_found")


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
