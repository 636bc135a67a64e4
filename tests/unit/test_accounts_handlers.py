"""accounts' use-case handlers over the fake unit of work: no broker, no database. argon2 runs
for real, at the cheapest profile (PASSWORD_HASH_PROFILE=insecure-for-tests)."""
import uuid
from datetime import timedelta

import pytest

from common.config import Settings
from common.db import utcnow
from common.errors import Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized
from services.accounts import directory, passwords, provisioning, recovery, sessions, throttle
from services.accounts.storage import ApiSession, Company, SignInThrottle, Tenant, User
from tests.support.fake_uow import FakeStore

SETTINGS = Settings.from_mapping({"PASSWORD_HASH_PROFILE": "insecure-for-tests",
                                  "SIGN_IN_ACCOUNT_FAILURES": 3, "SIGN_IN_ADDRESS_FAILURES": 10})
PASSWORD = "right-password-1"


class FakeAccountsRepository:
    """The AccountsRepository methods the handlers call, over lists. Rows get what the
    database would give them on insert (id, version, timestamps)."""

    def __init__(self):
        self.tenants: list[Tenant] = []
        self.companies_: list[Company] = []
        self.users_: list[User] = []
        self.sessions: list[ApiSession] = []
        self.throttles: dict[str, SignInThrottle] = {}

    def add(self, row):
        now = utcnow()
        for column, value in (("id", uuid.uuid4()), ("version", 1), ("created_at", now), ("updated_at", now)):
            if hasattr(type(row), column) and getattr(row, column) is None:
                setattr(row, column, value)
        {Tenant: self.tenants, Company: self.companies_, User: self.users_,
         ApiSession: self.sessions}[type(row)].append(row)
        return row

    def flush(self):
        pass

    def stamp_version(self, row):
        row.version += 1

    def tenant_by_slug(self, slug):
        return next((t for t in self.tenants if t.slug == slug), None)

    def company(self, tenant_id, company_id):
        return next((c for c in self.companies_ if c.tenant_id == tenant_id and c.id == company_id), None)

    def company_by_code(self, code):
        return next((c for c in self.companies_ if c.provisioning_code == code), None)

    def company_by_apelido(self, tenant_id, apelido):
        return next((c for c in self.companies_ if c.tenant_id == tenant_id and c.apelido == apelido), None)

    def user(self, tenant_id, user_id):
        return next((u for u in self.users_ if u.tenant_id == tenant_id and u.id == user_id), None)

    def user_by_id(self, user_id):
        return next((u for u in self.users_ if u.id == user_id), None)

    def user_by_email(self, tenant_id, email_normalized):
        return next((u for u in self.users_ if u.tenant_id == tenant_id and u.merged_into_id is None
                     and u.email_normalized == email_normalized), None)

    def people_by_email(self, email_normalized, tenant_slug=None):
        slugs = {t.id: t.slug for t in self.tenants if tenant_slug is None or t.slug == tenant_slug}
        return sorted(((u, slugs[u.tenant_id]) for u in self.users_ if u.tenant_id in slugs
                       and u.email_normalized == email_normalized and u.merged_into_id is None
                       and u.role != "machine"), key=lambda pair: pair[1])

    def sign_in_candidates(self, email_normalized, tenant_slug):
        tenants = {t.id for t in self.tenants if tenant_slug is None or t.slug == tenant_slug}
        return [u for u in self.users_ if u.email_normalized == email_normalized and u.tenant_id in tenants
                and u.merged_into_id is None and u.password_hash is not None]

    def count_admins(self, tenant_id):
        return sum(1 for u in self.users_ if u.tenant_id == tenant_id and u.role == "admin"
                   and u.merged_into_id is None)

    def session_by_token_hash(self, token_hash):
        return next((s for s in self.sessions if s.token_hash == token_hash), None)

    def revoke_sessions_of(self, user_id, now, keep=None):
        live = [s for s in self.sessions if s.user_id == user_id and s.revoked_at is None and s.id != keep]
        for session in live:
            session.revoked_at = now
        return len(live)

    def purge_sessions(self, expired_before):
        self.sessions = [s for s in self.sessions if not (
            s.expires_at < expired_before or (s.revoked_at is not None and s.revoked_at < expired_before))]

    def throttle_counts(self, keys):
        return {key: self.throttles[key] for key in keys if key in self.throttles}

    def throttle_rows_for_update(self, keys, now):
        for key in keys:
            self.throttles.setdefault(key, SignInThrottle(key=key, failures=0, window_started_at=now,
                                                          locked_until=None, expires_at=now, updated_at=now))
        return self.throttle_counts(keys)

    def forget_throttle(self, keys):
        for key in keys:
            self.throttles.pop(key, None)

    def purge_throttles(self, now, limit=None):
        stale = [key for key, row in self.throttles.items() if row.expires_at <= now][:limit]
        self.forget_throttle(stale)
        return len(stale)


