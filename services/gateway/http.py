"""The gateway's route table and request parsing: routes declare their roles and schemas,
and the same table serves the API, the console (`OPERATIONS`) and OpenAPI."""
from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass, field

import orjson
from prometheus_client import Counter, Histogram
from werkzeug.wrappers import Request

from common import idempotency
from common.contracts import StrictSchema, load
from common.contracts.accounts import STAFF_ROLES
from common.errors import BadRequest, Forbidden, PayloadTooLarge, Unauthorized, ValidationFailed
from services.gateway.server import json_http

# who may use a route (`roles=`), besides STAFF and any signed-in person (ANY_PERSON)
STAFF = STAFF_ROLES
USER_ADMINS = frozenset({"admin", "manager"})
ADMIN = frozenset({"admin"})

HTTP_REQUESTS = Counter("chamados_http_requests_total", "Gateway HTTP requests by route and status",
                        ["route", "method", "status"])
HTTP_DURATION = Histogram("chamados_http_request_duration_seconds", "Gateway HTTP request time",
                          ["route", "method"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))



@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str  # werkzeug rule, e.g. /api/admin/users/<user_id>
    summary: str
    tag: str
    roles: frozenset | None  # None: public (or a machine); empty: any signed-in person
    body: type | None = None
    query: type | None = None
    response: type | None = None
    status: int = 200
    raw: bool = False  # the handler returns its own werkzeug Response
    path_params: tuple = field(default=())
    machine: bool = False  # authenticated by a machine token instead of a person's


ROUTES: list[RouteSpec] = []
# handler name -> (spec, handler): the console calls the same operations as the API, with
# the same roles and schemas (services/gateway/console)
OPERATIONS: dict[str, tuple[RouteSpec, object]] = {}
ANY_PERSON = frozenset()


def route(method, path, *, summary, tag, roles=ANY_PERSON, body=None, query=None,
          response=None, status=200, raw=False, machine=False):
    """Declare a gateway route: auth, role check, body/query validation, JSON response,
    metrics, error mapping. The handler is `fn(self, principal, body=?, query=?, **path)`."""
    spec = RouteSpec(method, path, summary, tag, None if machine else roles, body, query, response,
                     status, raw, tuple(re.findall(r"<(?:\w+:)?(\w+)>", path)), machine)
    ROUTES.append(spec)

    def decorate(fn):
        OPERATIONS[fn.__name__] = (spec, fn)

        def endpoint(self, request, **path_values):
            return self.handle_route(spec, fn, request, path_values)

        endpoint.__name__ = fn.__name__
        endpoint.__doc__ = fn.__doc__
        return json_http(method, path)(endpoint)

    return decorate


def role_allows(spec: RouteSpec, principal: dict | None) -> bool:
    """Whether this person may use the route: the one place a route's roles are read."""
    return roles_allow(spec.roles, principal)


def roles_allow(roles: frozenset | None, principal: dict | None) -> bool:
    if roles is None:
        return True
    return principal is not None and (not roles or principal["role"] in roles)


def check_role(spec: RouteSpec, principal: dict) -> None:
    check_roles(spec.roles, principal)


def check_roles(roles: frozenset | None, principal: dict) -> None:
    """Forbidden unless the person has one of `roles` (a raw route checking its own)."""
    if not roles_allow(roles, principal):
        raise Forbidden("your role may not do this", code="forbidden_role",
                        details={"role": principal["role"]})


def read_body(request: Request, max_bytes: int) -> bytes:
    """At most `max_bytes`, with or without Content-Length. werkzeug reads a chunked body
    as empty under eventlet (no `wsgi.input_terminated`), so read eventlet's stream, which
    decodes chunks and stops at Content-Length."""
    too_large = PayloadTooLarge(f"the body is larger than {max_bytes} bytes",
                                details={"max_bytes": max_bytes})
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    raw = request.environ["wsgi.input"].read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise too_large
    return raw


def parse_json_body(request: Request, schema, max_bytes: int):
    raw = read_body(request, max_bytes)
    request.environ["chamados.raw_body"] = raw  # for a handler that forwards it untouched
    if not raw.strip():
        data = {}
    else:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest("the body is not valid JSON", code="malformed_json",
                             details={"position": exc.pos}) from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", code="malformed_json")
    load(schema, data)  # fail here, before any RPC, with the fields at fault
    return data


class NoQuery(StrictSchema):
    """Routes without query parameters reject any, as bodies reject unknown fields."""


def parse_query(request: Request, schema):
    data = {}
    for key, values in request.args.lists():
        if len(values) > 1:
            raise ValidationFailed("a query parameter was given twice",
                                   details={"fields": {key: ["give it once"]}})
        data[key] = values[0]
    load(schema, data)
    return data


def observe(spec: RouteSpec, started: float, status: int) -> None:
    HTTP_REQUESTS.labels(spec.path, spec.method, str(status)).inc()
    HTTP_DURATION.labels(spec.path, spec.method).observe(time.perf_counter() - started)


def client_address(request: Request, trusted_proxies=()) -> str | None:
    """The address a request came from: the peer's, unless the peer is a trusted proxy
    (TRUSTED_PROXIES; none by default), then the right-most X-Forwarded-For entry that is
    not a trusted proxy itself (entries left of it are whatever the client wrote)."""
    def trusted(text):
        try:
            ip = ipaddress.ip_address(text.strip())
        except ValueError:
            return False
        return any(ip in network for network in trusted_proxies)

    address = request.remote_addr
    if not address or not trusted_proxies or not trusted(address):
        return address
    for hop in reversed(request.headers.get("X-Forwarded-For", "").split(",")[-20:]):
        hop = hop.strip()
        if not hop:
            continue
        if not trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return address  # a proxy we trust wrote nonsense: count the proxy
        address = hop
    return address


def bearer_token(request) -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise Unauthorized("sign in first: send Authorization: Bearer <token>", code="missing_token")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 256:
        raise Unauthorized("invalid or expired token", code="invalid_token")
    return token


def idempotency_key(request) -> str | None:
    """The request's Idempotency-Key header, if any: 1–255 visible ASCII characters."""
    key = request.headers.get(idempotency.HEADER)
    if key is not None and not idempotency.valid_key(key):
        raise BadRequest(f"{idempotency.HEADER} must be 1 to {idempotency.MAX_KEY_LENGTH} visible "
                         "ASCII characters", code="invalid_idempotency_key")
    return key
