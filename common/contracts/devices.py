"""Contract of the devices service (RPC `devices`) and of the heartbeat on the bus.

Agents publish heartbeats as JSON to exchange `devices.heartbeats` (durable, direct, routing
key `heartbeat`), persistent, with publisher confirms, a `message_id`, and the machine token
in the header `authorization`. The gateway's HTTP heartbeat route publishes the same.
"""
from datetime import datetime, timedelta, timezone

from marshmallow import ValidationError, fields, validate, validates, validates_schema

from common.contracts import PageQuery, StrictSchema, extent_problem, trimmed

HEARTBEAT_EXCHANGE = "devices.heartbeats"
HEARTBEAT_QUEUE = "devices.heartbeats"
HEARTBEAT_ROUTING_KEY = "heartbeat"
HEARTBEAT_MAX_BYTES = 1_048_576
# an inventory is hardware, OS, disks, network and software lists: a few levels deep and a
# few thousand values; these bounds leave room and keep every walk of it cheap and safe
INVENTORY_MAX_DEPTH = 16
INVENTORY_MAX_VALUES = 50_000
# a heartbeat stamped further ahead than this is refused: the agent's clock is wrong, and
# its current state must not be taken from the future (late heartbeats are fine)
HEARTBEAT_MAX_AHEAD = timedelta(minutes=10)
USB_MODES = ("ALLOW", "BLOCK", "READ_ONLY")
PERSONAS = ("collaborator", "manager")
MACHINE_STATUSES = ("online", "stale", "offline")
SHA256_HEX = validate.Regexp(r"^[0-9a-f]{64}$", error="a lower-case SHA-256 hex digest")
PERCENT = validate.Range(min=0, max=100)


class DiskUsage(StrictSchema):
    mount = fields.String(required=True, validate=validate.Length(min=1, max=256))
    percent = fields.Float(required=True, validate=PERCENT)


class Metrics(StrictSchema):
    cpu_percent = fields.Float(load_default=None, allow_none=True, validate=PERCENT)
    memory_percent = fields.Float(load_default=None, allow_none=True, validate=PERCENT)
    disks = fields.List(fields.Nested(DiskUsage), load_default=list, validate=validate.Length(max=64))
    uptime_seconds = fields.Integer(load_default=None, allow_none=True,
                                    validate=validate.Range(min=0))


class UsbPolicyAck(StrictSchema):
    mode = fields.String(required=True, validate=validate.OneOf(USB_MODES))


def inventory_extent(inventory: dict) -> None:
    problem = extent_problem(inventory, INVENTORY_MAX_DEPTH, INVENTORY_MAX_VALUES)
    if problem:
        raise ValidationError(f"the inventory is {problem}")


class Heartbeat(StrictSchema):
    sent_at = fields.AwareDateTime(required=True)
    metrics = fields.Nested(Metrics, load_default=dict)
    inventory = fields.Dict(load_default=None, allow_none=True, validate=inventory_extent)
    inventory_hash = fields.String(load_default=None, allow_none=True, validate=SHA256_HEX)
    usb_policy_ack = fields.Nested(UsbPolicyAck, load_default=None, allow_none=True)

    @validates("sent_at")
    def not_ahead(self, value: datetime, **kwargs):
        ahead = value - datetime.now(timezone.utc)
        if ahead > HEARTBEAT_MAX_AHEAD:
            raise ValidationError(f"sent_at is {int(ahead.total_seconds())} s in the future "
                                  f"(at most {int(HEARTBEAT_MAX_AHEAD.total_seconds())} s): "
                                  "set the machine's clock")

    @validates_schema
    def inventory_or_hash(self, data, **kwargs):
        if data.get("inventory") is None and data.get("inventory_hash") is None:
            raise ValidationError("send the inventory or its hash", "inventory_hash")


class HeartbeatAnswer(StrictSchema):
    need_inventory = fields.Boolean(required=True)
    usb_policy = fields.String(allow_none=True, required=True,
                               metadata={"description": "a USB mode waiting for the agent to apply it"})
    error = fields.String(allow_none=True, metadata={
        "description": "AMQP replies only: `invalid_token` when the heartbeat was refused"})
    message = fields.String(allow_none=True)


