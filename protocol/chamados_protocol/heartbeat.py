"""The heartbeat on the bus and the registration over HTTP: what agents send and what the
server answers, as marshmallow schemas. The agent validates what it sends with them, the
devices service and the gateway load what they receive with them.

Agents publish heartbeats as JSON to exchange `devices.heartbeats` (durable, direct, routing
key `heartbeat`), persistent, with publisher confirms, a `message_id`, and the machine token
in the header `authorization`. The gateway's HTTP heartbeat route publishes the same.
"""
import re
from datetime import datetime, timedelta, timezone

from marshmallow import ValidationError, fields, validate, validates, validates_schema

from chamados_protocol.schema import StrictSchema, extent_problem, trimmed

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
# and one older than this: its hour is past the metrics' retention (the devices service keeps
# 90 days), so nothing of it could be kept — and a year-1 date is a broken clock, not a replay
HEARTBEAT_MAX_AGE = timedelta(days=90)
USB_MODES = ("ALLOW", "BLOCK", "READ_ONLY")
# what an agent may say it does beyond heartbeats; a name the server does not know yet (a newer
# agent's) is accepted and ignored
AGENT_CAPABILITIES = ("usb_policy",)
# the end of the text written so that JSON Schema's (ECMA-262) regexes read it too: `\Z` is
# Python's only, and `$` would let a trailing newline through in Python (the pattern is
# published in /api/openapi.json)
CAPABILITY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}(?![\s\S])")
PERSONAS = ("collaborator", "manager")
SHA256_HEX = validate.Regexp(r"^[0-9a-f]{64}$", error="a lower-case SHA-256 hex digest")
PERCENT = validate.Range(min=0, max=100)
MOUNT_MAX_LENGTH, DISKS_MAX = 256, 64


class DiskUsage(StrictSchema):
    mount = fields.String(required=True, validate=validate.Length(min=1, max=MOUNT_MAX_LENGTH))
    percent = fields.Float(required=True, validate=PERCENT)


class Metrics(StrictSchema):
    cpu_percent = fields.Float(load_default=None, allow_none=True, validate=PERCENT)
    memory_percent = fields.Float(load_default=None, allow_none=True, validate=PERCENT)
    disks = fields.List(fields.Nested(DiskUsage), load_default=list, validate=validate.Length(max=DISKS_MAX))
    uptime_seconds = fields.Integer(load_default=None, allow_none=True,
                                    validate=validate.Range(min=0))


class UsbPolicyAck(StrictSchema):
    mode = fields.String(required=True, validate=validate.OneOf(USB_MODES))


def inventory_extent(inventory: dict) -> None:
    problem = extent_problem(inventory, INVENTORY_MAX_DEPTH, INVENTORY_MAX_VALUES)
    if problem:
        raise ValidationError(f"the inventory is {problem}")


def sent_at_problem(sent_at: datetime, now: datetime) -> str | None:
    """Why a heartbeat's `sent_at` cannot be true, or None."""
    ahead = sent_at - now
    if ahead > HEARTBEAT_MAX_AHEAD:
        return (f"sent_at is {int(ahead.total_seconds())} s in the future "
                f"(at most {int(HEARTBEAT_MAX_AHEAD.total_seconds())} s): set the machine's clock")
    if -ahead > HEARTBEAT_MAX_AGE:
        return (f"sent_at is {(-ahead).days} days old (at most {HEARTBEAT_MAX_AGE.days}, the metrics' "
                "retention): set the machine's clock")
    return None


def registration_problem(sent_at: datetime, registered_at: datetime) -> str | None:
    """Why a heartbeat cannot be its machine's: it says it was sent before the machine was
    registered (beyond the clock skew allowed ahead), or None."""
    if sent_at >= registered_at - HEARTBEAT_MAX_AHEAD:
        return None
    return (f"sent_at {sent_at.isoformat()} is before the machine was registered "
            f"({registered_at.isoformat()}): set the machine's clock")


class Heartbeat(StrictSchema):
    sent_at = fields.AwareDateTime(required=True)
    metrics = fields.Nested(Metrics, load_default=dict)
    inventory = fields.Dict(load_default=None, allow_none=True, validate=inventory_extent)
    inventory_hash = fields.String(load_default=None, allow_none=True, validate=SHA256_HEX)
    usb_policy_ack = fields.Nested(UsbPolicyAck, load_default=None, allow_none=True)

    @validates("sent_at")
    def plausible(self, value: datetime, **kwargs):
        problem = sent_at_problem(value, datetime.now(timezone.utc))
        if problem:
            raise ValidationError(problem)

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
    capabilities = fields.List(
        fields.String(validate=validate.Regexp(CAPABILITY_NAME, error="a capability is a short snake_case name")),
        load_default=list, validate=validate.Length(max=16), metadata={
            "description": "what the agent does beyond heartbeats: `usb_policy` if it applies USB policies "
                           "(the agent shipped here does not); unknown names are ignored"})


