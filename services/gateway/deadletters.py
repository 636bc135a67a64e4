"""`/api/admin/dead-letters`: the dead-letter queue for a tenant's admins (docs/API.md,
"Dead letters"). The gateway's Service inherits `DeadLetterRoutes`; the work is
common/deadletters.py's, over the gateway's own broker connection settings.

Tenancy: the queue is shared by every tenant. A parked message whose body is a JSON object
with a `tenant_id` (every event has one) is visible to — listed, shown, replayed, purged
by — that tenant's admins only; any other message (a heartbeat, a body that is not JSON)
belongs to no tenant and is left to operators (`chamados dlq`, with broker credentials).
A message of another tenant looks exactly like an unknown one (404).
"""
from __future__ import annotations

import logging

from marshmallow import ValidationError, fields, validate, validates_schema

from common import deadletters
from common.contracts import StrictSchema, load
from common.errors import NotFound, ServiceUnavailable
from services.gateway.http import route

log = logging.getLogger(__name__)

ADMIN = frozenset({"admin"})
LETTER_ID = validate.Regexp(r"^[0-9a-fA-F]{32}$", error="a dead-letter id is 32 hex digits")


class DeadLetterQuery(StrictSchema):
    queue = fields.String(load_default=None, validate=validate.Length(min=1, max=255),
                          metadata={"description": "the original queue, exactly"})
    reason = fields.String(load_default=None, validate=validate.Length(min=1, max=200),
                           metadata={"description": "text the reason contains (any case)"})
    limit = fields.Integer(load_default=deadletters.DEFAULT_LIST_LIMIT,
                           validate=validate.Range(min=1, max=1000))


class DeadLetterSelection(StrictSchema):
    """Which of the tenant's parked messages: `ids`; or `queue` and/or `reason`; or
    `all: true` (an empty selection is never read as everything)."""

    ids = fields.List(fields.String(validate=LETTER_ID), validate=validate.Length(min=1, max=1000))
    queue = fields.String(validate=validate.Length(min=1, max=255))
    reason = fields.String(validate=validate.Length(min=1, max=200))
    all = fields.Boolean(load_default=False)

    @validates_schema
    def one_selection(self, data, **kwargs):
        filtered = bool(data.get("queue") or data.get("reason"))
        if data.get("ids") and (filtered or data.get("all")):
            raise ValidationError("give ids, or a queue/reason filter, or all — not together", "ids")
        if data.get("all") and filtered:
            raise ValidationError("all takes no queue or reason filter", "all")
        if not (data.get("ids") or filtered or data.get("all")):
            raise ValidationError("say which messages: ids, a queue and/or a reason, or all: true", "all")


class DeadLetter(StrictSchema):
    id = fields.String(required=True, metadata={"description": "x-dead-letter-id (32 hex digits)"})
    queue = fields.String(required=True, allow_none=True, metadata={"description": "the original queue"})
    reason = fields.String(required=True)
    attempts = fields.Integer(required=True, allow_none=True)
    dead_lettered_at = fields.String(required=True, allow_none=True)
    tenant_id = fields.String(required=True, allow_none=True)
    body_bytes = fields.Integer(required=True)
    content_type = fields.String(required=True, allow_none=True)
    message_id = fields.String(required=True, allow_none=True)


class DeadLetterList(StrictSchema):
    items = fields.List(fields.Nested(DeadLetter), required=True)
    matched = fields.Integer(required=True, metadata={"description": "how many matched in all"})
    scanned = fields.Integer(required=True, metadata={"description": "messages read (bounded)"})
    queue_depth = fields.Integer(required=True, metadata={"description": "every tenant's, and tenant-less ones"})
    complete = fields.Boolean(required=True, metadata={"description": "false: the scan stopped at its bound"})


class DeadLetterDetail(DeadLetter):
    headers = fields.Dict(required=True)
    properties = fields.Dict(required=True)
    body = fields.String(required=True, metadata={"description": "JSON text, or base64 when the body is not UTF-8 JSON"})
    body_encoding = fields.String(required=True, metadata={"enum": ["json", "base64"]})
    body_truncated = fields.Boolean(required=True)


