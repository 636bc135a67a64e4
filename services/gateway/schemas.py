"""Shapes the gateway answers itself (errors, readiness); the rest are the services'
contracts in common/contracts."""
from marshmallow import fields

from common.contracts import StrictSchema


class ErrorDetail(StrictSchema):
    code = fields.String(required=True, metadata={"description": "stable machine code"})
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class Error(StrictSchema):
    error = fields.Nested(ErrorDetail, required=True)


class Readiness(StrictSchema):
    status = fields.String(required=True, metadata={"enum": ["ready", "not_ready"]})
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class HealthSnapshot(StrictSchema):
    scope = fields.String(required=True, metadata={"description": "tenant (staff) or all (internal token)"})
    tickets = fields.Dict(required=True)
    registrations = fields.Dict(required=True)
    heartbeats = fields.Dict(required=True)
    retention = fields.Dict(required=True)
    jobs = fields.List(fields.Dict(), required=True)