@pytest.fixture
def store():
    return FakeStore("accounts", FakeAccountsRepository())


@pytest.fixture
def tenant(store):
    with store.unit_of_work() as uow:
        row = uow.repo.add(Tenant(name="Acme", slug="acme"))
        admin = uow.repo.add(User(tenant_id=row.id, email="Admin@acme.test",
                                  email_normalized="admin@acme.test", name="Admin", role="admin",
                                  password_hash=passwords.hash_password(SETTINGS, PASSWORD)))
    return row, {"user_id": str(admin.id), "tenant_id": str(row.id), "role": "admin"}


def actor_of(user: dict, session_id=None) -> dict:
    principal = {"user_id": user["id"], "tenant_id": user["tenant_id"], "role": user["role"]}
    return {**principal, "session_id": str(session_id)} if session_id else principal


def a_person(store, admin, email="maria@acme.test", role="agent", **fields):
    return directory.create_user(store, SETTINGS, admin, {"email": email, "name": "Maria", "role": role,
                                                          "password": PASSWORD, **fields})


# create user ---------------------------------------------------------------------------------

def test_create_user_stores_the_person_and_emits_user_created_at_version_1(store, tenant):
    _, admin = tenant
    user = directory.create_user(store, SETTINGS, admin, {"email": "Maria@Acme.test", "name": " Maria ",
                                                          "role": "agent", "password": PASSWORD})
    assert (user["email"], user["name"], user["role"], user["has_password"], user["version"]) == \
        ("Maria@Acme.test", "Maria", "agent", True, 1)
    stored = store.repo.user_by_id(uuid.UUID(user["id"]))
    assert stored.email_normalized == "maria@acme.test"
    assert stored.password_hash != PASSWORD and passwords.HASHERS["insecure-for-tests"].verify(
        stored.password_hash, PASSWORD)
    [event] = store.events
    assert (event["type"], event["user_id"], event["email"], event["version"]) == \
        ("user_created", user["id"], "Maria@Acme.test", 1)


def test_create_user_refuses_a_taken_email_whatever_its_case_and_commits_nothing(store, tenant):
    _, admin = tenant
    a_person(store, admin)
    commits = store.commits
    with pytest.raises(Conflict) as refused:
        a_person(store, admin, email="MARIA@acme.test")
    assert refused.value.code == "email_taken"
    assert store.commits == commits and len(store.events) == 1


def test_a_manager_cannot_create_an_admin(store, tenant):
    _, admin = tenant
    manager = actor_of(a_person(store, admin, email="boss@acme.test", role="manager"))
    with pytest.raises(Forbidden):
        a_person(store, manager, email="new-admin@acme.test", role="admin")


# sign in -------------------------------------------------------------------------------------

def sign_in(store, password, email="admin@acme.test", address="198.51.100.7"):
    credentials = {"email": email, "password": password, "tenant": "acme"}
    return sessions.sign_in(store, SETTINGS, credentials, address)


def test_the_right_password_opens_a_session_that_authenticates(store, tenant):
    row, admin = tenant
    session = sign_in(store, PASSWORD, email="ADMIN@acme.test")
    assert session["user"]["id"] == admin["user_id"]
    assert session["expires_at"] > (utcnow() + timedelta(hours=SETTINGS.session_ttl_hours - 1)).isoformat()
    principal = sessions.authenticate(store, session["token"])
    assert (principal["user_id"], principal["tenant_id"], principal["role"]) == \
        (admin["user_id"], str(row.id), "admin")
    sessions.sign_out(store, session["token"])
    with pytest.raises(Unauthorized):
        sessions.authenticate(store, session["token"])


