"""accounts' part in provisioning machines: companies' provisioning codes, what a machine's
registration needs of accounts (its company and its person), and machine users."""
from __future__ import annotations

import uuid

from common.contracts import accounts as contract
from common.contracts import load, parse_id
from common.db import utcnow
from common.errors import Conflict, Forbidden, NotFound, Unauthorized
from common.unit_of_work import UnitOfWorkSource
from services.accounts import domain
from services.accounts.directory import company_view
from services.accounts.rows import commit_unique, company_in_tenant, user_event
from services.accounts.storage import User


def check_provisioning_role(actor: domain.Actor) -> None:
    """Enforced here as well as at the gateway's routes: provisioning codes enrol machines."""
    if actor.role not in contract.PROVISIONING_ROLES:
        raise Forbidden("your role may not see or rotate provisioning codes", code="forbidden_role",
                        details={"role": actor.role})


def rotate_provisioning_code(source: UnitOfWorkSource, actor: dict, company_id: str) -> dict:
    """The old code stops enrolling machines at once; enrolled machines keep their tokens."""
    actor = domain.Actor.from_dict(actor)
    check_provisioning_role(actor)
    with source.unit_of_work() as uow:
        company = company_in_tenant(uow, actor.tenant_id, company_id)
        company.provisioning_code = domain.new_provisioning_code()
        company.updated_at = utcnow()
        uow.commit()
        return company_view(company, actor)


def get_provisioning_code(source: UnitOfWorkSource, actor: dict, company_id: str) -> dict:
    actor = domain.Actor.from_dict(actor)
    check_provisioning_role(actor)
    with source.unit_of_work() as uow:
        company = company_in_tenant(uow, actor.tenant_id, company_id)
        return contract.ProvisioningCode().dump({"company_id": company.id,
                                                 "provisioning_code": company.provisioning_code})


def enrolment(source: UnitOfWorkSource, code: str, email: str, name: str | None) -> dict:
    """What a machine's registration needs of accounts, in one call: the company its
    provisioning code enrols machines into (a wrong or rotated code is
    `invalid_provisioning_code`, 401 at the gateway) and the machine's person in it, as
    `ensure_person` makes them. (Two calls cost registration 8 % of its rate, issue 14.)"""
    with source.unit_of_work(read_only=True) as uow:
        company = uow.repo.company_by_code(code) if isinstance(code, str) and code else None
        if company is None:
            raise Unauthorized("unknown or rotated provisioning code", code="invalid_provisioning_code")
    return {"tenant_id": str(company.tenant_id), "company_id": str(company.id),
            "company_name": company.name,
            "collaborator": ensure_person(source, company.tenant_id, email, name, str(company.id))}


def ensure_person(source: UnitOfWorkSource, tenant, email: str, name: str | None,
                  company_id: str | None) -> dict:
    """The person with this email, created as a collaborator without a password when absent:
    how a machine's user or a linked user comes to exist. Never a staff role: a provisioning
    code must not mint managers (a machine's persona is the machine's)."""
    tenant = parse_id(tenant, "tenant")
    data = load(contract.UserCreate, {"email": email, "name": name or str(email).split("@")[0],
                                      "role": "collaborator", "company_id": company_id})
    with source.unit_of_work() as uow:
        existing = uow.repo.user_by_email(tenant, domain.normalize_email(data["email"]))
        if existing is not None:
            return contract.User().dump(existing)
        user = uow.repo.add(User(tenant_id=tenant, email=data["email"].strip(),
                                 email_normalized=domain.normalize_email(data["email"]),
                                 name=data["name"], role="collaborator",
                                 company_id=data["company_id"]))
        uow.emit("user_created", user_event(user))
        commit_unique(uow, Conflict("email is already a user", code="email_taken"))
        return contract.User().dump(user)


def find_person(source: UnitOfWorkSource, tenant_id: str, email: str) -> dict:
    """The person with this email, never created: a machine's links name people who already
    exist. Unknown (or a machine's own user): 404 `email_not_found`."""
    tenant = parse_id(tenant_id, "tenant")
    unknown = NotFound("no user with this email: create them first", code="email_not_found",
                       details={"fields": {"email": ["no user with this email"]}})
    if not isinstance(email, str) or not email.strip():
        raise unknown
    with source.unit_of_work() as uow:
        user = uow.repo.user_by_email(tenant, domain.normalize_email(email))
        if user is None or user.role == "machine":
            raise unknown
        return contract.User().dump(user)


def create_machine_user(source: UnitOfWorkSource, tenant_id: str, company_id: str, hostname: str) -> dict:
    """Each machine has a user of role `machine` (its identity in tickets and audits)."""
    tenant = parse_id(tenant_id, "tenant")
    with source.unit_of_work() as uow:
        company = company_in_tenant(uow, tenant, company_id)
        local = uuid.uuid4().hex[:12]
        user = uow.repo.add(User(tenant_id=tenant, email=f"machine-{local}@machines.invalid",
                                 email_normalized=f"machine-{local}@machines.invalid",
                                 name=hostname[:200], role="machine", company_id=company.id))
        uow.emit("user_created", user_event(user))
        uow.commit()
        return contract.User().dump(user)