class DeadLetterFailure(StrictSchema):
    id = fields.String(required=True)
    queue = fields.String(required=True, allow_none=True)
    error = fields.String(required=True)


class DeadLetterOutcome(StrictSchema):
    action = fields.String(required=True, metadata={"enum": ["replayed", "purged"]})
    matched = fields.Integer(required=True)
    replayed = fields.List(fields.String(), metadata={"description": "replay: ids confirmed on their queue"})
    purged = fields.List(fields.String(), metadata={"description": "purge: ids dropped"})
    failed = fields.List(fields.Nested(DeadLetterFailure), required=True,
                         metadata={"description": "still parked, with why (a queue that does not exist…)"})
    not_found = fields.List(fields.String(), required=True)
    scanned = fields.Integer(required=True)
    queue_depth = fields.Integer(required=True)
    complete = fields.Boolean(required=True)


def tenant_filter(principal: dict):
    """What this admin may see: messages whose JSON body names their tenant."""
    tenant_id = str(principal["tenant_id"]).lower()
    return lambda letter: letter.tenant_id == tenant_id


def broker_down(exc: Exception) -> ServiceUnavailable:
    log.warning("dead letters: %s", exc)
    return ServiceUnavailable("the message broker is unreachable; try again later",
                              details={"dependency": "broker"})


class DeadLetterRoutes:
    """Mixed into the gateway's Service (which provides `settings`)."""

    @route("GET", "/api/admin/dead-letters",
           summary="The tenant's parked messages, oldest first (none is taken off the queue)",
           tag="operations", roles=ADMIN, query=DeadLetterQuery, response=DeadLetterList)
    def list_dead_letters(self, principal, query):
        wanted = load(DeadLetterQuery, query)
        try:
            listing = deadletters.list_letters(self.settings.amqp_uri, queue=wanted["queue"],
                                               reason=wanted["reason"], limit=wanted["limit"],
                                               visible=tenant_filter(principal))
        except deadletters.BrokerUnavailable as exc:
            raise broker_down(exc) from None
        return listing.as_dict()

    @route("GET", "/api/admin/dead-letters/<letter_id>",
           summary="One parked message of the tenant: headers, properties, body",
           tag="operations", roles=ADMIN, response=DeadLetterDetail)
    def get_dead_letter(self, principal, letter_id):
        letter = None
        if deadletters.normalize_id(letter_id) is not None:
            try:
                letter = deadletters.get_letter(self.settings.amqp_uri, letter_id,
                                                visible=tenant_filter(principal))
            except deadletters.BrokerUnavailable as exc:
                raise broker_down(exc) from None
        if letter is None:
            raise NotFound("dead letter not found", code="dead_letter_not_found")
        return letter.detail()

    @route("POST", "/api/admin/dead-letters/replay",
           summary="Put parked messages of the tenant back on their original queues",
           tag="operations", roles=ADMIN, body=DeadLetterSelection, response=DeadLetterOutcome)
    def replay_dead_letters(self, principal, body):
        return self._settle_dead_letters(principal, body, deadletters.replay)

    @route("POST", "/api/admin/dead-letters/purge",
           summary="Drop parked messages of the tenant for good",
           tag="operations", roles=ADMIN, body=DeadLetterSelection, response=DeadLetterOutcome)
    def purge_dead_letters(self, principal, body):
        return self._settle_dead_letters(principal, body, deadletters.purge)

    def _settle_dead_letters(self, principal, body, action):
        chosen = load(DeadLetterSelection, body)
        selection = deadletters.Selection.of(chosen.get("ids"), chosen.get("queue"),
                                             chosen.get("reason"), chosen["all"])
        try:
            outcome = action(self.settings.amqp_uri, selection, visible=tenant_filter(principal))
        except deadletters.BrokerUnavailable as exc:
            raise broker_down(exc) from None
        log.info("dead letters %s by %s: %d done, %d failed", outcome.action, principal["user_id"],
                 len(outcome.done), len(outcome.failed))
        return outcome.as_dict()