class OperatingSystem(StrictSchema):
    name = trimmed(100, required=True)
    version = fields.String(load_default="", validate=validate.Length(max=100))
    build = fields.String(load_default="", validate=validate.Length(max=100))
    arch = fields.String(load_default="", validate=validate.Length(max=32))


class Collaborator(StrictSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    name = trimmed(200, required=True)


class Registration(StrictSchema):
    provisioning_code = fields.String(required=True, validate=validate.Length(min=1, max=128))
    hostname = trimmed(255, required=True)
    os = fields.Nested(OperatingSystem, required=True)
    mac_addresses = fields.List(fields.String(validate=validate.Length(max=64)), load_default=list,
                                validate=validate.Length(max=64))
    serial_numbers = fields.List(fields.String(validate=validate.Length(max=128)), load_default=list,
                                 validate=validate.Length(max=32))
    collaborator = fields.Nested(Collaborator, required=True)
    access_role = fields.String(load_default="collaborator", validate=validate.OneOf(PERSONAS))


class Enrolment(StrictSchema):
    machine_id = fields.UUID(required=True)
    token = fields.String(required=True)
    expires_at = fields.AwareDateTime(required=True)
    reused = fields.Boolean(required=True)


class MachineQuery(PageQuery):
    company_id = fields.UUID(load_default=None)
    q = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    status = fields.String(load_default=None, validate=validate.OneOf(MACHINE_STATUSES))


class UserRef(StrictSchema):
    id = fields.UUID(required=True)
    email = fields.String(allow_none=True)
    name = fields.String(allow_none=True)


class Alert(StrictSchema):
    id = fields.UUID(required=True)
    kind = fields.String(required=True)
    opened_at = fields.AwareDateTime(required=True)
    details = fields.Dict(required=True)


class UsbPolicy(StrictSchema):
    mode = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["PENDING", "APPLIED", "STALE"]})
    requested_at = fields.AwareDateTime(required=True)
    applied_at = fields.AwareDateTime(allow_none=True)


class MachineSummary(StrictSchema):
    id = fields.UUID(required=True)
    company_id = fields.UUID(required=True)
    hostname = fields.String(required=True)
    os_label = fields.String(required=True)
    status = fields.String(required=True)
    last_seen_at = fields.AwareDateTime(allow_none=True)
    assigned_user = fields.Nested(UserRef, allow_none=True)


class Machine(MachineSummary):
    os = fields.Dict(required=True)
    persona = fields.String(required=True)
    machine_user_id = fields.UUID(required=True)
    linked_users = fields.List(fields.Nested(UserRef), required=True)
    health_bucket = fields.String(required=True)
    last_metrics = fields.Dict(allow_none=True)
    inventory_hash = fields.String(allow_none=True)
    open_alerts = fields.List(fields.Nested(Alert), required=True)
    usb_policy = fields.Nested(UsbPolicy, allow_none=True)
    created_at = fields.AwareDateTime(required=True)


class MachineList(StrictSchema):
    items = fields.List(fields.Nested(MachineSummary), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class InventoryVersion(StrictSchema):
    id = fields.Integer(required=True)
    from_hash = fields.String(allow_none=True)
    to_hash = fields.String(required=True)
    created_at = fields.AwareDateTime(required=True)
    size_bytes = fields.Integer(required=True)
    changes = fields.Dict(required=True)


class InventoryVersions(StrictSchema):
    items = fields.List(fields.Nested(InventoryVersion), required=True)


class Access(StrictSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    name = trimmed(200, load_default=None)
    persona = fields.String(required=True, validate=validate.OneOf(PERSONAS))


class UsbPolicyRequest(StrictSchema):
    mode = fields.String(required=True, validate=validate.OneOf(USB_MODES))


class LinkCreate(StrictSchema):
    machine_id = fields.UUID(required=True)
    email = fields.Email(required=True, validate=validate.Length(max=254))


class LinkQuery(StrictSchema):
    machine_id = fields.UUID(required=True)
    user_id = fields.UUID(required=True)