class Enrolment(StrictSchema):
    machine_id = fields.UUID(required=True)
    token = fields.String(required=True)
    expires_at = fields.AwareDateTime(required=True)
    reused = fields.Boolean(required=True)
    inventory_hash = fields.String(load_default=None, allow_none=True, metadata={
        "description": "a recognised machine's current inventory hash on the server (null when it has "
                       "none): an agent whose inventory still has this hash need not send it again"})
    amqp_uri = fields.String(load_default=None, allow_none=True, metadata={
        "description": "the broker URI agents publish heartbeats with (AGENT_AMQP_URI: a user that may "
                       "only publish heartbeats and read its own answers); null: use HTTP"})


# --- the heartbeat's hot path ---------------------------------------------------------------
# Thousands of heartbeats a second go through here; marshmallow builds and validates nested
# objects one field at a time (25 disks cost more than everything else the consumer does).
# `load_heartbeat` takes the common, well-formed shape directly and hands anything else to
# the schema, which stays the single definition (and gives the error messages): a property
# test keeps the two equal (tests/unit/test_heartbeat_fast_path.py).

HEARTBEAT_SCHEMA = Heartbeat()
_ISO_AWARE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_METRIC_KEYS = frozenset(("cpu_percent", "memory_percent", "disks", "uptime_seconds"))
_HEARTBEAT_KEYS = frozenset(("sent_at", "metrics", "inventory", "inventory_hash", "usb_policy_ack"))


class _Unusual(Exception):
    """Not the common shape: the schema decides."""


def _percent(value, allow_none=True):
    if value is None and allow_none:
        return None
    if type(value) not in (int, float) or not PERCENT.min <= value <= PERCENT.max:
        raise _Unusual
    return float(value)


def _fast_metrics(metrics) -> dict:
    if type(metrics) is not dict or not metrics.keys() <= _METRIC_KEYS:
        raise _Unusual
    disks = metrics.get("disks", [])
    if type(disks) is not list or len(disks) > DISKS_MAX:
        raise _Unusual
    loaded_disks = []
    for disk in disks:
        if type(disk) is not dict or len(disk) != 2:
            raise _Unusual
        mount = disk.get("mount")
        if type(mount) is not str or not 1 <= len(mount) <= MOUNT_MAX_LENGTH:
            raise _Unusual
        loaded_disks.append({"mount": mount, "percent": _percent(disk.get("percent"), allow_none=False)})
    uptime = metrics.get("uptime_seconds")
    if uptime is not None and (type(uptime) is not int or uptime < 0):
        raise _Unusual
    return {"cpu_percent": _percent(metrics.get("cpu_percent")),
            "memory_percent": _percent(metrics.get("memory_percent")),
            "disks": loaded_disks, "uptime_seconds": uptime}


def _fast_heartbeat(body: dict) -> dict:
    if not body.keys() <= _HEARTBEAT_KEYS:
        raise _Unusual
    sent_at = body.get("sent_at")
    if type(sent_at) is not str or not _ISO_AWARE.match(sent_at):
        raise _Unusual
    try:
        sent_at = datetime.fromisoformat(sent_at)
    except ValueError:
        raise _Unusual from None
    if sent_at_problem(sent_at, datetime.now(timezone.utc)):
        raise _Unusual
    loaded = {"sent_at": sent_at,
              "metrics": _fast_metrics(body["metrics"]) if "metrics" in body else {}}
    inventory, digest = body.get("inventory"), body.get("inventory_hash")
    if inventory is not None and (type(inventory) is not dict or extent_problem(
            inventory, INVENTORY_MAX_DEPTH, INVENTORY_MAX_VALUES)):
        raise _Unusual
    if digest is not None and (type(digest) is not str or not _SHA256.match(digest)):
        raise _Unusual
    if inventory is None and digest is None:
        raise _Unusual
    ack = body.get("usb_policy_ack")
    if ack is not None and (type(ack) is not dict or ack.keys() != {"mode"} or ack["mode"] not in USB_MODES):
        raise _Unusual
    loaded.update(inventory=dict(inventory) if inventory is not None else None, inventory_hash=digest,
                  usb_policy_ack=dict(ack) if ack is not None else None)
    return loaded


def load_heartbeat(body: dict) -> dict:
    """`Heartbeat().load(body)`, quickly for the usual shape; ValidationError otherwise."""
    try:
        return _fast_heartbeat(body)
    except _Unusual:
        return HEARTBEAT_SCHEMA.load(body)


Heartbeat.fast_load = staticmethod(load_heartbeat)  # the server's `contracts.load` (the gateway) uses it too