def test_a_wrong_password_is_refused_and_counted_for_the_account_and_the_address(store, tenant):
    row, _ = tenant
    with pytest.raises(Unauthorized) as refused:
        sign_in(store, "wrong-password")
    assert refused.value.code == "invalid_credentials"
    account = throttle.account_key(str(row.id), "admin@acme.test")
    address = throttle.address_key("198.51.100.7")
    assert {key: r.failures for key, r in store.repo.throttles.items()} == {account: 1, address: 1}
    assert store.repo.sessions == []


def test_an_unknown_email_is_counted_like_a_known_one(store, tenant):
    with pytest.raises(Unauthorized):
        sign_in(store, PASSWORD, email="nobody@acme.test")
    assert store.repo.throttles[throttle.account_key("acme", "nobody@acme.test")].failures == 1


def test_failures_up_to_the_limit_lock_the_account_even_for_the_right_password(store, tenant):
    for _ in range(SETTINGS.sign_in_account_failures):
        with pytest.raises(Unauthorized):
            sign_in(store, "wrong-password", address="198.51.100.1")
    with pytest.raises(TooManyRequests) as locked:
        sign_in(store, PASSWORD, address="203.0.113.9")  # another address: the account is locked
    assert 0 < locked.value.details["retry_after_seconds"] <= SETTINGS.sign_in_lock_seconds
    assert store.repo.sessions == []


def test_the_right_password_forgets_the_account_failures_not_the_address_ones(store, tenant):
    with pytest.raises(Unauthorized):
        sign_in(store, "wrong-password")
    sign_in(store, PASSWORD)
    assert set(store.repo.throttles) == {throttle.address_key("198.51.100.7")}


# change own password -------------------------------------------------------------------------

def test_changing_ones_own_password_ends_the_other_sessions_but_the_one_asking(store, tenant):
    _, admin = tenant
    asking, other = sign_in(store, PASSWORD), sign_in(store, PASSWORD)
    principal = sessions.authenticate(store, asking["token"])
    passwords.change_password(store, SETTINGS, principal, {"current_password": PASSWORD,
                                                           "new_password": "new-password-2"})
    sessions.authenticate(store, asking["token"])
    with pytest.raises(Unauthorized):
        sessions.authenticate(store, other["token"])
    with pytest.raises(Unauthorized):
        sign_in(store, PASSWORD)
    assert sign_in(store, "new-password-2")["user"]["id"] == admin["user_id"]
    assert store.events == []  # no other service keeps anything of a password


def test_a_wrong_current_password_changes_nothing_and_counts_for_the_account_and_the_address(store, tenant):
    row, _ = tenant
    principal = sessions.authenticate(store, sign_in(store, PASSWORD, address="203.0.113.9")["token"])
    stored_hash = store.repo.user_by_id(uuid.UUID(principal["user_id"])).password_hash
    for _ in range(SETTINGS.sign_in_account_failures):
        with pytest.raises(Forbidden) as refused:
            passwords.change_password(store, SETTINGS, principal, {"current_password": "wrong-password",
                                                                   "new_password": "new-password-2"},
                                      "198.51.100.7")
        assert refused.value.code == "wrong_password"
    assert {key: r.failures for key, r in store.repo.throttles.items()} == {
        throttle.account_key(str(row.id), "admin@acme.test"): 3, throttle.address_key("198.51.100.7"): 3}
    with pytest.raises(TooManyRequests):  # locked: the right one is refused too
        passwords.change_password(store, SETTINGS, principal, {"current_password": PASSWORD,
                                                               "new_password": "new-password-2"})
    assert store.repo.user_by_id(uuid.UUID(principal["user_id"])).password_hash == stored_hash


# update user ---------------------------------------------------------------------------------

def test_each_change_of_a_user_emits_user_updated_with_the_next_version(store, tenant):
    _, admin = tenant
    maria = a_person(store, admin)
    first = directory.update_user(store, SETTINGS, admin, maria["id"], {"name": "Maria Silva"})
    second = directory.update_user(store, SETTINGS, admin, maria["id"],
                                   {"email": "MARIA@acme.test", "role": "manager"})
    assert (first["version"], second["version"]) == (2, 3)
    updates = [e for e in store.events if e["type"] == "user_updated"]
    assert [(e["name"], e["email"], e["role"], e["version"]) for e in updates] == [
        ("Maria Silva", "maria@acme.test", "agent", 2), ("Maria Silva", "MARIA@acme.test", "manager", 3)]


