"""Opaque keyset cursors: the last row's sort key, so pages never skip or repeat rows."""
from __future__ import annotations

import base64
import uuid
from datetime import date, datetime

import orjson

from common.errors import ValidationFailed


def encode_cursor(values: list) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str | None, *parsers) -> list | None:
    """The sort key a cursor carries, each value through its parser (e.g. `uuid.UUID`);
    anything we could not have issued is a 422, never a query with a strange value."""
    if not cursor:
        return None
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or len(values) != len(parsers):
            raise ValueError("wrong shape")
        return [parse(value) for parse, value in zip(parsers, values)]
    except (ValueError, TypeError, AttributeError):
        raise ValidationFailed("invalid cursor",
                               details={"fields": {"cursor": ["not a cursor we issued"]}}) from None


def text_value(value) -> str:
    """A cursor's text part: a string without NUL (PostgreSQL text cannot hold one)."""
    if not isinstance(value, str) or "\x00" in value:
        raise ValueError("not text")
    return value


def uuid_value(value) -> uuid.UUID:
    return uuid.UUID(text_value(value))


def datetime_value(value) -> datetime:
    parsed = datetime.fromisoformat(text_value(value))
    if parsed.tzinfo is None:
        raise ValueError("naive datetime")
    return parsed


def day_value(value) -> date:
    return date.fromisoformat(text_value(value))
