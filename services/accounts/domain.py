"""Accounts rules, as plain Python: no nameko, SQLAlchemy, kombu or werkzeug here."""
from __future__ import annotations

import re
import secrets
from collections.abc import Mapping

from common.actor import Actor  # noqa: F401  (domain.Actor: one definition, shared with tickets)
from common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from common.vocabulary import ROLES

PEOPLE_ROLES = frozenset(ROLES) - {"machine"}
USER_TYPES = {"all": frozenset(ROLES), "people": PEOPLE_ROLES, "machines": frozenset({"machine"})}

APELIDO_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
APELIDO_MAX = 63
PASSWORD_MIN, PASSWORD_MAX = 8, 256  # the upper bound keeps argon2 from hashing megabytes
DEFAULT_TENANT_SLUG = "default"


def normalize_email(email: str) -> str:
    """Emails are unique per tenant regardless of case; the stored form keeps the case given."""
    return email.strip().lower()


def normalize_apelido(apelido: str) -> str:
    """A company's short name: lower-case letters, digits and single inner hyphens."""
    value = apelido.strip().lower()
    if not value or len(value) > APELIDO_MAX or not APELIDO_PATTERN.match(value):
        raise ValidationFailed(
            "apelido must be 1-63 lower-case letters, digits or single inner hyphens",
            details={"fields": {"apelido": ["must look like 'empresa-x' (a-z, 0-9, '-')"]}},
        )
    return value


def check_password(password: str, field: str = "password") -> None:
    """The one rule for every password a person sets (`field`: the body's name for it)."""
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise ValidationFailed(
            "password too short or too long",
            details={"fields": {field: [f"must be {PASSWORD_MIN}-{PASSWORD_MAX} characters"]}},
        )


# What other services keep of a user (tickets' requester/assignee snapshots, devices'
# people): the fields of `user_updated`. A password is none of them.
SNAPSHOT_FIELDS = ("email", "name", "role", "company_id")


def user_changes(current: Mapping, requested: Mapping) -> dict:
    """The snapshot fields a user update really changes: field -> the value to store, for
    each requested field whose value (as it would be stored: names and emails trimmed)
    differs from the current one. Decided from the loaded values before anything is
    written, so no flush can hide a change (ENGINEERING.md pitfall 18); an email changed
    only in case is a change (the stored form keeps the case given)."""
    wanted = {field: requested[field] for field in SNAPSHOT_FIELDS if field in requested}
    for field in ("email", "name"):
        if field in wanted:
            wanted[field] = wanted[field].strip()
    return {field: value for field, value in wanted.items() if current[field] != value}


def company_changes(current: Mapping, requested: Mapping) -> dict:
    """What a company update really changes (name, apelido): field -> the value to store,
    for each requested field whose value as it would be stored (the name trimmed, the
    apelido normalised) differs from the current one."""
    wanted = {}
    if "name" in requested:
        wanted["name"] = requested["name"].strip()
    if "apelido" in requested:
        wanted["apelido"] = normalize_apelido(requested["apelido"])
    return {field: value for field, value in wanted.items() if current[field] != value}


def new_provisioning_code() -> str:
    """What an installer types into the agent to enrol a machine in a company."""
    return secrets.token_hex(16)


def check_can_manage_user(actor: Actor, current_role: str | None, new_role: str | None) -> None:
    """Admins manage everyone; managers manage every user but admins (and cannot make
    one). Machine users belong to the devices service and are never created or promoted
    here."""
    if new_role == "machine" and current_role != "machine":
        raise ValidationFailed(
            "machine users are created by device registration",
            details={"fields": {"role": ["cannot be set to 'machine'"]}},
        )
    if current_role == "machine" and new_role not in (None, "machine"):
        raise Conflict("a machine user cannot become a person", code="role_change_not_allowed")
    if actor.is_admin:
        return
    if actor.role != "manager":
        raise Forbidden("only admins and managers manage users", code="forbidden_role")
    if "admin" in (current_role, new_role):
        raise Forbidden("only an admin may create, change or promote an admin",
                        code="forbidden_role")


def check_merge(actor: Actor, source, target) -> None:
    """`source` is merged into `target`; `source` becomes a tombstone."""
    if source.id == target.id:
        raise Conflict("cannot merge a user into itself", code="merge_not_allowed")
    for user in (source, target):
        if user.merged_into_id is not None:
            raise Conflict(f"user {user.id} was already merged", code="user_already_merged",
                           details={"user_id": str(user.id)})
    if (source.role == "machine") != (target.role == "machine"):
        raise Conflict("cannot merge a machine user with a person", code="merge_not_allowed")
    if source.id == actor.user_id:
        raise Conflict("you cannot merge your own account away", code="merge_not_allowed")
    if "admin" in (source.role, target.role) and not actor.is_admin:
        raise Forbidden("only an admin may merge an admin", code="forbidden_role")


def account_to_recover(candidates: list, email: str, tenant_slug: str | None):
    """The one (user, tenant slug) an operator's password reset is for: `candidates` are the
    live people with this email (in the tenant named, when one is). An email found in
    several tenants needs the tenant named: a reset must never guess whose password it is."""
    where = f" in tenant {tenant_slug!r}" if tenant_slug else ""
    if not candidates:
        raise NotFound(f"no person with the email {email}{where}", code="user_not_found")
    if len(candidates) > 1:
        slugs = sorted(slug for _, slug in candidates)
        raise Conflict(f"{email} is a person in several tenants ({', '.join(slugs)}): name the tenant",
                       code="email_in_several_tenants", details={"tenants": slugs})
    return candidates[0]
