"""accounts' directory: tenants and their first admin, companies, and users (created,
changed, merged, listed, looked up by other services)."""
from __future__ import annotations

import secrets

from common.contracts import accounts as contract
from common.contracts import load, parse_id
from common.db import utcnow
from common.errors import Conflict, ValidationFailed
from common.pagination import decode_cursor, encode_cursor, text_value, uuid_value
from common.unit_of_work import UnitOfWorkSource
from services.accounts import domain
from services.accounts.passwords import hash_password
from services.accounts.rows import (commit_unique, company_event, company_in_tenant, stamp_version,
                                    user_event, user_in_tenant)
from services.accounts.storage import Company, Tenant, User


# tenants and the first admin -----------------------------------------------------------------

def create_tenant(source: UnitOfWorkSource, settings, name: str, slug: str, admin_email: str | None,
                  admin_password: str | None) -> dict:
    """A new tenant, optionally with its first admin (operators' tooling and tests)."""
    with source.unit_of_work() as uow:
        tenant = _add_tenant(uow, name, slug)
        if admin_email:
            if not admin_password:
                raise ValidationFailed("a tenant's first admin needs a password",
                                       details={"fields": {"admin_password": ["required"]}})
            _add_admin(uow, settings, tenant, admin_email, admin_password)
        commit_unique(uow, Conflict("tenant slug taken", code="tenant_exists"))
        return {"id": str(tenant.id), "name": tenant.name, "slug": tenant.slug}


def ensure_admin(source: UnitOfWorkSource, settings, email: str, password: str | None) -> dict:
    """The first admin of the default tenant (`make up`); an existing one is kept as is.
    Answers the generated password once, when none was given."""
    with source.unit_of_work() as uow:
        tenant = uow.repo.tenant_by_slug(domain.DEFAULT_TENANT_SLUG) or _add_tenant(
            uow, "Default", domain.DEFAULT_TENANT_SLUG)
        existing = uow.repo.user_by_email(tenant.id, domain.normalize_email(email))
        if existing is not None:
            return {"created": False, "user": contract.User().dump(existing)}
        generated = password is None
        password = password or secrets.token_urlsafe(12)
        user = _add_admin(uow, settings, tenant, email, password)
        commit_unique(uow, Conflict("admin already exists", code="user_exists"))
        return {"created": True, "user": contract.User().dump(user),
                "password": password if generated else None}


def _add_admin(uow, settings, tenant: Tenant, email: str, password: str) -> User:
    user = uow.repo.add(User(tenant_id=tenant.id, email=email.strip(),
                             email_normalized=domain.normalize_email(email),
                             name="Administrator", role="admin",
                             password_hash=hash_password(settings, password)))
    uow.emit("user_created", user_event(user))
    return user


def _add_tenant(uow, name: str, slug: str) -> Tenant:
    slug = domain.normalize_apelido(slug)
    if uow.repo.tenant_by_slug(slug) is not None:
        raise Conflict(f"tenant {slug!r} exists", code="tenant_exists")
    tenant = uow.repo.add(Tenant(name=name, slug=slug))
    uow.emit("tenant_created", {"tenant_id": tenant.id, "name": name, "slug": slug})
    return tenant


# companies -----------------------------------------------------------------------------------

def company_view(company: Company, actor: domain.Actor) -> dict:
    """A company as a person sees it: the provisioning code only for the roles that may
    enrol machines (admin, manager)."""
    view = contract.Company().dump(company)
    if actor.role not in contract.PROVISIONING_ROLES:
        view["provisioning_code"] = None
    return view


def list_companies(source: UnitOfWorkSource, actor: dict, query: dict) -> dict:
    actor = domain.Actor.from_dict(actor)
    data = load(contract.CompanyQuery, query)
    with source.unit_of_work() as uow:
        return {"items": [company_view(company, actor)
                          for company in uow.repo.companies(actor.tenant_id, data["q"])]}


def get_company(source: UnitOfWorkSource, actor: dict, company_id: str) -> dict:
    actor = domain.Actor.from_dict(actor)
    with source.unit_of_work() as uow:
        return company_view(company_in_tenant(uow, actor.tenant_id, company_id), actor)


