"""/api/openapi.json is a valid OpenAPI 3 document covering every route the gateway serves."""
import re

from openapi_spec_validator import validate

from services.gateway import service  # noqa: F401  (fills ROUTES)
from services.gateway.http import ROUTES
from services.gateway.openapi import openapi_path


def test_openapi_is_valid_and_covers_every_route(anonymous):
    response = anonymous.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert document["openapi"].startswith("3.")
    served = {(method.upper(), path) for path, operations in document["paths"].items()
              for method in operations}
    declared = {(route.method, openapi_path(route.path)) for route in ROUTES}
    assert declared == served
    assert len(declared) >= 17


# what Python's `re` reads and ECMA-262 (JSON Schema's regex dialect) does not
PYTHON_ONLY_REGEX = re.compile(r"\\[AZ]|\(\?P[<=]|\(\?[aiLmsux]+[):]|\(\?#")


def patterns(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from patterns(value)


def test_every_published_pattern_is_an_ecma_regex(anonymous):
    found = list(patterns(anonymous.get("/api/openapi.json").json()))
    assert found, "no pattern published: this test checks nothing"
    assert [pattern for pattern in found if PYTHON_ONLY_REGEX.search(pattern)] == []


def test_the_capability_pattern_refuses_a_trailing_newline():
    from chamados_protocol.heartbeat import CAPABILITY_NAME

    assert CAPABILITY_NAME.match("usb_policy") and not CAPABILITY_NAME.match("usb_policy\n")
    assert not CAPABILITY_NAME.match("Usb") and not CAPABILITY_NAME.match("a" * 33)


def test_request_schemas_are_the_validating_ones(anonymous):
    document = anonymous.get("/api/openapi.json").json()
    sign_in = document["paths"]["/api/auth/sign-in"]["post"]
    schema_ref = sign_in["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"email", "password"}
    assert schema["additionalProperties"] is False  # unknown fields are refused, and documented so
    users = document["paths"]["/api/admin/users"]["get"]
    assert {p["name"] for p in users["parameters"]} >= {"type", "q", "company_id", "limit", "cursor"}
    assert users["security"] == [{"bearer": []}]


def test_no_route_shadows_another_in_the_document(anonymous):
    """Two paths of one method that differ where one has a literal segment and the other
    a parameter (users/merge and users/{user_id}) are told apart by the parameter's pattern."""
    document = anonymous.get("/api/openapi.json").json()
    by_method: dict[str, list[tuple[str, dict]]] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            params = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "path"}
            by_method.setdefault(method, []).append((path, params))
    clashes = []
    for method, paths in by_method.items():
        for path, _ in paths:
            for other, params in paths:
                segments, shape = path.split("/"), other.split("/")
                if other == path or len(segments) != len(shape):
                    continue
                if all(mine == theirs or (theirs.startswith("{") and not mine.startswith("{")
                                          and re.search(params[theirs[1:-1]].get("pattern", ""), mine))
                       for mine, theirs in zip(segments, shape)):
                    clashes.append((method, path, other))
    assert clashes == []
    checked = [(method, path) for method, paths in by_method.items() for path, _ in paths]
    assert ("post", "/api/admin/users/merge") in checked and ("get", "/api/tickets/recent") in checked
