"""Contract of the accounts service (RPC `accounts`)."""
from marshmallow import fields, validate

from common.actor import STAFF_ROLES  # noqa: F401  (one definition, beside Actor)
from common.contracts import PageQuery, StrictSchema, trimmed
from common.vocabulary import PROVISIONING_ROLES, ROLES  # noqa: F401  (the contract's names)

ROLE = validate.OneOf(ROLES)


class SignIn(StrictSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, validate=validate.Length(min=1, max=256))
    tenant = fields.String(load_default=None, validate=validate.Length(max=63),
                           metadata={"description": "tenant slug, when the email exists in several"})


class CompanyCreate(StrictSchema):
    name = trimmed(200, required=True)
    apelido = trimmed(63, required=True)


class CompanyUpdate(StrictSchema):
    name = trimmed(200)
    apelido = trimmed(63)


class CompanyQuery(StrictSchema):
    q = fields.String(load_default=None, validate=validate.Length(max=200))


class Company(StrictSchema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)
    apelido = fields.String(required=True)
    provisioning_code = fields.String(required=True, allow_none=True, metadata={
        "description": "null for a role that may not see it (admin and manager may)"})
    version = fields.Integer(required=True, metadata={"description": "grows with every change"})
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)


class CompanyList(StrictSchema):
    items = fields.List(fields.Nested(Company), required=True)


class ProvisioningCode(StrictSchema):
    company_id = fields.UUID(required=True)
    provisioning_code = fields.String(required=True)


class UserCreate(StrictSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    name = trimmed(200, required=True)
    role = fields.String(required=True, validate=ROLE)
    company_id = fields.UUID(load_default=None, allow_none=True)
    password = fields.String(load_default=None, allow_none=True,
                             validate=validate.Length(max=256))


class UserUpdate(StrictSchema):
    email = fields.Email(validate=validate.Length(max=254))
    name = trimmed(200)
    role = fields.String(validate=ROLE)
    company_id = fields.UUID(allow_none=True)
    password = fields.String(validate=validate.Length(max=256))


class PasswordChange(StrictSchema):
    """A signed-in person's own password (`POST /api/me/password`)."""

    current_password = fields.String(required=True, validate=validate.Length(min=1, max=256))
    new_password = fields.String(required=True, validate=validate.Length(max=256),
                                 metadata={"description": "8-256 characters"})


class UserQuery(PageQuery):
    type = fields.String(load_default="all", validate=validate.OneOf(["all", "people", "machines"]))
    q = fields.String(load_default=None, validate=validate.Length(max=200))
    company_id = fields.UUID(load_default=None)


class User(StrictSchema):
    id = fields.UUID(required=True)
    tenant_id = fields.UUID(required=True)
    email = fields.String(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True)
    company_id = fields.UUID(allow_none=True)
    has_password = fields.Boolean(required=True)
    merged_into_id = fields.UUID(allow_none=True)
    version = fields.Integer(required=True, metadata={
        "description": "grows with every change of email, name, role or company"})
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)


class UserList(StrictSchema):
    items = fields.List(fields.Nested(User), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class UserMerge(StrictSchema):
    from_user_id = fields.UUID(required=True)
    into_user_id = fields.UUID(required=True)


class MergeResult(StrictSchema):
    from_ = fields.Nested(User, required=True, data_key="from")
    into = fields.Nested(User, required=True)


class Session(StrictSchema):
    token = fields.String(required=True)
    expires_at = fields.AwareDateTime(required=True)
    user = fields.Nested(User, required=True)


class Principal(StrictSchema):
    """Who a bearer token belongs to, as `authenticate` answers the gateway."""

    user_id = fields.UUID(required=True)
    tenant_id = fields.UUID(required=True)
    role = fields.String(required=True)
    session_id = fields.UUID(required=True)