def create_company(source: UnitOfWorkSource, actor: dict, payload: dict) -> dict:
    actor = domain.Actor.from_dict(actor)
    data = load(contract.CompanyCreate, payload)
    apelido = domain.normalize_apelido(data["apelido"])
    taken = Conflict(f"apelido {apelido!r} is taken", code="apelido_taken")
    with source.unit_of_work() as uow:
        if uow.repo.company_by_apelido(actor.tenant_id, apelido) is not None:
            raise taken
        company = uow.repo.add(Company(tenant_id=actor.tenant_id,
                                       name=data["name"].strip(), apelido=apelido,
                                       provisioning_code=domain.new_provisioning_code()))
        uow.emit("company_created", company_event(company))
        commit_unique(uow, taken)
        return company_view(company, actor)


def update_company(source: UnitOfWorkSource, actor: dict, company_id: str, payload: dict) -> dict:
    actor = domain.Actor.from_dict(actor)
    data = load(contract.CompanyUpdate, payload)
    with source.unit_of_work() as uow:
        company = company_in_tenant(uow, actor.tenant_id, company_id)
        changes = domain.company_changes({"name": company.name, "apelido": company.apelido}, data)
        if "apelido" in changes:
            other = uow.repo.company_by_apelido(actor.tenant_id, changes["apelido"])
            if other is not None and other.id != company.id:
                raise Conflict(f"apelido {changes['apelido']!r} is taken", code="apelido_taken")
        if changes:
            for field, value in changes.items():
                setattr(company, field, value)
            company.updated_at = utcnow()
            stamp_version(uow, company, Conflict("apelido is taken", code="apelido_taken"))
            uow.emit("company_updated", company_event(company))
        commit_unique(uow, Conflict("apelido is taken", code="apelido_taken"))
        return company_view(company, actor)


def lookup_company(source: UnitOfWorkSource, tenant_id: str, company_id: str) -> dict:
    with source.unit_of_work() as uow:
        return contract.Company().dump(company_in_tenant(uow, parse_id(tenant_id, "tenant"), company_id))


# users ---------------------------------------------------------------------------------------

def get_user(source: UnitOfWorkSource, actor: dict, user_id: str) -> dict:
    actor = domain.Actor.from_dict(actor)
    with source.unit_of_work() as uow:
        return contract.User().dump(user_in_tenant(uow, actor.tenant_id, user_id))


def lookup_user(source: UnitOfWorkSource, tenant_id: str, user_id: str) -> dict:
    """For services that keep snapshots and missed (or have not yet had) the event."""
    with source.unit_of_work() as uow:
        return contract.User().dump(user_in_tenant(uow, parse_id(tenant_id, "tenant"), user_id))


def list_users(source: UnitOfWorkSource, actor: dict, query: dict) -> dict:
    actor = domain.Actor.from_dict(actor)
    data = load(contract.UserQuery, query)
    after = decode_cursor(data["cursor"], text_value, uuid_value)
    with source.unit_of_work() as uow:
        users = uow.repo.users(actor.tenant_id, domain.USER_TYPES[data["type"]], data["q"],
                               data["company_id"], data["limit"] + 1, after)
        page, more = users[:data["limit"]], len(users) > data["limit"]
        cursor = encode_cursor([page[-1].email_normalized, str(page[-1].id)]) if more else None
        return contract.UserList().dump({"items": page, "next_cursor": cursor})


def registration_counts(source: UnitOfWorkSource, tenant_id: str | None) -> dict:
    """Companies, people and machine users, of one tenant or of all (health snapshot)."""
    with source.unit_of_work() as uow:
        return uow.repo.registration_counts(parse_id(tenant_id, "tenant") if tenant_id else None)


