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


def snapshot_version():
    """The entity's version in accounts (one more per change, stamped in the change's
    transaction): a projection keeps what the highest version says, whatever order the
    events arrive in. Optional: an event queued before accounts stamped versions has none
    (a consumer applies it only over a snapshot no versioned event has written)."""
    return fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1))


class CompanyChanged(EventSchema):
    company_id = fields.UUID(required=True)
    name = fields.String(required=True)
    apelido = fields.String(required=True)
    version = snapshot_version()


class UserChanged(EventSchema):
    user_id = fields.UUID(required=True)
    email = fields.String(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    company_id = fields.UUID(allow_none=True, required=True)
    version = snapshot_version()


class UserMerged(EventSchema):
    from_user_id = fields.UUID(required=True)
    into_user_id = fields.UUID(required=True)


class TicketCreated(EventSchema):
    ticket_id = fields.UUID(required=True)
    reference = fields.Integer(required=True)
    subject = fields.String(required=True)
    status = fields.String(required=True)
    priority = fields.String(required=True)
    queue_id = fields.UUID(required=True)
    requester_id = fields.UUID(allow_none=True, required=True)
    company_id = fields.UUID(allow_none=True, required=True)
    machine_id = fields.UUID(allow_none=True, required=True)


class TicketUpdated(EventSchema):
    ticket_id = fields.UUID(required=True)
    changed = fields.List(fields.String(), required=True)


def optional(field_class):
    """A field added to an event after events without it were queued: absent means None.
    The ticket context on tickets' events (reference, subject, requester, assignee, text)
    lets a consumer tell people about a ticket without asking tickets (notifications)."""
    return field_class(load_default=None, allow_none=True)


class TicketAssigned(EventSchema):
    ticket_id = fields.UUID(required=True)
    assignee_id = fields.UUID(allow_none=True, required=True)
    actor_id = fields.UUID(allow_none=True, required=True)
    reference = optional(fields.Integer)
    subject = optional(fields.String)


class TicketStatusChanged(EventSchema):
    ticket_id = fields.UUID(required=True)
    from_status = fields.String(required=True)
    to_status = fields.String(required=True)
    reason = fields.String(allow_none=True, required=True)
    actor_id = fields.UUID(allow_none=True, required=True)
    message = optional(fields.String)  # a resolve's closing message
    reference = optional(fields.Integer)
    subject = optional(fields.String)
    requester_id = optional(fields.UUID)
    assignee_id = optional(fields.UUID)


class CommentAdded(EventSchema):
    ticket_id = fields.UUID(required=True)
    comment_id = fields.UUID(required=True)
    author_id = fields.UUID(required=True)
    visibility = fields.String(required=True)
    body = optional(fields.String)
    reference = optional(fields.Integer)
    subject = optional(fields.String)
    requester_id = optional(fields.UUID)
    assignee_id = optional(fields.UUID)


class ChatChanged(EventSchema):
    ticket_id = fields.UUID(required=True)
    chat_id = fields.UUID(required=True)
    reason = fields.String(allow_none=True, required=True)


class MachineRegistered(EventSchema):
    machine_id = fields.UUID(required=True)
    company_id = fields.UUID(required=True)
    hostname = fields.String(required=True)
    reused = fields.Boolean(required=True)


class MachineStatusChanged(EventSchema):
    machine_id = fields.UUID(required=True)
    company_id = fields.UUID(required=True)


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
    "tickets": {
        "ticket_created": TicketCreated,
        "ticket_updated": TicketUpdated,
        "ticket_assigned": TicketAssigned,
        "ticket_status_changed": TicketStatusChanged,
        "comment_added": CommentAdded,
        "chat_started": ChatChanged,
        "chat_ended": ChatChanged,
    },
    "devices": {
        "machine_registered": MachineRegistered,
        "machine_online": MachineStatusChanged,
        "machine_offline": MachineStatusChanged,
    },
}


_SCHEMAS: dict[tuple[str, str], object] = {}  # one instance per contract: building one cost a
# quarter of validating an event (marshmallow copies every field)


def validate_event(source: str, event_type: str, payload: dict) -> dict:
    """The JSON-ready message for an event, or ValueError if it breaks its contract."""
    schema = _SCHEMAS.get((source, event_type))
    if schema is None:
        try:
            schema = _SCHEMAS[(source, event_type)] = CONTRACTS[source][event_type]()
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


# Who consumes what: (consumer service, source service, event type, handler method).
# `chamados migrate` declares these queues before anything publishes (pitfall 9); a test
# checks that every @subscribe handler in the services is listed here and vice versa.
SUBSCRIPTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("tickets", "accounts", "tenant_created", "on_tenant_created"),
    ("tickets", "accounts", "company_created", "on_company_created"),
    ("tickets", "accounts", "company_updated", "on_company_updated"),
    ("tickets", "accounts", "user_created", "on_user_created"),
    ("tickets", "accounts", "user_updated", "on_user_updated"),
    ("tickets", "accounts", "user_merged", "on_user_merged"),
    ("devices", "accounts", "user_updated", "on_user_updated"),
    ("devices", "accounts", "user_merged", "on_user_merged"),
    ("notifications", "tickets", "ticket_created", "on_ticket_created"),
    ("notifications", "tickets", "ticket_assigned", "on_ticket_assigned"),
    ("notifications", "tickets", "comment_added", "on_comment_added"),
    ("notifications", "tickets", "ticket_status_changed", "on_ticket_status_changed"),
    ("notifications", "accounts", "user_created", "on_user_created"),
    ("notifications", "accounts", "user_updated", "on_user_updated"),
    ("notifications", "accounts", "user_merged", "on_user_merged"),
)