def test_an_update_that_changes_nothing_or_only_the_password_emits_nothing(store, tenant):
    _, admin = tenant
    maria = a_person(store, admin)
    session = sign_in(store, PASSWORD, email=maria["email"])
    events = len(store.events)
    same = directory.update_user(store, SETTINGS, admin, maria["id"], {"name": " Maria ", "role": "agent"})
    directory.update_user(store, SETTINGS, admin, maria["id"], {"password": "new-password-2"})
    assert same["version"] == 1 and len(store.events) == events
    with pytest.raises(Unauthorized):  # a new password signs everyone out
        sessions.authenticate(store, session["token"])


def test_the_last_admin_cannot_lose_the_role(store, tenant):
    _, admin = tenant
    with pytest.raises(Conflict) as refused:
        directory.update_user(store, SETTINGS, admin, admin["user_id"], {"role": "agent"})
    assert refused.value.code == "last_admin"


def test_an_email_taken_by_another_user_is_refused(store, tenant):
    _, admin = tenant
    maria, joao = a_person(store, admin), a_person(store, admin, email="joao@acme.test")
    with pytest.raises(Conflict) as refused:
        directory.update_user(store, SETTINGS, admin, joao["id"], {"email": maria["email"].upper()})
    assert refused.value.code == "email_taken"


# merge users ---------------------------------------------------------------------------------

def test_a_merge_leaves_a_tombstone_ends_its_sessions_and_emits_user_merged(store, tenant):
    _, admin = tenant
    old, new = a_person(store, admin, email="old@acme.test"), a_person(store, admin, email="new@acme.test")
    session = sign_in(store, PASSWORD, email="old@acme.test")
    result = directory.merge_users(store, admin, {"from_user_id": old["id"], "into_user_id": new["id"]})
    assert result["from"]["merged_into_id"] == new["id"] and result["into"]["merged_into_id"] is None
    assert store.events[-1] == {**store.events[-1], "type": "user_merged", "from_user_id": old["id"],
                                "into_user_id": new["id"]}
    with pytest.raises(Unauthorized):
        sessions.authenticate(store, session["token"])
    with pytest.raises(Conflict) as again:
        directory.merge_users(store, admin, {"from_user_id": old["id"], "into_user_id": new["id"]})
    assert again.value.code == "user_already_merged"
    with pytest.raises(Conflict) as merged_user:
        directory.update_user(store, SETTINGS, admin, old["id"], {"name": "Ghost"})
    assert merged_user.value.code == "user_already_merged"


def test_a_user_cannot_be_merged_into_itself(store, tenant):
    _, admin = tenant
    maria = a_person(store, admin)
    with pytest.raises(Conflict) as refused:
        directory.merge_users(store, admin, {"from_user_id": maria["id"], "into_user_id": maria["id"]})
    assert refused.value.code == "merge_not_allowed"


# create company ------------------------------------------------------------------------------

def test_create_company_normalises_the_apelido_and_emits_company_created(store, tenant):
    _, admin = tenant
    company = directory.create_company(store, admin, {"name": " Empresa X ", "apelido": "Empresa-X"})
    assert (company["name"], company["apelido"], company["version"]) == ("Empresa X", "empresa-x", 1)
    assert len(company["provisioning_code"]) == 32
    [event] = store.events
    assert (event["type"], event["company_id"], event["apelido"], event["version"]) == \
        ("company_created", company["id"], "empresa-x", 1)
    agent = actor_of(a_person(store, admin))
    assert directory.get_company(store, agent, company["id"])["provisioning_code"] is None


def test_a_taken_apelido_is_refused(store, tenant):
    _, admin = tenant
    directory.create_company(store, admin, {"name": "Empresa X", "apelido": "empresa-x"})
    with pytest.raises(Conflict) as refused:
        directory.create_company(store, admin, {"name": "Another", "apelido": " EMPRESA-X "})
    assert refused.value.code == "apelido_taken"
    assert len(store.events) == 1