def create_user(source: UnitOfWorkSource, settings, actor: dict, payload: dict) -> dict:
    actor = domain.Actor.from_dict(actor)
    data = load(contract.UserCreate, payload)
    domain.check_can_manage_user(actor, None, data["role"])
    email = data["email"].strip()
    taken = Conflict(f"{email} is already a user", code="email_taken")
    with source.unit_of_work() as uow:
        if uow.repo.user_by_email(actor.tenant_id, domain.normalize_email(email)):
            raise taken
        company_id = (company_in_tenant(uow, actor.tenant_id, data["company_id"]).id
                      if data["company_id"] else None)
        user = uow.repo.add(User(
            tenant_id=actor.tenant_id, email=email,
            email_normalized=domain.normalize_email(email), name=data["name"].strip(),
            role=data["role"], company_id=company_id,
            password_hash=hash_password(settings, data["password"]) if data["password"] else None))
        uow.emit("user_created", user_event(user))
        commit_unique(uow, taken)
        return contract.User().dump(user)


def update_user(source: UnitOfWorkSource, settings, actor: dict, user_id: str, payload: dict) -> dict:
    """Email, name, role, company or password; the id never changes."""
    actor = domain.Actor.from_dict(actor)
    data = load(contract.UserUpdate, payload)
    with source.unit_of_work() as uow:
        user = user_in_tenant(uow, actor.tenant_id, user_id)
        if user.merged_into_id is not None:
            raise Conflict("a merged user cannot change", code="user_already_merged")
        domain.check_can_manage_user(actor, user.role, data.get("role"))
        if "password" in data:
            domain.check_password(data["password"])
        # What changed is decided here, from the loaded values, before any query below
        # (email, admins, company, sessions) can autoflush: session.is_modified() after an
        # autoflush answers False and the event was lost (ENGINEERING.md pitfall 18).
        changes = domain.user_changes({field: getattr(user, field) for field in domain.SNAPSHOT_FIELDS}, data)
        if "email" in changes:
            normalized = domain.normalize_email(changes["email"])
            other = uow.repo.user_by_email(actor.tenant_id, normalized)
            if other is not None and other.id != user.id:
                raise Conflict(f"{changes['email']} is already a user", code="email_taken")
        if "role" in changes and user.role == "admin" and uow.repo.count_admins(actor.tenant_id) <= 1:
            raise Conflict("the tenant's last admin cannot lose the role", code="last_admin")
        if changes.get("company_id") is not None:  # another tenant's is unknown: 404
            company_in_tenant(uow, actor.tenant_id, changes["company_id"])
        # every check done: now the writes
        for field, value in changes.items():
            setattr(user, field, value)
        if "email" in changes:
            user.email_normalized = domain.normalize_email(changes["email"])
        now = utcnow()
        if "password" in data:
            user.password_hash = hash_password(settings, data["password"])
            uow.repo.revoke_sessions_of(user.id, now)  # a new password signs everyone out
        if changes or "password" in data:
            user.updated_at = now
        # A password alone emits nothing: no other service keeps a password or anything
        # derived from it (the event carries email, name, role, company), so every consumer
        # would only rewrite its snapshots with the values it already has.
        if changes:
            stamp_version(uow, user, Conflict("email is already a user", code="email_taken"))
            uow.emit("user_updated", user_event(user))
        commit_unique(uow, Conflict("email is already a user", code="email_taken"))
        return contract.User().dump(user)


def merge_users(source: UnitOfWorkSource, actor: dict, payload: dict) -> dict:
    """`from` becomes a tombstone pointing at `into`; every service remaps its references on
    `user_merged`."""
    actor = domain.Actor.from_dict(actor)
    data = load(contract.UserMerge, payload)
    with source.unit_of_work() as uow:
        merged = user_in_tenant(uow, actor.tenant_id, data["from_user_id"])
        target = user_in_tenant(uow, actor.tenant_id, data["into_user_id"])
        domain.check_merge(actor, merged, target)
        now = utcnow()
        merged.merged_into_id, merged.merged_at, merged.updated_at = target.id, now, now
        uow.repo.revoke_sessions_of(merged.id, now)
        uow.repo.flush()
        uow.emit("user_merged", {"tenant_id": merged.tenant_id, "from_user_id": merged.id,
                                 "into_user_id": target.id})
        uow.commit()
        return contract.MergeResult().dump({"from_": merged, "into": target})
