"""accounts: tenants, companies, users (people and machines), API sessions."""
from __future__ import annotations

import logging
import os
import secrets
import uuid
from collections import deque
from datetime import datetime, timedelta

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
import eventlet
from eventlet import tpool
from eventlet.event import Event
from sqlalchemy.exc import IntegrityError

from common.contracts import accounts as contract
from common.contracts import load, parse_id
from common.db import Database, utcnow
from common.errors import (Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized,
                           ValidationFailed)
from common.idempotency import IdempotencyContext, idempotent
from common.retention import retention_scope
from common.pagination import decode_cursor, encode_cursor, text_value, uuid_value
from common.service_base import ServiceBase, rpc
from common.tokens import hash_token, new_secret_token
from services.accounts import domain, storage, throttle
from services.accounts.storage import AccountsRepository, ApiSession, Company, Tenant, User

log = logging.getLogger(__name__)
# PASSWORD_HASH_PROFILE (common/config.py names them): the cost of new hashes; any stored
# hash verifies whatever the setting, since it carries its own parameters
HASHERS = {"rfc9106-low-memory": PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY),
           "rfc9106-high-memory": PasswordHasher.from_parameters(profiles.RFC_9106_HIGH_MEMORY),
           "insecure-for-tests": PasswordHasher.from_parameters(profiles.CHEAPEST)}
HASHING_NICENESS = 10  # argon2's threads yield the CPU to the hub's (Linux: nice is per thread)
WAITING_PER_SLOT = 8  # sign-ins that may queue for argon2 per slot (~0.3 s each); beyond, 429 at once
SIGN_IN_WAIT_SECONDS = 5.0  # a sign-in waits this long for a slot at most (the RPC deadline is 10 s)


def _below_the_hub(function, *args):
    """In a tpool thread: lower this thread's priority (the threads argon2 starts inherit
    it), then compute. Raising `nice` needs no privilege; where it is refused, go on."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, HASHING_NICENESS)
    except (AttributeError, OSError):
        pass
    return function(*args)


class HashingSlots:
    """argon2 off the eventlet hub, and not too much of it at once.

    argon2-cffi's C code would block the hub, so it runs in a real thread (tpool), but that
    alone did not keep this process responsive: each verification is ~0.3 s of CPU on 4
    threads, and eight wrong-password guessers at once took every core, so `authenticate`
    (every API request) went from 25 to 522 ms. So at most `slots` argon2 computations run
    at once, at a lower CPU priority than the hub, first come first served. A sign-in that
    would queue behind more than WAITING_PER_SLOT × slots others, or waits SIGN_IN_WAIT_SECONDS
    without a slot, is refused (429, retry after a second): a worker left waiting is a worker
    `authenticate` cannot have, and the gateway's deadline would answer 504 anyway."""

    def __init__(self):
        self.slots = 0
        self.free = 0
        self.queue: deque[Event] = deque()
        self.profile = "rfc9106-low-memory"
        self._dummy_hashes: dict[str, str] = {}

    def configure(self, settings) -> None:
        """The number of slots (PASSWORD_HASH_SLOTS; a change applies as slots free up) and
        the cost of new hashes (PASSWORD_HASH_PROFILE)."""
        self.profile = settings.password_hash_profile
        slots = settings.password_hash_slots
        if slots != self.slots:
            self.free += slots - self.slots
            self.slots = slots
            self._hand_over()

    @property
    def waiting(self) -> int:
        return len(self.queue)

    @property
    def hasher(self) -> PasswordHasher:
        return HASHERS[self.profile]

    @property
    def dummy_hash(self) -> str:
        """A hash of the current cost, verified for an unknown email: same time as a known one."""
        if self.profile not in self._dummy_hashes:
            self._dummy_hashes[self.profile] = tpool.execute(self.hasher.hash, "timing-equaliser")
        return self._dummy_hashes[self.profile]

    def run(self, function, *args, refuse_when_busy: bool = False, before=None, after=None):
        """`function(*args)` in a slot; `before()`, when given, runs first once the slot is
        held (a sign-in looks at its locks again: they may have been set while it waited),
        and `after(result)` last, still holding it (a wrong password is counted before the
        next guess in line looks at the locks: 8 parallel guesses let 6 through otherwise)."""
        if not self.slots:
            self.free = self.slots = 1
        if refuse_when_busy and self.waiting >= WAITING_PER_SLOT * self.slots:
            raise self._busy()
        self._acquire(SIGN_IN_WAIT_SECONDS if refuse_when_busy else None)
        try:
            if before is not None:
                before()
            result = tpool.execute(_below_the_hub, function, *args)
            if after is not None:
                after(result)
            return result
        finally:
            self.free += 1
            self._hand_over()

    def _acquire(self, timeout: float | None) -> None:
        if self.free > 0 and not self.queue:
            self.free -= 1
            return
        turn = Event()
        self.queue.append(turn)
        timer = eventlet.Timeout(timeout)
        try:
            turn.wait()
        except BaseException as exc:  # our timeout, or the worker is being killed
            if turn.ready():  # the slot came at the same moment
                if exc is timer:
                    return
                self.free += 1
                self._hand_over()
            else:
                self.queue.remove(turn)
            if exc is timer:
                raise self._busy() from None
            raise
        finally:
            timer.cancel()

    def _hand_over(self) -> None:
        """Free slots go to the oldest waiters, directly (no newcomer overtakes them)."""
        while self.free > 0 and self.queue:
            self.free -= 1
            self.queue.popleft().send(True)

    @staticmethod
    def _busy() -> TooManyRequests:
        return TooManyRequests("too many sign-ins at once; try again shortly",
                               details={"retry_after_seconds": 1})


