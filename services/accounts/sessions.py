"""accounts' sessions: signing in (throttled per account and per client address), the
principal behind a bearer token, signing out, and the retention of what they leave behind."""
from __future__ import annotations

from datetime import timedelta

from common.contracts import accounts as contract
from common.contracts import load
from common.db import utcnow
from common.errors import Unauthorized
from common.retention import retention_scope
from common.tokens import hash_token, new_secret_token
from common.unit_of_work import UnitOfWorkSource
from services.accounts import domain, throttle
from services.accounts.passwords import (hashing, password_matches, refuse_while_locked,
                                         throttled_in_the_slot)
from services.accounts.storage import ApiSession


def sign_in(source: UnitOfWorkSource, settings, credentials: dict, client_address: str | None) -> dict:
    """A session for a right email and password. Failures are throttled per account and per
    `client_address` (services/accounts/throttle.py): while either is locked the answer is
    429 `too_many_requests`, a right password included, and no argon2 runs."""
    data = load(contract.SignIn, credentials)
    hashing.configure(settings)
    policy = throttle.Policy.from_settings(settings)
    email = domain.normalize_email(data["email"])
    address_key = throttle.address_key(client_address)
    with source.unit_of_work() as uow:
        candidates = uow.repo.sign_in_candidates(email, data["tenant"])
        # an existing account's key is its tenant's id (however the tenant was named, or
        # not); an unknown email's, the slug given: both are counted alike
        limits = {throttle.account_key(str(u.tenant_id), email): policy.account for u in candidates} \
            or {throttle.account_key(data["tenant"], email): policy.account}
        if address_key is not None:
            limits[address_key] = policy.address
        refuse_while_locked(uow, limits, utcnow())

        still_unlocked, counted_when_wrong = throttled_in_the_slot(source, limits)
        # an unknown email costs the same as a known one (the dummy hash); the failure is
        # counted once, with the last candidate's verdict, inside its hashing slot
        tried = candidates or [None]
        user = None
        for position, candidate in enumerate(tried):
            matched = password_matches(
                settings, candidate.password_hash if candidate else hashing.dummy_hash, data["password"],
                refuse_when_busy=True, before=still_unlocked,
                after=counted_when_wrong if position == len(tried) - 1 else None)
            if matched and candidate is not None:
                user = candidate
                break
        if user is None:
            raise Unauthorized("wrong email or password", code="invalid_credentials")
        now = utcnow()
        uow.repo.forget_throttle([throttle.account_key(str(user.tenant_id), email)])
        token, token_hash = new_secret_token()
        session = uow.repo.add(ApiSession(
            user_id=user.id, token_hash=token_hash, created_at=now,
            expires_at=now + timedelta(hours=settings.session_ttl_hours)))
        uow.repo.purge_sessions(expired_before=now - timedelta(days=1))
        uow.commit()
        return contract.Session().dump({"token": token, "expires_at": session.expires_at, "user": user})


def authenticate(source: UnitOfWorkSource, token: str) -> dict:
    """The principal behind a bearer token, or `invalid_token`."""
    if not isinstance(token, str) or not 0 < len(token) <= 256:
        raise Unauthorized("invalid or expired token", code="invalid_token")
    with source.unit_of_work() as uow:
        session = uow.repo.session_by_token_hash(hash_token(token))
        if session is None or session.revoked_at is not None or session.expires_at <= utcnow():
            raise Unauthorized("invalid or expired token", code="invalid_token")
        user = uow.repo.user_by_id(session.user_id)
        if user is None or user.merged_into_id is not None:
            raise Unauthorized("invalid or expired token", code="invalid_token")
        return contract.Principal().dump({"user_id": user.id, "tenant_id": user.tenant_id,
                                          "role": user.role, "session_id": session.id})


def sign_out(source: UnitOfWorkSource, token: str) -> None:
    with source.unit_of_work() as uow:
        session = uow.repo.session_by_token_hash(hash_token(token))
        if session is not None and session.revoked_at is None:
            session.revoked_at = utcnow()
            uow.commit()


def apply_retention(source: UnitOfWorkSource, now: str | None, dry_run: bool, tenant_id: str | None) -> dict:
    """Sessions expired or revoked more than a day ago are worth nothing; so are sign-in
    throttle rows whose window closed and whose lock is over. With `tenant_id` (a dry run
    only: the health snapshot of a tenant's staff), that tenant's sessions alone — throttle
    rows belong to no tenant."""
    now, tenant = retention_scope(now, dry_run, tenant_id)
    with source.unit_of_work() as uow:
        count, oldest = uow.repo.stale_sessions(now - timedelta(days=1), tenant)
        throttles, oldest_throttle = (0, None) if tenant else uow.repo.stale_throttles(now)
        if (count or throttles) and not dry_run:
            uow.repo.purge_sessions(expired_before=now - timedelta(days=1))
            uow.repo.purge_throttles(now)
            uow.commit()
    kinds = {"sessions": {"past_policy": count, "deleted": 0 if dry_run else count,
                          "oldest": oldest.isoformat() if oldest else None}}
    if tenant is None:
        kinds["sign_in_throttle"] = {"past_policy": throttles, "deleted": 0 if dry_run else throttles,
                                     "oldest": oldest_throttle.isoformat() if oldest_throttle else None}
    return {"dry_run": dry_run, "kinds": kinds}
