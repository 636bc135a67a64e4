"""Opaque keyset cursors: the last row's sort key, so pages never skip or repeat rows."""
from __future__ import annotations

import base64

import orjson

from common.errors import ValidationFailed


def encode_cursor(values: list) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list | None:
    if not cursor:
        return None
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        values = None
    if not isinstance(values, list) or len(values) != arity:
        raise ValidationFailed("invalid cursor", details={"fields": {"cursor": ["not a cursor we issued"]}})
    return values
