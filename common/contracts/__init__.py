"""RPC argument and result schemas: the contract between the gateway and each service.

They live in `common/` because both sides load or dump them, and a service package never
imports another (ENGINEERING.md, dependency rules). The gateway validates HTTP bodies and
query strings with the same schemas and builds /api/openapi.json from them.
"""
from marshmallow import Schema, fields, validate

from chamados_protocol.schema import (  # noqa: F401  (shared with the agent)
    StrictSchema, Trimmed, extent_problem, trimmed)


class PageQuery(StrictSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String(load_default=None, validate=validate.Length(max=512))


# Any JSON document that crosses a boundary: deeper or bigger than this is refused before
# anything walks it recursively (a body nested 1,000 deep once exhausted Python's stack).
JSON_MAX_DEPTH = 32
JSON_MAX_VALUES = 200_000


_INSTANCES: dict[type, Schema] = {}


def schema_instance(schema: type[Schema]) -> Schema:
    """One instance per schema class, reused: building one costs more than a small load, and
    `load` keeps no state on the instance (ENGINEERING.md pitfall 18)."""
    instance = _INSTANCES.get(schema)
    if instance is None:
        instance = _INSTANCES[schema] = schema()
    return instance


def load(schema: type[Schema], data, partial=False):
    """Validate what crossed a boundary; a bad shape is a 422 with the fields at fault."""
    from marshmallow import ValidationError

    from common.errors import validation_failed

    if data is None:
        data = {}
    if isinstance(data, dict):  # each field named for what it holds
        too_complex = {str(key): [f"the value is {problem}"] for key, problem in (
            (key, extent_problem(value, JSON_MAX_DEPTH - 1, JSON_MAX_VALUES))
            for key, value in data.items() if isinstance(value, (dict, list))) if problem}
        if too_complex:
            raise validation_failed(too_complex)
    with_nul = sorted(paths_with_nul(data))
    if with_nul:  # PostgreSQL text cannot hold NUL; no name or message needs one
        raise validation_failed({path: ["must not contain NUL (\\u0000) characters"]
                                 for path in with_nul})
    fast_load = getattr(schema, "fast_load", None)  # a hot path's own loader (same result)
    try:
        return fast_load(data) if fast_load and not partial else \
            schema_instance(schema).load(data, partial=partial)
    except ValidationError as exc:
        raise validation_failed(exc.messages) from None


def paths_with_nul(value, path: str = ""):
    """The paths of the strings (values or keys) holding a NUL character. Iterative."""
    stack = [(value, path)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                yield at or "_schema"
        elif isinstance(item, dict):
            for key, child in item.items():
                key_path = f"{at}.{key}" if at else str(key)
                if "\x00" in str(key):
                    yield key_path
                stack.append((child, key_path))
        elif isinstance(item, (list, tuple)):
            for index, child in enumerate(item):
                stack.append((child, f"{at}.{index}" if at else str(index)))


def parse_id(value, what: str):
    """A path id that is not a UUID names nothing we have: 404, like an unknown one."""
    import uuid

    from common.errors import NotFound

    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found", code=f"{what}_not_found") from None
