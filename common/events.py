"""The bus contracts: which service emits which event, and each payload's schema.

Events are named in the past tense and carry `event_id` (for consumers' idempotency),
`occurred_at` and `tenant_id`. They travel on nameko's event exchanges
(`<source>.events`, topic, routing key = event type), published by the outbox relay.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from marshmallow import Schema, fields, validate

from common.contracts.accounts import ROLES


class EventSchema(Schema):
    event_id = fields.UUID(required=True)
    occurred_at = fields.AwareDateTime(required=True, default_timezone=timezone.utc)
    tenant_id = fields.UUID(required=True)


class TenantCreated(EventSchema):
    name = fields.String(required=True)
    slug = fields.String(required=True)


class CompanyChanged(EventSchema):
    company_id = fields.UUID(required=True)
    name = fields.String(required=True)
    apelido = fields.String(required=True)


class UserChanged(EventSchema):
    user_id = fields.UUID(required=True)
    email = fields.String(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    company_id = fields.UUID(allow_none=True, required=True)


class UserMerged(EventSchema):
    from_user_id = fields.UUID(required=True)
    into_user_id = fields.UUID(required=True)


# source service -> event type -> payload schema
CONTRACTS: dict[str, dict[str, type[Schema]]] = {
    "accounts": {
        "tenant_created": TenantCreated,
        "company_created": CompanyChanged,
        "company_updated": CompanyChanged,
        "user_created": UserChanged,
        "user_updated": UserChanged,
        "user_merged": UserMerged,
    },
    "tickets": {},
    "devices": {},
}


def validate_event(source: str, event_type: str, payload: dict) -> dict:
    """The JSON-ready message for an event, or ValueError if it breaks its contract."""
    try:
        schema = CONTRACTS[source][event_type]()
    except KeyError:
        raise ValueError(f"{source} has no event named {event_type!r}") from None
    message = {"event_id": uuid.uuid4(), "occurred_at": datetime.now(timezone.utc), **payload}
    occurred_at = message["occurred_at"]
    if not isinstance(occurred_at, datetime) or occurred_at.tzinfo is None:
        raise ValueError(f"{source}.{event_type}: occurred_at must be a timezone-aware datetime")
    try:
        serialized = schema.dump(message)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{source}.{event_type} breaks its contract: {exc}") from None
    errors = schema.validate(serialized)
    if errors:
        raise ValueError(f"{source}.{event_type} breaks its contract: {errors}")
    unknown = set(message) - set(schema.fields)
    if unknown:
        raise ValueError(f"{source}.{event_type} has fields outside its contract: {sorted(unknown)}")
    return serialized