hashing = HashingSlots()


def hash_password(settings, password: str) -> str:
    domain.check_password(password)
    hashing.configure(settings)
    return hashing.run(hashing.hasher.hash, password)  # argon2 is slow by design: off the hub


def password_matches(settings, password_hash: str | None, password: str, refuse_when_busy: bool = False,
                     before=None, after=None) -> bool:
    """Whether `password` is the one hashed; `before` and `after(matched)` run in the hashing
    slot (HashingSlots.run)."""
    if password_hash is None:
        if after is not None:
            after(False)
        return False
    hashing.configure(settings)
    return hashing.run(_verifies, hashing.hasher, password_hash, password, refuse_when_busy=refuse_when_busy,
                       before=before, after=after)


def _verifies(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def user_event(user: User) -> dict:
    return {"tenant_id": user.tenant_id, "user_id": user.id, "email": user.email,
            "name": user.name, "role": user.role, "company_id": user.company_id,
            "version": user.version}


def company_event(company: Company) -> dict:
    return {"tenant_id": company.tenant_id, "company_id": company.id, "name": company.name,
            "apelido": company.apelido, "version": company.version}


def company_view(company: Company, actor: domain.Actor) -> dict:
    """A company as a person sees it: the provisioning code only for the roles that may
    enrol machines (admin, manager)."""
    view = contract.Company().dump(company)
    if actor.role not in contract.PROVISIONING_ROLES:
        view["provisioning_code"] = None
    return view


def check_provisioning_role(actor: domain.Actor) -> None:
    """Enforced here as well as at the gateway's routes: provisioning codes enrol machines."""
    if actor.role not in contract.PROVISIONING_ROLES:
        raise Forbidden("your role may not see or rotate provisioning codes", code="forbidden_role",
                        details={"role": actor.role})


def stamp_version(uow, row, conflict: Conflict) -> None:
    """storage.stamp_version; its flush may meet a unique constraint before the commit does."""
    try:
        storage.stamp_version(uow.session, row)
    except IntegrityError:
        raise conflict from None


def commit_unique(uow, conflict: Conflict) -> None:
    """Commit; a unique constraint lost to a concurrent writer is the same conflict the
    check before it would have reported."""
    try:
        uow.commit()
    except IntegrityError:
        raise conflict from None


# a state-changing RPC sent with an Idempotency-Key answers every retry with its first answer
once = idempotent(storage.idempotency_keys)


class Service(ServiceBase):
    name = "accounts"
    db = Database(repository=AccountsRepository, metadata=storage.metadata)
    idempotency = IdempotencyContext()  # the caller's Idempotency-Key (@once)
    idempotency_records = storage.idempotency_keys
    churning_tables = ("outbox", "sign_in_throttle", "idempotency_keys")

    def purge_expired(self, uow, when) -> dict:
        """Sign-in throttle rows past their window and lock, besides the Idempotency-Key
        records (ServiceBase.maintain_storage)."""
        return {**ServiceBase.purge_expired(self, uow, when),
                "sign_in_throttle_deleted": uow.repo.purge_throttles(when)}

    # tenants and the first admin -------------------------------------------------------

    @rpc
    def create_tenant(self, name: str, slug: str, admin_email: str | None = None,
                      admin_password: str | None = None) -> dict:
        """A new tenant, optionally with its first admin (operators' tooling and tests)."""
        with self.db.unit_of_work() as uow:
            tenant = self._create_tenant(uow, name, slug)
            if admin_email:
                if not admin_password:
                    raise ValidationFailed("a tenant's first admin needs a password",
                                           details={"fields": {"admin_password": ["required"]}})
                self._add_admin(uow, tenant, admin_email, admin_password)
            commit_unique(uow, Conflict("tenant slug taken", code="tenant_exists"))
            return {"id": str(tenant.id), "name": tenant.name, "slug": tenant.slug}

    @rpc
    def ensure_admin(self, email: str, password: str | None = None) -> dict:
        """The first admin of the default tenant (`make up`); an existing one is kept as is.
        Answers the generated password once, when none was given."""
        with self.db.unit_of_work() as uow:
            tenant = uow.repo.tenant_by_slug(domain.DEFAULT_TENANT_SLUG) or self._create_tenant(
                uow, "Default", domain.DEFAULT_TENANT_SLUG)
            existing = uow.repo.user_by_email(tenant.id, domain.normalize_email(email))
            if existing is not None:
                return {"created": False, "user": contract.User().dump(existing)}
            generated = password is None
            password = password or secrets.token_urlsafe(12)
            user = self._add_admin(uow, tenant, email, password)
            commit_unique(uow, Conflict("admin already exists", code="user_exists"))
            return {"created": True, "user": contract.User().dump(user),
                    "password": password if generated else None}

    def _add_admin(self, uow, tenant: Tenant, email: str, password: str) -> User:
        user = uow.repo.add(User(tenant_id=tenant.id, email=email.strip(),
                                 email_normalized=domain.normalize_email(email),
                                 name="Administrator", role="admin",
                                 password_hash=hash_password(self.db.settings, password)))
        uow.emit("user_created", user_event(user))
        return user

    def _create_tenant(self, uow, name: str, slug: str) -> Tenant:
        slug = domain.normalize_apelido(slug)
        if uow.repo.tenant_by_slug(slug) is not None:
            raise Conflict(f"tenant {slug!r} exists", code="tenant_exists")
        tenant = uow.repo.add(Tenant(name=name, slug=slug))
        uow.emit("tenant_created", {"tenant_id": tenant.id, "name": name, "slug": slug})
        return tenant

    # sessions ------------------------------------------------------------------------

    @rpc
    def sign_in(self, credentials: dict, client_address: str | None = None) -> dict:
        """A session for a right email and password. Failures are throttled per account and
        per `client_address` (services/accounts/throttle.py): while either is locked the
        answer is 429 `too_many_requests`, a right password included, and no argon2 runs."""
        data = load(contract.SignIn, credentials)
        settings = self.db.settings
        hashing.configure(settings)
        policy = throttle.Policy.from_settings(settings)
        email = domain.normalize_email(data["email"])
        address_key = throttle.address_key(client_address)
        with self.db.unit_of_work() as uow:
            candidates = uow.repo.sign_in_candidates(email, data["tenant"])
            # an existing account's key is its tenant's id (however the tenant was named,
            # or not); an unknown email's, the slug given: both are counted alike
            limits = {throttle.account_key(str(u.tenant_id), email): policy.account for u in candidates} \
                or {throttle.account_key(data["tenant"], email): policy.account}
            if address_key is not None:
                limits[address_key] = policy.address
            self._refuse_while_locked(uow, limits, utcnow())

            still_unlocked, counted_when_wrong = self._throttled_in_the_slot(limits)
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
                uow.session.rollback()
                raise Unauthorized("wrong email or password", code="invalid_credentials")
            now = utcnow()
            uow.repo.forget_throttle([throttle.account_key(str(user.tenant_id), email)])
            token, token_hash = new_secret_token()
            session = uow.repo.add(ApiSession(
                user_id=user.id, token_hash=token_hash, created_at=now,
                expires_at=now + timedelta(hours=self.db.settings.session_ttl_hours)))
            uow.repo.purge_sessions(expired_before=now - timedelta(days=1))
            uow.commit()
            return contract.Session().dump({"token": token, "expires_at": session.expires_at,
                                            "user": user})

    def _throttled_in_the_slot(self, limits: dict):
        """(before, after) for password_matches: the locks looked at again once the hashing
        slot is ours, and a wrong password counted before the slot is let go — each in a
        transaction of its own."""
        def still_unlocked():
            with self.db.unit_of_work() as check:
                self._refuse_while_locked(check, limits, utcnow())

        def counted_when_wrong(matched: bool):
            if not matched:
                with self.db.unit_of_work() as count:
                    self._count_failure(count, limits, utcnow())

        return still_unlocked, counted_when_wrong

    def _refuse_while_locked(self, uow, limits: dict, now) -> None:
        rows = uow.repo.throttle_counts(limits)
        wait = throttle.retry_after_seconds(
            (throttle.Count(row.failures, row.window_started_at, row.locked_until) for row in rows.values()), now)
        if wait is not None:
            raise TooManyRequests("too many failed sign-ins; try again later",
                                  details={"retry_after_seconds": wait})

    def _count_failure(self, uow, limits: dict, now) -> None:
        """One more failure for each key, in one short transaction of its own; expired
        rows go on the way (the storage-maintenance job removes the rest)."""
        rows = uow.repo.throttle_rows_for_update(limits, now)
        for key, limit in limits.items():
            row = rows[key]
            count = throttle.after_failure(
                throttle.Count(row.failures, row.window_started_at, row.locked_until) if row.failures else None,
                limit, now)
            row.failures, row.window_started_at, row.locked_until = \
                count.failures, count.window_started_at, count.locked_until
            row.expires_at, row.updated_at = count.expires_at(limit), now
        uow.session.flush()
        uow.repo.purge_throttles(now, limit=100)
        uow.commit()

    @rpc
    def authenticate(self, token: str) -> dict:
        """The principal behind a bearer token, or `invalid_token`."""
        if not isinstance(token, str) or not 0 < len(token) <= 256:
            raise Unauthorized("invalid or expired token", code="invalid_token")
        with self.db.unit_of_work() as uow:
            session = uow.repo.session_by_token_hash(hash_token(token))
            if session is None or session.revoked_at is not None or session.expires_at <= utcnow():
                raise Unauthorized("invalid or expired token", code="invalid_token")
            user = uow.session.get(User, session.user_id)
            if user is None or user.merged_into_id is not None:
                raise Unauthorized("invalid or expired token", code="invalid_token")
            return contract.Principal().dump({"user_id": user.id, "tenant_id": user.tenant_id,
                                              "role": user.role, "session_id": session.id})

    @rpc
    @once
    def change_password(self, principal: dict, payload: dict, client_address: str | None = None) -> None:
        """A signed-in person changes their own password, proving the current one; their
        other sessions end, the one asking (`principal["session_id"]`) lives on. Wrong
        current passwords count as failed sign-ins, per account and per `client_address`."""
        actor = domain.Actor.from_dict(principal)
        session_id = parse_id(principal.get("session_id"), "session")
        data = load(contract.PasswordChange, payload)
        domain.check_password(data["new_password"], field="new_password")
        settings = self.db.settings
        hashing.configure(settings)
        with self.db.unit_of_work() as uow:
            user = self._user(uow, actor.tenant_id, actor.user_id)
            if user.merged_into_id is not None:
                raise Unauthorized("invalid or expired token", code="invalid_token")
            # the current password is guessed like a sign-in's: the same account counter and
            # lock-out, and the same bounded wait for a hashing slot
            policy = throttle.Policy.from_settings(settings)
            limits = {throttle.account_key(str(user.tenant_id), domain.normalize_email(user.email)): policy.account}
            address_key = throttle.address_key(client_address)
            if address_key is not None:
                limits[address_key] = policy.address
            self._refuse_while_locked(uow, limits, utcnow())
            still_unlocked, counted_when_wrong = self._throttled_in_the_slot(limits)
            if not password_matches(settings, user.password_hash, data["current_password"],
                                    refuse_when_busy=True, before=still_unlocked,
                                    after=counted_when_wrong):
                uow.session.rollback()
                raise Forbidden("the current password is wrong", code="wrong_password",
                                details={"fields": {"current_password": ["does not match"]}})
            now = utcnow()
            user.password_hash = hash_password(self.db.settings, data["new_password"])
            user.updated_at = now  # no event: no other service keeps anything of a password
            uow.repo.revoke_sessions_of(user.id, now, keep=session_id)
            uow.commit()

    @rpc
    def sign_out(self, token: str) -> None:
        with self.db.unit_of_work() as uow:
            session = uow.repo.session_by_token_hash(hash_token(token))
            if session is not None and session.revoked_at is None:
                session.revoked_at = utcnow()
                uow.commit()

    # companies -----------------------------------------------------------------------

    @rpc
    def list_companies(self, actor: dict, query: dict) -> dict:
        actor = domain.Actor.from_dict(actor)
        data = load(contract.CompanyQuery, query)
        with self.db.unit_of_work() as uow:
            return {"items": [company_view(company, actor)
                              for company in uow.repo.companies(actor.tenant_id, data["q"])]}

    @rpc
    def get_company(self, actor: dict, company_id: str) -> dict:
        actor = domain.Actor.from_dict(actor)
        with self.db.unit_of_work() as uow:
            return company_view(self._company(uow, actor.tenant_id, company_id), actor)

    @rpc
    @once
    def create_company(self, actor: dict, payload: dict) -> dict:
        actor = domain.Actor.from_dict(actor)
        data = load(contract.CompanyCreate, payload)
        apelido = domain.normalize_apelido(data["apelido"])
        taken = Conflict(f"apelido {apelido!r} is taken", code="apelido_taken")
        with self.db.unit_of_work() as uow:
            if uow.repo.company_by_apelido(actor.tenant_id, apelido) is not None:
                raise taken
            company = uow.repo.add(Company(tenant_id=actor.tenant_id,
                                           name=data["name"].strip(), apelido=apelido,
                                           provisioning_code=domain.new_provisioning_code()))
            uow.emit("company_created", company_event(company))
            commit_unique(uow, taken)
            return company_view(company, actor)

    @rpc
    @once
    def update_company(self, actor: dict, company_id: str, payload: dict) -> dict:
        actor = domain.Actor.from_dict(actor)
        data = load(contract.CompanyUpdate, payload)
        with self.db.unit_of_work() as uow:
            company = self._company(uow, actor.tenant_id, company_id)
            if "apelido" in data:
                apelido = domain.normalize_apelido(data["apelido"])
                other = uow.repo.company_by_apelido(actor.tenant_id, apelido)
                if other is not None and other.id != company.id:
                    raise Conflict(f"apelido {apelido!r} is taken", code="apelido_taken")
                company.apelido = apelido
            if "name" in data:
                company.name = data["name"].strip()
            if uow.session.is_modified(company):
                company.updated_at = utcnow()
                stamp_version(uow, company, Conflict("apelido is taken", code="apelido_taken"))
                uow.emit("company_updated", company_event(company))
            commit_unique(uow, Conflict("apelido is taken", code="apelido_taken"))
            return company_view(company, actor)

    @rpc
    @once
    def rotate_provisioning_code(self, actor: dict, company_id: str) -> dict:
        """The old code stops enrolling machines at once; enrolled machines keep their tokens."""
        actor = domain.Actor.from_dict(actor)
        check_provisioning_role(actor)
        with self.db.unit_of_work() as uow:
            company = self._company(uow, actor.tenant_id, company_id)
            company.provisioning_code = domain.new_provisioning_code()
            company.updated_at = utcnow()
            uow.commit()
            return company_view(company, actor)

    @rpc
    def get_provisioning_code(self, actor: dict, company_id: str) -> dict:
        actor = domain.Actor.from_dict(actor)
        check_provisioning_role(actor)
        with self.db.unit_of_work() as uow:
            company = self._company(uow, actor.tenant_id, company_id)
            return contract.ProvisioningCode().dump({"company_id": company.id,
                                                     "provisioning_code": company.provisioning_code})

    def _company(self, uow, tenant_id, company_id) -> Company:
        company = uow.repo.company(tenant_id, parse_id(company_id, "company"))
        if company is None:
            raise NotFound("company not found", code="company_not_found")
        return company

    # users ---------------------------------------------------------------------------

    @rpc
    def get_user(self, actor: dict, user_id: str) -> dict:
        actor = domain.Actor.from_dict(actor)
        with self.db.unit_of_work() as uow:
            return contract.User().dump(self._user(uow, actor.tenant_id, user_id))

    @rpc
    def list_users(self, actor: dict, query: dict) -> dict:
        actor = domain.Actor.from_dict(actor)
        data = load(contract.UserQuery, query)
        after = decode_cursor(data["cursor"], text_value, uuid_value)
        with self.db.unit_of_work() as uow:
            users = uow.repo.users(actor.tenant_id, domain.USER_TYPES[data["type"]], data["q"],
                                   data["company_id"], data["limit"] + 1, after)
            page, more = users[:data["limit"]], len(users) > data["limit"]
            cursor = encode_cursor([page[-1].email_normalized, str(page[-1].id)]) if more else None
            return contract.UserList().dump({"items": page, "next_cursor": cursor})

    @rpc
    @once
    def create_user(self, actor: dict, payload: dict) -> dict:
        actor = domain.Actor.from_dict(actor)
        data = load(contract.UserCreate, payload)
        domain.check_can_manage_user(actor, None, data["role"])
        email = data["email"].strip()
        taken = Conflict(f"{email} is already a user", code="email_taken")
        with self.db.unit_of_work() as uow:
            if uow.repo.user_by_email(actor.tenant_id, domain.normalize_email(email)):
                raise taken
            company_id = self._company(uow, actor.tenant_id, data["company_id"]).id if data["company_id"] else None
            user = uow.repo.add(User(
                tenant_id=actor.tenant_id, email=email,
                email_normalized=domain.normalize_email(email), name=data["name"].strip(),
                role=data["role"], company_id=company_id,
                password_hash=hash_password(self.db.settings, data["password"]) if data["password"] else None))
            uow.emit("user_created", user_event(user))
            commit_unique(uow, taken)
            return contract.User().dump(user)

    @rpc
    @once
    def update_user(self, actor: dict, user_id: str, payload: dict) -> dict:
        """Email, name, role, company or password; the id never changes."""
        actor = domain.Actor.from_dict(actor)
        data = load(contract.UserUpdate, payload)
        with self.db.unit_of_work() as uow:
            user = self._user(uow, actor.tenant_id, user_id)
            if user.merged_into_id is not None:
                raise Conflict("a merged user cannot change", code="user_already_merged")
            domain.check_can_manage_user(actor, user.role, data.get("role"))
            if "password" in data:
                domain.check_password(data["password"])
            # What changed is decided here, from the loaded values, before any query below
            # (email, admins, company, sessions) can autoflush: session.is_modified() after
            # an autoflush answers False and the event was lost (ENGINEERING.md pitfall 18).
            changes = domain.user_changes(
                {field: getattr(user, field) for field in domain.SNAPSHOT_FIELDS}, data)
            if "email" in changes:
                normalized = domain.normalize_email(changes["email"])
                other = uow.repo.user_by_email(actor.tenant_id, normalized)
                if other is not None and other.id != user.id:
                    raise Conflict(f"{changes['email']} is already a user", code="email_taken")
            if "role" in changes and user.role == "admin" and uow.repo.count_admins(actor.tenant_id) <= 1:
                raise Conflict("the tenant's last admin cannot lose the role", code="last_admin")
            if changes.get("company_id") is not None:  # another tenant's is unknown: 404
                self._company(uow, actor.tenant_id, changes["company_id"])
            # every check done: now the writes
            for field, value in changes.items():
                setattr(user, field, value)
            if "email" in changes:
                user.email_normalized = domain.normalize_email(changes["email"])
            now = utcnow()
            if "password" in data:
                user.password_hash = hash_password(self.db.settings, data["password"])
                uow.repo.revoke_sessions_of(user.id, now)  # a new password signs everyone out
            if changes or "password" in data:
                user.updated_at = now
            # A password alone emits nothing: no other service keeps a password or anything
            # derived from it (the event carries email, name, role, company), so every
            # consumer would only rewrite its snapshots with the values it already has.
            if changes:
                stamp_version(uow, user, Conflict("email is already a user", code="email_taken"))
                uow.emit("user_updated", user_event(user))
            commit_unique(uow, Conflict("email is already a user", code="email_taken"))
            return contract.User().dump(user)

    @rpc
    @once
    def merge_users(self, actor: dict, payload: dict) -> dict:
        """`from` becomes a tombstone pointing at `into`; every service remaps its
        references on `user_merged`."""
        actor = domain.Actor.from_dict(actor)
        data = load(contract.UserMerge, payload)
        with self.db.unit_of_work() as uow:
            source = self._user(uow, actor.tenant_id, data["from_user_id"])
            target = self._user(uow, actor.tenant_id, data["into_user_id"])
            domain.check_merge(actor, source, target)
            now = utcnow()
            source.merged_into_id, source.merged_at, source.updated_at = target.id, now, now
            uow.repo.revoke_sessions_of(source.id, now)
            uow.session.flush()
            uow.emit("user_merged", {"tenant_id": source.tenant_id, "from_user_id": source.id,
                                     "into_user_id": target.id})
            uow.commit()
            return contract.MergeResult().dump({"from_": source, "into": target})

    @rpc
    def lookup_user(self, tenant_id: str, user_id: str) -> dict:
        """For services that keep snapshots and missed (or have not yet had) the event."""
        with self.db.unit_of_work() as uow:
            return contract.User().dump(self._user(uow, parse_id(tenant_id, "tenant"), user_id))

    @rpc
    def lookup_company(self, tenant_id: str, company_id: str) -> dict:
        with self.db.unit_of_work() as uow:
            return contract.Company().dump(self._company(uow, parse_id(tenant_id, "tenant"), company_id))

    @rpc
    def apply_retention(self, now: str | None = None, dry_run: bool = False,
                        tenant_id: str | None = None) -> dict:
        """Sessions expired or revoked more than a day ago are worth nothing; so are sign-in
        throttle rows whose window closed and whose lock is over. With `tenant_id` (a dry
        run only: the health snapshot of a tenant's staff), that tenant's sessions alone —
        throttle rows belong to no tenant."""
        now, tenant = retention_scope(now, dry_run, tenant_id)
        with self.db.unit_of_work() as uow:
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

    @rpc
    def registration_counts(self, tenant_id: str | None = None) -> dict:
        """Companies, people and machine users, of one tenant or of all (health snapshot)."""
        with self.db.unit_of_work() as uow:
            return uow.repo.registration_counts(parse_id(tenant_id, "tenant") if tenant_id else None)

    # for the devices service ------------------------------------------------------------

    @rpc
    def enrolment(self, code: str, email: str, name: str | None) -> dict:
        """What a machine's registration needs of accounts, in one call: the company its
        provisioning code enrols machines into (a wrong or rotated code is
        `invalid_provisioning_code`, 401 at the gateway) and the machine's person in it, as
        `ensure_person` makes them. (Two calls cost registration 8 % of its rate, issue 14.)"""
        with self.db.unit_of_work(read_only=True) as uow:
            company = uow.repo.company_by_code(code) if isinstance(code, str) and code else None
            if company is None:
                raise Unauthorized("unknown or rotated provisioning code",
                                   code="invalid_provisioning_code")
        return {"tenant_id": str(company.tenant_id), "company_id": str(company.id),
                "company_name": company.name,
                "collaborator": self._ensure_person(company.tenant_id, email, name, str(company.id))}

    @rpc
    def ensure_person(self, tenant_id: str, email: str, name: str | None,
                      company_id: str | None) -> dict:
        """The person with this email, created as a collaborator without a password when
        absent: how a machine's user or a linked user comes to exist. Never a staff role:
        a provisioning code must not mint managers (a machine's persona is the machine's)."""
        return self._ensure_person(parse_id(tenant_id, "tenant"), email, name, company_id)

    def _ensure_person(self, tenant, email: str, name: str | None, company_id: str | None) -> dict:
        data = load(contract.UserCreate, {"email": email, "name": name or str(email).split("@")[0],
                                          "role": "collaborator", "company_id": company_id})
        with self.db.unit_of_work() as uow:
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

    @rpc
    def find_person(self, tenant_id: str, email: str) -> dict:
        """The person with this email, never created: a machine's links name people who
        already exist. Unknown (or a machine's own user): 404 `email_not_found`."""
        tenant = parse_id(tenant_id, "tenant")
        unknown = NotFound("no user with this email: create them first", code="email_not_found",
                           details={"fields": {"email": ["no user with this email"]}})
        if not isinstance(email, str) or not email.strip():
            raise unknown
        with self.db.unit_of_work() as uow:
            user = uow.repo.user_by_email(tenant, domain.normalize_email(email))
            if user is None or user.role == "machine":
                raise unknown
            return contract.User().dump(user)

    @rpc
    def create_machine_user(self, tenant_id: str, company_id: str, hostname: str) -> dict:
        """Each machine has a user of role `machine` (its identity in tickets and audits)."""
        tenant = parse_id(tenant_id, "tenant")
        with self.db.unit_of_work() as uow:
            company = self._company(uow, tenant, company_id)
            local = uuid.uuid4().hex[:12]
            user = uow.repo.add(User(tenant_id=tenant, email=f"machine-{local}@machines.invalid",
                                     email_normalized=f"machine-{local}@machines.invalid",
                                     name=hostname[:200], role="machine", company_id=company.id))
            uow.emit("user_created", user_event(user))
            uow.commit()
            return contract.User().dump(user)

    def _user(self, uow, tenant_id, user_id) -> User:
        user = uow.repo.user(tenant_id, parse_id(user_id, "user"))
        if user is None:
            raise NotFound("user not found", code="user_not_found")
        return user


def reset_password(store, email: str, tenant_slug: str | None = None,
                   password: str | None = None) -> dict:
    """Operators' access recovery (`chamados reset-password`), straight on the accounts
    database through `store` (common.db.Store), so it works whether or not the services
    run: the person's new password (generated when none is given: answered once), and
    every session of theirs revoked. No event: no other service keeps a password."""
    generated = password is None
    password = secrets.token_urlsafe(12) if generated else password
    domain.check_password(password)
    with store.unit_of_work() as uow:
        candidates = uow.repo.people_by_email(domain.normalize_email(email), tenant_slug)
        user, slug = domain.account_to_recover(candidates, email.strip(), tenant_slug)
        now = utcnow()
        user.password_hash = hash_password(store.settings, password)
        user.updated_at = now
        revoked = uow.repo.revoke_sessions_of(user.id, now)
        uow.commit()
        return {"user": contract.User().dump(user), "tenant": slug, "revoked_sessions": revoked,
                "password": password if generated else None}

