"""The schema base every contract uses, on both sides of the wire."""
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


def extent_problem(value, max_depth: int, max_values: int) -> str | None:
    """Why `value` is deeper than `max_depth` nested objects/arrays or holds more than
    `max_values` values, or None. Iterative: any depth is safe to ask about."""
    stack, values = [(value, 1)], 0
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        values += 1
        if depth > max_depth:
            return f"nested deeper than {max_depth} levels"
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, (dict, list)):
                push((child, depth + 1))
            else:
                values += 1
        if values > max_values:
            return f"more than {max_values} values"
    return None
