"""What every accounts handler does with its rows: load one of the tenant's (or 404), say it
in an event, and take a unique constraint lost to a concurrent writer for the conflict the
check before it would have reported."""
from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from common.contracts import parse_id
from common.errors import Conflict, NotFound
from services.accounts.storage import Company, User


def user_in_tenant(uow, tenant_id, user_id) -> User:
    user = uow.repo.user(tenant_id, parse_id(user_id, "user"))
    if user is None:
        raise NotFound("user not found", code="user_not_found")
    return user


def company_in_tenant(uow, tenant_id, company_id) -> Company:
    company = uow.repo.company(tenant_id, parse_id(company_id, "company"))
    if company is None:
        raise NotFound("company not found", code="company_not_found")
    return company


def user_event(user: User) -> dict:
    return {"tenant_id": user.tenant_id, "user_id": user.id, "email": user.email,
            "name": user.name, "role": user.role, "company_id": user.company_id,
            "version": user.version}


def company_event(company: Company) -> dict:
    return {"tenant_id": company.tenant_id, "company_id": company.id, "name": company.name,
            "apelido": company.apelido, "version": company.version}


def stamp_version(uow, row, conflict: Conflict) -> None:
    """The repository's stamp_version; its flush may meet a unique constraint before the
    commit does."""
    try:
        uow.repo.stamp_version(row)
    except IntegrityError:
        raise conflict from None


def commit_unique(uow, conflict: Conflict) -> None:
    """Commit; a unique constraint lost to a concurrent writer is the same conflict the
    check before it would have reported."""
    try:
        uow.commit()
    except IntegrityError:
        raise conflict from None
