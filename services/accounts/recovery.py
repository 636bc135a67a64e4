"""Operators' access recovery (`chamados reset-password`): straight on the accounts database,
so it works whether or not the services run."""
from __future__ import annotations

import secrets

from common.contracts import accounts as contract
from common.db import utcnow
from common.unit_of_work import UnitOfWorkSource
from services.accounts import domain
from services.accounts.passwords import hash_password


def reset_password(source: UnitOfWorkSource, settings, email: str, tenant_slug: str | None = None,
                   password: str | None = None) -> dict:
    """The person's new password (generated when none is given: answered once), and every
    session of theirs revoked. No event: no other service keeps a password."""
    generated = password is None
    password = secrets.token_urlsafe(12) if generated else password
    domain.check_password(password)
    with source.unit_of_work() as uow:
        candidates = uow.repo.people_by_email(domain.normalize_email(email), tenant_slug)
        user, slug = domain.account_to_recover(candidates, email.strip(), tenant_slug)
        now = utcnow()
        user.password_hash = hash_password(settings, password)
        user.updated_at = now
        revoked = uow.repo.revoke_sessions_of(user.id, now)
        uow.commit()
        return {"user": contract.User().dump(user), "tenant": slug, "revoked_sessions": revoked,
                "password": password if generated else None}
