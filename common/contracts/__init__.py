"""RPC argument and result schemas: the contract between the gateway and each service.

They live in `common/` because both sides load or dump them, and a service package never
imports another (ENGINEERING.md, dependency rules). The gateway validates HTTP bodies and
query strings with the same schemas and builds /api/openapi.json from them.
"""
from marshmallow import Schema, fields, validate


class StrictSchema(Schema):
    """Unknown fields are an error (marshmallow's default, stated so nobody changes it)."""

    class Meta:
        unknown = "raise"


class Trimmed(fields.String):
    """Text stripped of surrounding whitespace before its length is checked, so a name of
    only spaces is empty, not valid."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip()


def trimmed(max_length: int, min_length: int = 1, **kwargs):
    return Trimmed(validate=validate.Length(min=min_length, max=max_length), **kwargs)


class PageQuery(StrictSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String(load_default=None, validate=validate.Length(max=512))


def load(schema: type[Schema], data, partial=False):
    """Validate what crossed a boundary; a bad shape is a 422 with the fields at fault."""
    from marshmallow import ValidationError

    from common.errors import validation_failed

    if data is None:
        data = {}
    with_nul = sorted(paths_with_nul(data))
    if with_nul:  # PostgreSQL text cannot hold NUL; no name or message needs one
        raise validation_failed({path: ["must not contain NUL (\\u0000) characters"]
                                 for path in with_nul})
    try:
        return schema().load(data, partial=partial)
    except ValidationError as exc:
        raise validation_failed(exc.messages) from None


def paths_with_nul(value, path: str = ""):
    if isinstance(value, str):
        if "\x00" in value:
            yield path or "_schema"
    elif isinstance(value, dict):
        for key, item in value.items():
            key_path = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                yield key_path
            yield from paths_with_nul(item, key_path)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from paths_with_nul(item, f"{path}.{index}" if path else str(index))


def parse_id(value, what: str):
    """A path id that is not a UUID names nothing we have: 404, like an unknown one."""
    import uuid

    from common.errors import NotFound

    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found", code=f"{what}_not_found") from None