def test_a_company_update_emits_only_a_real_change_with_the_next_version(store, tenant):
    _, admin = tenant
    company = directory.create_company(store, admin, {"name": "Empresa X", "apelido": "empresa-x"})
    same = directory.update_company(store, admin, company["id"],
                                    {"name": " Empresa X ", "apelido": "EMPRESA-X"})
    renamed = directory.update_company(store, admin, company["id"], {"name": "Empresa Y"})
    assert (same["version"], renamed["version"]) == (1, 2)
    assert [(e["type"], e["name"], e["version"]) for e in store.events] == [
        ("company_created", "Empresa X", 1), ("company_updated", "Empresa Y", 2)]


# provisioning --------------------------------------------------------------------------------

def test_enrolment_answers_the_codes_company_and_makes_its_person_once(store, tenant):
    _, admin = tenant
    company = directory.create_company(store, admin, {"name": "Empresa X", "apelido": "empresa-x"})
    first = provisioning.enrolment(store, company["provisioning_code"], "ana@empresa-x.test", None)
    again = provisioning.enrolment(store, company["provisioning_code"], "ANA@empresa-x.test", "Ana")
    assert (first["company_id"], first["tenant_id"]) == (company["id"], admin["tenant_id"])
    assert first["collaborator"] == again["collaborator"]
    person = first["collaborator"]
    assert (person["name"], person["role"], person["company_id"]) == ("ana", "collaborator", company["id"])
    assert [e["type"] for e in store.events] == ["company_created", "user_created"]
    with pytest.raises(Unauthorized) as refused:
        provisioning.enrolment(store, "not-a-code", "ana@empresa-x.test", None)
    assert refused.value.code == "invalid_provisioning_code"


def test_a_rotated_code_enrols_nothing_and_only_admins_and_managers_see_codes(store, tenant):
    _, admin = tenant
    company = directory.create_company(store, admin, {"name": "Empresa X", "apelido": "empresa-x"})
    rotated = provisioning.rotate_provisioning_code(store, admin, company["id"])
    assert rotated["provisioning_code"] != company["provisioning_code"]
    with pytest.raises(Unauthorized):
        provisioning.enrolment(store, company["provisioning_code"], "ana@empresa-x.test", None)
    agent = actor_of(a_person(store, admin))
    with pytest.raises(Forbidden):
        provisioning.get_provisioning_code(store, agent, company["id"])


def test_a_machine_user_is_no_person_to_find(store, tenant):
    _, admin = tenant
    company = directory.create_company(store, admin, {"name": "Empresa X", "apelido": "empresa-x"})
    machine = provisioning.create_machine_user(store, admin["tenant_id"], company["id"], "pc-01")
    assert (machine["role"], machine["name"], machine["company_id"]) == ("machine", "pc-01", company["id"])
    with pytest.raises(NotFound) as unknown:
        provisioning.find_person(store, admin["tenant_id"], machine["email"])
    assert unknown.value.code == "email_not_found"
    assert provisioning.find_person(store, admin["tenant_id"], "ADMIN@acme.test")["id"] == admin["user_id"]


# recovery ------------------------------------------------------------------------------------

def test_a_reset_password_ends_every_session_and_answers_a_generated_password_once(store, tenant):
    session = sign_in(store, PASSWORD)
    reset = recovery.reset_password(store, SETTINGS, "Admin@acme.test")
    assert (reset["tenant"], reset["revoked_sessions"]) == ("acme", 1) and len(reset["password"]) >= 12
    with pytest.raises(Unauthorized):
        sessions.authenticate(store, session["token"])
    assert sign_in(store, reset["password"])["user"]["email"] == "Admin@acme.test"
    assert store.events == []


def test_a_reset_for_an_email_in_several_tenants_needs_the_tenant(store, tenant):
    with store.unit_of_work() as uow:
        other = uow.repo.add(Tenant(name="Other", slug="other"))
        uow.repo.add(User(tenant_id=other.id, email="admin@acme.test", email_normalized="admin@acme.test",
                          name="Admin", role="admin"))
    with pytest.raises(Conflict) as ambiguous:
        recovery.reset_password(store, SETTINGS, "admin@acme.test", password="new-password-2")
    assert ambiguous.value.details["tenants"] == ["acme", "other"]
    chosen = recovery.reset_password(store, SETTINGS, "admin@acme.test", "other", "new-password-2")
    assert (chosen["tenant"], chosen["password"]) == ("other", None)
