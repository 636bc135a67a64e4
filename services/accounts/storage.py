"""Accounts tables and repository (schema `accounts`)."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (ForeignKey, Index, Integer, String, delete, func, or_, select, text,
                        update)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import (Repository, UTCDateTime, escape_like, new_metadata, upsert_insert,
                       utcnow)
from common.idempotency import idempotency_table
from common.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = new_metadata()


metadata = Base.metadata
outbox_table(metadata)
idempotency_keys = idempotency_table(metadata)  # Idempotency-Key records (common/idempotency.py)


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Company(Base):
    __tablename__ = "companies"
    __table_args__ = (Index("uq_companies_tenant_apelido", "tenant_id", "apelido", unique=True),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(200))
    apelido: Mapped[str] = mapped_column(String(63))
    provisioning_code: Mapped[str] = mapped_column(String(64), unique=True)
    # counts the changes other services keep a snapshot of (stamp_version): their events
    # carry it, so a consumer keeps the newest whatever order they arrive in
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # unique per tenant, case-insensitively, among live (not merged) accounts
        Index("uq_users_tenant_email", "tenant_id", "email_normalized", unique=True,
              postgresql_where=text("merged_into_id IS NULL"),
              sqlite_where=text("merged_into_id IS NULL")),
        Index("ix_users_tenant_role_email", "tenant_id", "role", "email_normalized"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    email: Mapped[str] = mapped_column(String(254))
    email_normalized: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    company_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("companies.id"))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    merged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))  # as Company's
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def has_password(self) -> bool:
        return self.password_hash is not None


class ApiSession(Base):
    """A signed-in person's bearer token, kept only as its SHA-256."""

    __tablename__ = "sessions"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SignInThrottle(Base):
    """One row per throttled key (an account or a client address, as a SHA-256), rewritten
    in place: failed sign-ins never add rows (services/accounts/throttle.py). No index but
    the key: every failure rewrites the row, and the purge reads a table as small as the
    keys that failed lately."""

    __tablename__ = "sign_in_throttle"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AccountsRepository(Repository):
    def flush(self) -> None:
        """Send the pending changes now, inside the transaction."""
        self.session.flush()

    def stamp_version(self, row) -> None:
        """The row's (a user's, a company's) next version, counted by its own UPDATE
        (`version + 1` under the row's lock, so two concurrent changes never get one number),
        then the row read back: the event carries what was committed under that number, a
        concurrent writer's columns included."""
        row.version = type(row).version + 1
        self.session.flush()
        self.session.refresh(row)

    # tenants
    def tenant(self, tenant_id) -> Tenant | None:
        return self.session.get(Tenant, tenant_id)

    def tenant_by_slug(self, slug: str) -> Tenant | None:
        return self.session.scalars(select(Tenant).where(Tenant.slug == slug)).first()

    # companies
    def company(self, tenant_id, company_id) -> Company | None:
        return self.session.scalars(select(Company).where(
            Company.tenant_id == tenant_id, Company.id == company_id)).first()

    def company_by_apelido(self, tenant_id, apelido: str) -> Company | None:
        return self.session.scalars(select(Company).where(
            Company.tenant_id == tenant_id, Company.apelido == apelido)).first()

    def company_by_code(self, code: str) -> Company | None:
        return self.session.scalars(select(Company).where(Company.provisioning_code == code)).first()

    def companies(self, tenant_id, q: str | None) -> list[Company]:
        query = select(Company).where(Company.tenant_id == tenant_id)
        if q:
            pattern = f"%{escape_like(q.lower())}%"
            query = query.where(or_(func.lower(Company.name).like(pattern, escape="\\"),
                                    Company.apelido.like(pattern, escape="\\")))
        return list(self.session.scalars(query.order_by(func.lower(Company.name), Company.id)))

    # users
    def user(self, tenant_id, user_id) -> User | None:
        return self.session.scalars(select(User).where(
            User.tenant_id == tenant_id, User.id == user_id)).first()

    def user_by_id(self, user_id) -> User | None:
        """Whatever its tenant: a session's user."""
        return self.session.get(User, user_id)

    def user_by_email(self, tenant_id, email_normalized: str) -> User | None:
        return self.session.scalars(select(User).where(
            User.tenant_id == tenant_id, User.email_normalized == email_normalized,
            User.merged_into_id.is_(None))).first()

    def sign_in_candidates(self, email_normalized: str, tenant_slug: str | None) -> list[User]:
        query = select(User).where(User.email_normalized == email_normalized,
                                   User.merged_into_id.is_(None),
                                   User.password_hash.is_not(None))
        if tenant_slug:
            query = query.join(Tenant, Tenant.id == User.tenant_id).where(Tenant.slug == tenant_slug)
        return list(self.session.scalars(query.limit(10)))

    def people_by_email(self, email_normalized: str, tenant_slug: str | None = None) -> list[tuple[User, str]]:
        """Live people (not machines) with this email in every tenant, or in the one named:
        (user, tenant slug)."""
        query = (select(User, Tenant.slug).join(Tenant, Tenant.id == User.tenant_id)
                 .where(User.email_normalized == email_normalized, User.merged_into_id.is_(None),
                        User.role != "machine"))
        if tenant_slug:
            query = query.where(Tenant.slug == tenant_slug)
        return [(user, slug) for user, slug in self.session.execute(query.order_by(Tenant.slug).limit(100))]

    def users(self, tenant_id, roles, q, company_id, limit, after) -> list[User]:
        query = select(User).where(User.tenant_id == tenant_id, User.role.in_(sorted(roles)),
                                   User.merged_into_id.is_(None))
        if q:
            pattern = f"%{escape_like(q.lower())}%"
            query = query.where(or_(User.email_normalized.like(pattern, escape="\\"),
                                    func.lower(User.name).like(pattern, escape="\\")))
        if company_id:
            query = query.where(User.company_id == company_id)
        if after:
            email, user_id = after
            query = query.where(or_(User.email_normalized > email,
                                    (User.email_normalized == email) & (User.id > user_id)))
        return list(self.session.scalars(query.order_by(User.email_normalized, User.id).limit(limit)))

    def registration_counts(self, tenant_id=None) -> dict:
        companies = select(func.count()).select_from(Company)
        users = select(User.role, func.count()).where(User.merged_into_id.is_(None)).group_by(User.role)
        if tenant_id is not None:
            companies = companies.where(Company.tenant_id == tenant_id)
            users = users.where(User.tenant_id == tenant_id)
        by_role = dict(self.session.execute(users).all())
        machines = by_role.pop("machine", 0)
        return {"companies": self.session.scalar(companies), "people": sum(by_role.values()),
                "machine_users": machines}

    def count_admins(self, tenant_id) -> int:
        return self.session.scalar(select(func.count()).select_from(User).where(
            User.tenant_id == tenant_id, User.role == "admin", User.merged_into_id.is_(None)))

    # sessions
    def session_by_token_hash(self, token_hash: str) -> ApiSession | None:
        return self.session.scalars(select(ApiSession).where(
            ApiSession.token_hash == token_hash)).first()

    def revoke_sessions_of(self, user_id, now, keep=None) -> int:
        """Ends every live session of the user but `keep` (a session id); how many ended."""
        statement = update(ApiSession).where(ApiSession.user_id == user_id,
                                             ApiSession.revoked_at.is_(None))
        if keep is not None:
            statement = statement.where(ApiSession.id != keep)
        return self.session.execute(statement.values(revoked_at=now)).rowcount

    def stale_sessions(self, expired_before, tenant_id=None) -> tuple[int, datetime | None]:
        query = select(func.count(), func.min(ApiSession.created_at)).where(stale_session(expired_before))
        if tenant_id is not None:
            query = query.join(User, User.id == ApiSession.user_id).where(User.tenant_id == tenant_id)
        return self.session.execute(query).one()

    def purge_sessions(self, expired_before) -> None:
        """Expired and revoked sessions are worth nothing: the table stays as big as the
        number of people signed in, not the number of sign-ins ever."""
        self.session.execute(delete(ApiSession).where(stale_session(expired_before)))

    # sign-in throttle
    def throttle_counts(self, keys, for_update: bool = False) -> dict[str, SignInThrottle]:
        query = select(SignInThrottle).where(SignInThrottle.key.in_(sorted(keys)))
        if for_update:
            query = query.with_for_update()
        return {row.key: row for row in self.session.scalars(query)}

    def throttle_rows_for_update(self, keys, now) -> dict[str, SignInThrottle]:
        """The keys' rows, created when missing (a count of 0 that expires at once) and
        locked for this transaction: concurrent failures of one key add up, none is lost."""
        for key in sorted(keys):
            self.session.execute(upsert_insert(self.session, SignInThrottle.__table__).values(
                key=key, failures=0, window_started_at=now, locked_until=None, expires_at=now,
                updated_at=now).on_conflict_do_nothing(index_elements=["key"]))
        return self.throttle_counts(keys, for_update=True)

    def forget_throttle(self, keys) -> None:
        self.session.execute(delete(SignInThrottle).where(SignInThrottle.key.in_(sorted(keys))))

    def stale_throttles(self, now) -> tuple[int, datetime | None]:
        return self.session.execute(select(func.count(), func.min(SignInThrottle.expires_at))
                                    .where(SignInThrottle.expires_at <= now)).one()

    def purge_throttles(self, now, limit: int | None = None) -> int:
        """Rows whose window closed and whose lock is over are worth nothing. With `limit`
        (on the way of a sign-in), at most that many, skipping rows another sign-in holds."""
        if limit is None:
            return self.session.execute(delete(SignInThrottle)
                                        .where(SignInThrottle.expires_at <= now)).rowcount
        stale = (select(SignInThrottle.key).where(SignInThrottle.expires_at <= now).limit(limit)
                 .with_for_update(skip_locked=True))
        return self.session.execute(delete(SignInThrottle).where(SignInThrottle.key.in_(stale))).rowcount


def stale_session(expired_before):
    return or_(ApiSession.expires_at < expired_before, ApiSession.revoked_at < expired_before)

