"""services/accounts/domain.py: plain-Python account rules (no broker, no database)."""
import hashlib
import re
import uuid
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from common.errors import Conflict, Forbidden, ValidationFailed
from services.accounts import domain
from common.tokens import hash_token, new_secret_token
from services.accounts.domain import (Actor, check_can_manage_user, check_merge, check_password,
                                      new_provisioning_code, normalize_apelido, normalize_email)

SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def actor(role, user_id=None):
    return Actor(user_id or uuid.uuid4(), uuid.uuid4(), role)


def user(role, merged_into_id=None, id=None):
    return SimpleNamespace(id=id or uuid.uuid4(), role=role, merged_into_id=merged_into_id)


# --- normalize_email ----------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("Maria@Example.COM", "maria@example.com"),
    ("  joao@example.com\n", "joao@example.com"),
    ("\t ANA.Silva+Tag@Empresa.com.br  ", "ana.silva+tag@empresa.com.br"),
    ("already@lower.case", "already@lower.case"),
])
def test_normalize_email_lowers_and_trims(raw, expected):
    assert normalize_email(raw) == expected


def test_normalize_email_makes_case_variants_equal():
    assert normalize_email("Foo@Bar.com") == normalize_email(" foo@BAR.COM ")


# --- normalize_apelido --------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("empresa-x", "empresa-x"),
    ("acme", "acme"),
    ("a", "a"),
    ("7", "7"),
    ("filial-2-sul", "filial-2-sul"),
    ("123-456", "123-456"),
    ("Empresa-X", "empresa-x"),
    ("ACME", "acme"),
    ("  acme-ltda  ", "acme-ltda"),
    ("\tFilial-Sul\n", "filial-sul"),
    ("a" * 63, "a" * 63),
    ("-".join(["ab"] * 21), "-".join(["ab"] * 21)),  # 62 chars
])
def test_normalize_apelido_accepts_and_normalizes(raw, expected):
    assert normalize_apelido(raw) == expected


@pytest.mark.parametrize("raw", [
    "",
    "   ",
    "empresa x",
    "empresa\tx",
    "-empresa",
    "empresa-",
    "-",
    "empresa--x",
    "são-paulo",
    "café",
    "empresa_x",
    "empresa.x",
    "empresa!",
    "empresa/x",
    "a,b",
    "a" * 64,
    " " + "a" * 64 + " ",
    "-".join(["ab"] * 21) + "-c",  # 64 chars, otherwise valid
])
def test_normalize_apelido_rejects(raw):
    with pytest.raises(ValidationFailed) as caught:
        normalize_apelido(raw)
    error = caught.value
    assert error.code == "validation_failed"
    assert list(error.details["fields"]) == ["apelido"]
    assert error.details["fields"]["apelido"]  # a non-empty list of problems
    assert isinstance(error.details["fields"]["apelido"], list)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(),
    st.text(alphabet="abcXYZ019- \t", max_size=80),
    st.from_regex(r"\A[a-zA-Z0-9]{1,30}(-[a-zA-Z0-9]{1,30}){0,3}\Z"),
))
def test_normalize_apelido_output_is_a_slug_and_idempotent(raw):
    try:
        value = normalize_apelido(raw)
    except ValidationFailed as exc:
        assert "apelido" in exc.details["fields"]
        return
    assert SLUG.fullmatch(value)
    assert len(value) <= 63
    assert normalize_apelido(value) == value


# --- check_password -----------------------------------------------------------------------

@pytest.mark.parametrize("password", ["x" * 8, "x" * 9, "correct horse battery", "y" * 256])
def test_check_password_accepts_within_bounds(password):
    assert check_password(password) is None


@pytest.mark.parametrize("password", ["", "x", "x" * 7, "y" * 257, "z" * 10_000])
def test_check_password_rejects_out_of_bounds(password):
    with pytest.raises(ValidationFailed) as caught:
        check_password(password)
    assert caught.value.code == "validation_failed"
    assert "password" in caught.value.details["fields"]


