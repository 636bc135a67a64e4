"""/api/openapi.json, generated from the routes table and its marshmallow schemas."""
from __future__ import annotations

import re
from functools import lru_cache

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from services.gateway.schemas import Error

ERROR_STATUSES = {
    "400": "Malformed request", "401": "Missing, invalid or expired token",
    "403": "Your role may not do this", "404": "Unknown, or another tenant's",
    "409": "Conflicts with the current state", "413": "Body too large",
    "422": "Did not validate", "429": "Too many attempts; see Retry-After",
    "503": "A dependency is unreachable; see Retry-After", "504": "A service was too slow",
}


# a person's state-changing request may carry one (docs/API.md, "Idempotency-Key")
IDEMPOTENCY_KEY = {
    "in": "header", "name": "Idempotency-Key", "required": False,
    "description": "Retry-safe: a retry with the same key (and the same request) within 24 h "
                   "gets the first answer (honoured by the tickets, comments, chat, queue and "
                   "export routes)",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"}}


# what each path parameter can be: a literal segment of another route (`users/merge`,
# `tickets/recent`, `dead-letters/replay`) must not read as an `{id}` of the same shape
UUID_PATTERN = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
PATH_PARAMETERS = {
    "letter_id": {"type": "string", "pattern": "^[0-9A-Fa-f]{32}$",
                  "description": "a parked message's id (32 hex digits)"},
    "job": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,63}$", "description": "a scheduler job's name"},
}


def path_parameter(name: str) -> dict:
    """The schema of a path parameter: every `*_id` but a dead letter's is a UUID."""
    if name in PATH_PARAMETERS:
        return PATH_PARAMETERS[name]
    if name.endswith("_id"):
        return {"type": "string", "format": "uuid", "pattern": UUID_PATTERN}
    raise ValueError(f"path parameter {name!r} has no schema: add it to PATH_PARAMETERS")


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def document(routes) -> dict:
    return _build(tuple(routes))


@lru_cache(maxsize=1)
def _build(routes) -> dict:
    spec = APISpec(title="Chamados", version="0.1.0", openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Helpdesk tickets and device inventory"})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=Error)
    error_ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    paths: dict[str, dict] = {}
    for route in routes:
        operation = {"summary": route.summary, "tags": [route.tag],
                     "operationId": f"{route.method.lower()}_{openapi_path(route.path)}",
                     "parameters": [], "responses": {}}
        for name in route.path_params:
            operation["parameters"].append(
                {"in": "path", "name": name, "required": True, "schema": path_parameter(name)})
        if route.query is not None:
            operation["parameters"].append({"in": "query", "schema": route.query})
        if route.method != "GET" and route.roles is not None:
            operation["parameters"].append(IDEMPOTENCY_KEY)
        if route.body is not None:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": route.body}}}
        success = {"description": "OK"}
        if route.response is not None:
            success["content"] = {"application/json": {"schema": route.response}}
        operation["responses"][str(route.status)] = success
        if route.roles is not None or route.machine:
            operation["security"] = [{"bearer": []}]
        for status, description in ERROR_STATUSES.items():
            if status == "401" and route.roles is None and not route.machine:
                continue
            if status == "403" and route.roles is None:
                continue
            operation["responses"][status] = {"description": description, **error_ref}
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = operation
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()
