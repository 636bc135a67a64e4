"""services/accounts/domain.py: what a user update changes (decided before any write, so no
autoflush can hide it: ENGINEERING.md pitfall 18), and whose password an operator resets."""
import uuid
from types import SimpleNamespace

import pytest

from common.errors import Conflict, NotFound, ValidationFailed
from services.accounts.domain import SNAPSHOT_FIELDS, account_to_recover, check_password, user_changes

COMPANY, OTHER_COMPANY = uuid.uuid4(), uuid.uuid4()
MARIA = {"email": "Maria@Example.com", "name": "Maria Souza", "role": "collaborator",
         "company_id": COMPANY}


def test_the_snapshot_fields_are_the_user_updated_payload():
    from common.events import UserChanged

    # `version` orders the changes (a projection keeps the newest), it is no snapshot field
    assert set(SNAPSHOT_FIELDS) == set(UserChanged().fields) - {"event_id", "occurred_at",
                                                               "tenant_id", "user_id", "version"}


@pytest.mark.parametrize("requested, expected", [
    ({}, {}),
    ({"password": "nova-senha-2"}, {}),  # not a snapshot field
    ({"name": "Maria Souza"}, {}),
    ({"name": "  Maria Souza \n"}, {}),  # stored trimmed: the same
    ({"company_id": COMPANY}, {}),
    ({"email": " Maria@Example.com "}, {}),
    ({"role": "collaborator", "company_id": COMPANY, "password": "x" * 8}, {}),
    ({"name": " Maria Silva "}, {"name": "Maria Silva"}),
    ({"email": "maria@example.com"}, {"email": "maria@example.com"}),  # the stored case changes
    ({"company_id": OTHER_COMPANY}, {"company_id": OTHER_COMPANY}),
    ({"company_id": None}, {"company_id": None}),
    ({"role": "agent", "name": "Maria Souza"}, {"role": "agent"}),
    ({"name": "Maria Silva", "company_id": COMPANY, "password": "nova-senha-2"}, {"name": "Maria Silva"}),
])
def test_user_changes_are_the_fields_whose_stored_value_differs(requested, expected):
    assert user_changes(MARIA, requested) == expected


def test_a_company_set_for_the_first_time_is_a_change():
    assert user_changes({**MARIA, "company_id": None}, {"company_id": COMPANY}) == {"company_id": COMPANY}
    assert user_changes({**MARIA, "company_id": None}, {"company_id": None}) == {}


@pytest.mark.parametrize("password", ["", "x" * 7, "x" * 257, None])
def test_a_weak_password_names_the_field_it_came_in(password):
    with pytest.raises(ValidationFailed) as raised:
        check_password(password, field="new_password")
    assert set(raised.value.details["fields"]) == {"new_password"}


def person(email="maria@example.com"):
    return SimpleNamespace(id=uuid.uuid4(), email=email)


def test_the_account_to_recover_is_the_only_one():
    maria = person()
    assert account_to_recover([(maria, "default")], "maria@example.com", None) == (maria, "default")


def test_no_account_to_recover_is_not_found():
    with pytest.raises(NotFound) as raised:
        account_to_recover([], "ghost@example.com", "acme")
    assert raised.value.code == "user_not_found"
    assert "ghost@example.com" in raised.value.message and "acme" in raised.value.message


def test_an_email_in_several_tenants_is_never_guessed():
    with pytest.raises(Conflict) as raised:
        account_to_recover([(person(), "b-co"), (person(), "a-co")], "maria@example.com", None)
    assert raised.value.code == "email_in_several_tenants"
    assert raised.value.details == {"tenants": ["a-co", "b-co"]}