def test_password_bounds_are_the_documented_ones():
    assert (domain.PASSWORD_MIN, domain.PASSWORD_MAX) == (8, 256)


# --- codes and tokens ---------------------------------------------------------------------

def test_new_provisioning_code_is_32_hex_and_distinct():
    codes = [new_provisioning_code() for _ in range(50)]
    for code in codes:
        assert re.fullmatch(r"[0-9a-f]{32}", code)
    assert len(set(codes)) == len(codes)


def test_new_secret_token_is_url_safe_and_hash_is_its_sha256():
    token, digest = new_secret_token()
    assert URL_SAFE.fullmatch(token)
    assert len(token) >= 43  # 32 random bytes
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest != token


def test_new_secret_tokens_are_distinct():
    tokens = [new_secret_token() for _ in range(50)]
    assert len({token for token, _ in tokens}) == 50
    assert len({digest for _, digest in tokens}) == 50


def test_hash_token_is_deterministic_and_sensitive():
    assert hash_token("abc") == hash_token("abc")
    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()
    assert hash_token("abc") != hash_token("abd")


# --- Actor --------------------------------------------------------------------------------

def test_actor_from_dict_parses_string_ids():
    user_id, tenant_id = uuid.uuid4(), uuid.uuid4()
    parsed = Actor.from_dict({"user_id": str(user_id), "tenant_id": str(tenant_id),
                              "role": "manager", "session_id": "ignored"})
    assert parsed == Actor(user_id, tenant_id, "manager")
    assert isinstance(parsed.user_id, uuid.UUID) and isinstance(parsed.tenant_id, uuid.UUID)
    assert not parsed.is_admin


def test_actor_from_dict_accepts_uuid_objects_and_admin():
    user_id, tenant_id = uuid.uuid4(), uuid.uuid4()
    parsed = Actor.from_dict({"user_id": user_id, "tenant_id": tenant_id, "role": "admin"})
    assert parsed.user_id == user_id and parsed.tenant_id == tenant_id
    assert parsed.is_admin


def test_actor_from_dict_rejects_bad_ids_and_missing_keys():
    with pytest.raises(ValueError):
        Actor.from_dict({"user_id": "nope", "tenant_id": str(uuid.uuid4()), "role": "admin"})
    with pytest.raises(KeyError):
        Actor.from_dict({"user_id": str(uuid.uuid4()), "tenant_id": str(uuid.uuid4())})


# --- check_can_manage_user ----------------------------------------------------------------

PERSON_ROLES = ("admin", "manager", "agent", "collaborator")


@pytest.mark.parametrize("current", [None, *PERSON_ROLES])
@pytest.mark.parametrize("new", [None, *PERSON_ROLES])
def test_admin_may_manage_any_person(current, new):
    assert check_can_manage_user(actor("admin"), current, new) is None


def test_admin_may_edit_a_machine_user_without_changing_its_role():
    assert check_can_manage_user(actor("admin"), "machine", None) is None
    assert check_can_manage_user(actor("admin"), "machine", "machine") is None


@pytest.mark.parametrize("role", ["admin", "manager", "agent", "collaborator"])
@pytest.mark.parametrize("current", [None, "admin", "manager", "agent", "collaborator"])
def test_nobody_sets_role_machine(role, current):
    with pytest.raises(ValidationFailed) as caught:
        check_can_manage_user(actor(role), current, "machine")
    assert caught.value.code == "validation_failed"
    assert "role" in caught.value.details["fields"]


@pytest.mark.parametrize("role", ["admin", "manager"])
@pytest.mark.parametrize("new", PERSON_ROLES)
def test_a_machine_never_becomes_a_person(role, new):
    with pytest.raises(Conflict) as caught:
        check_can_manage_user(actor(role), "machine", new)
    assert type(caught.value) is Conflict
    assert caught.value.code == "role_change_not_allowed"


@pytest.mark.parametrize("current, new", [
    (None, "agent"), (None, "collaborator"), (None, "manager"),
    ("agent", None), ("agent", "collaborator"), ("collaborator", "agent"),
    ("collaborator", "manager"), ("manager", "agent"), ("manager", None),
])
def test_manager_may_manage_staff_and_collaborators(current, new):
    assert check_can_manage_user(actor("manager"), current, new) is None


