"""Contract of the devices service (RPC `devices`).

The heartbeat on the bus and the registration body are the agents' contract too: they are
defined once in `chamados_protocol.heartbeat` (the package the agent distribution shares with
the server) and named here as well, so the server reads every devices schema from one module.
"""
from marshmallow import fields, validate

from chamados_protocol.heartbeat import (  # noqa: F401  (the agents' part of this contract)
    AGENT_CAPABILITIES, HEARTBEAT_EXCHANGE, HEARTBEAT_MAX_AGE, HEARTBEAT_MAX_AHEAD, HEARTBEAT_MAX_BYTES, HEARTBEAT_QUEUE, HEARTBEAT_ROUTING_KEY,
    HEARTBEAT_SCHEMA, INVENTORY_MAX_VALUES, PERSONAS, USB_MODES, Enrolment, Heartbeat, HeartbeatAnswer,
    Registration, load_heartbeat, registration_problem)
from common.contracts import PageQuery, StrictSchema, trimmed

MACHINE_STATUSES = ("online", "stale", "offline")


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
    usb_policy_supported = fields.Boolean(required=True, metadata={
        "description": "whether the machine's agent said, when it registered, that it applies USB policies; "
                       "a policy for a machine whose agent does not is refused (409 usb_policy_unsupported)"})
    created_at = fields.AwareDateTime(required=True)


class MachineList(StrictSchema):
    items = fields.List(fields.Nested(MachineSummary), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


USER_MACHINE_RELATIONS = ("assigned", "linked")
USER_MACHINES_MAX = 200  # a person uses a handful of machines; the bound keeps the answer small


class UserMachine(MachineSummary):
    relation = fields.String(required=True, validate=validate.OneOf(USER_MACHINE_RELATIONS), metadata={
        "description": "`assigned`: the machine's assigned user; `linked`: one of its linked users"})


class UserMachines(StrictSchema):
    items = fields.List(fields.Nested(UserMachine), required=True,
                        metadata={"description": f"by hostname, at most {USER_MACHINES_MAX}"})


class InventoryChangesQuery(PageQuery):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class InventoryChangeKinds(StrictSchema):
    added = fields.Dict(required=True, metadata={"description": "path -> value"})
    removed = fields.Dict(required=True, metadata={"description": "path -> the value it had"})
    changed = fields.Dict(required=True, metadata={"description": "path -> [old value, new value]"})


class InventoryChange(StrictSchema):
    version = fields.Integer(required=True, metadata={
        "description": "the inventory's version this change produced; 1 is the first inventory"})
    changed_at = fields.AwareDateTime(required=True, metadata={
        "description": "when the agent sent the inventory that showed it (to the second)"})
    initial = fields.Boolean(required=True, metadata={
        "description": "the machine's first inventory: the document itself is the change"})
    changes = fields.Nested(InventoryChangeKinds, required=True, metadata={
        "description": "paths as `chamados_protocol.inventory.flatten` writes them, e.g. "
                       "`software/packages[name=curl,arch=amd64]/version`; empty for the first inventory"})


class InventoryChanges(StrictSchema):
    items = fields.List(fields.Nested(InventoryChange), required=True,
                        metadata={"description": "newest first"})
    next_cursor = fields.String(allow_none=True, required=True)


class SoftwareQuery(PageQuery):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200), metadata={
        "description": "the package's name, exactly as the inventory lists it (e.g. `firefox`)"})
    version = fields.String(load_default=None, validate=validate.Length(min=1, max=200),
                            metadata={"description": "only this version"})
    version_lt = fields.String(load_default=None, validate=validate.Length(min=1, max=200), metadata={
        "description": "only versions older than this one (Debian's order: `1.2.10` > `1.2.9`, "
                       "`1.0~rc1` < `1.0`, an `epoch:` first)"})
    company_id = fields.UUID(load_default=None)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


SOFTWARE_VERSIONS_COUNTED = 100  # the newest matching versions whose machines are counted


class SoftwareVersionCount(StrictSchema):
    version = fields.String(required=True)
    machines = fields.Integer(required=True)


class SoftwareMachine(StrictSchema):
    machine_id = fields.UUID(required=True)
    hostname = fields.String(required=True)
    company_id = fields.UUID(required=True)
    version = fields.String(required=True)


class SoftwareSearch(StrictSchema):
    name = fields.String(required=True)
    versions = fields.List(fields.Nested(SoftwareVersionCount), required=True, metadata={
        "description": "each matching version with how many of the tenant's machines (of the company, "
                       "if given) have it, newest first (the 100 newest); on the first page only (empty "
                       "with a cursor)"})
    items = fields.List(fields.Nested(SoftwareMachine), required=True,
                        metadata={"description": "the machines, by hostname, a page at a time"})
    next_cursor = fields.String(allow_none=True, required=True)


class CurrentInventory(StrictSchema):
    """The machine's current inventory as stored (canonical: volatile fields left out);
    all null until the agent has sent one."""
    hash = fields.String(allow_none=True, required=True)
    version = fields.Integer(allow_none=True, required=True,
                             metadata={"description": "the version of the last change record"})
    updated_at = fields.AwareDateTime(allow_none=True, required=True,
                                      metadata={"description": "when the inventory last changed"})
    document = fields.Dict(allow_none=True, required=True)


METRICS_MAX_HOURS = 168  # a week of hourly points: what a chart on one page can show


class MetricsQuery(StrictSchema):
    hours = fields.Integer(load_default=24, validate=validate.Range(min=1, max=METRICS_MAX_HOURS))


class HourlyMetrics(StrictSchema):
    hour = fields.AwareDateTime(required=True, metadata={"description": "the hour's start (UTC)"})
    samples = fields.Integer(required=True)
    cpu_avg = fields.Float(allow_none=True, required=True)
    cpu_max = fields.Float(allow_none=True, required=True)
    memory_avg = fields.Float(allow_none=True, required=True)
    memory_max = fields.Float(allow_none=True, required=True)
    disk_max = fields.Float(allow_none=True, required=True)


class MachineMetrics(StrictSchema):
    hours = fields.Integer(required=True)
    since = fields.AwareDateTime(required=True, metadata={"description": "the first hour covered"})
    items = fields.List(fields.Nested(HourlyMetrics), required=True,
                        metadata={"description": "hours with heartbeats, oldest first; the "
                                                 "current hour so far included"})


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