@pytest.mark.parametrize("current, new", [
    (None, "admin"),          # create an admin
    ("agent", "admin"),       # promote to admin
    ("manager", "admin"),
    ("admin", None),          # edit an admin
    ("admin", "admin"),
    ("admin", "agent"),       # demote an admin
    ("admin", "collaborator"),
])
def test_manager_may_not_create_or_touch_an_admin(current, new):
    with pytest.raises(Forbidden) as caught:
        check_can_manage_user(actor("manager"), current, new)
    assert type(caught.value) is Forbidden
    assert caught.value.code == "forbidden_role"


@pytest.mark.parametrize("role", ["agent", "collaborator", "machine"])
@pytest.mark.parametrize("current, new", [
    (None, "collaborator"), (None, "agent"), ("collaborator", None), ("agent", "manager"),
    ("admin", None),
])
def test_agents_and_collaborators_manage_nobody(role, current, new):
    with pytest.raises(Forbidden) as caught:
        check_can_manage_user(actor(role), current, new)
    assert type(caught.value) is Forbidden
    assert caught.value.code == "forbidden_role"


# --- check_merge --------------------------------------------------------------------------

def test_admin_may_merge_two_people():
    assert check_merge(actor("admin"), user("collaborator"), user("agent")) is None


def test_admin_may_merge_two_admins_and_two_machines():
    assert check_merge(actor("admin"), user("admin"), user("admin")) is None
    assert check_merge(actor("admin"), user("machine"), user("machine")) is None


def test_manager_may_merge_non_admins():
    assert check_merge(actor("manager"), user("collaborator"), user("manager")) is None


def test_actor_may_be_the_merge_target():
    me = actor("admin")
    assert check_merge(me, user("agent"), user("admin", id=me.user_id)) is None


def test_cannot_merge_a_user_into_itself():
    same = uuid.uuid4()
    with pytest.raises(Conflict) as caught:
        check_merge(actor("admin"), user("agent", id=same), user("agent", id=same))
    assert type(caught.value) is Conflict
    assert caught.value.code == "merge_not_allowed"


def test_cannot_merge_an_already_merged_source():
    source = user("agent", merged_into_id=uuid.uuid4())
    with pytest.raises(Conflict) as caught:
        check_merge(actor("admin"), source, user("agent"))
    assert caught.value.code == "user_already_merged"
    assert caught.value.details == {"user_id": str(source.id)}


def test_cannot_merge_into_an_already_merged_target():
    target = user("agent", merged_into_id=uuid.uuid4())
    with pytest.raises(Conflict) as caught:
        check_merge(actor("admin"), user("agent"), target)
    assert caught.value.code == "user_already_merged"
    assert caught.value.details == {"user_id": str(target.id)}


@pytest.mark.parametrize("source_role, target_role", [
    ("machine", "collaborator"), ("agent", "machine"), ("machine", "admin"),
])
def test_cannot_merge_a_machine_with_a_person(source_role, target_role):
    with pytest.raises(Conflict) as caught:
        check_merge(actor("admin"), user(source_role), user(target_role))
    assert type(caught.value) is Conflict
    assert caught.value.code == "merge_not_allowed"


def test_actor_cannot_merge_themself_away():
    me = actor("admin")
    with pytest.raises(Conflict) as caught:
        check_merge(me, user("admin", id=me.user_id), user("admin"))
    assert caught.value.code == "merge_not_allowed"


@pytest.mark.parametrize("source_role, target_role", [
    ("admin", "agent"), ("agent", "admin"), ("admin", "admin"),
])
def test_non_admin_cannot_merge_an_admin(source_role, target_role):
    with pytest.raises(Forbidden) as caught:
        check_merge(actor("manager"), user(source_role), user(target_role))
    assert type(caught.value) is Forbidden
    assert caught.value.code == "forbidden_role"
