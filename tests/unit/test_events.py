"""common/events.py: the bus contracts and validate_event."""
import json
import uuid
from datetime import datetime, timezone

import pytest

from common.contracts.accounts import ROLES
from common.events import CONTRACTS, validate_event


def merged_payload(**overrides):
    payload = {"tenant_id": str(uuid.uuid4()), "from_user_id": str(uuid.uuid4()),
               "into_user_id": str(uuid.uuid4())}
    payload.update(overrides)
    return payload


def user_payload(**overrides):
    payload = {"tenant_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()),
               "email": "maria@example.com", "name": "Maria", "role": "agent",
               "company_id": None}
    payload.update(overrides)
    return payload


def test_valid_user_merged_gets_event_id_and_occurred_at():
    payload = merged_payload()
    before = datetime.now(timezone.utc)
    message = validate_event("accounts", "user_merged", payload)
    after = datetime.now(timezone.utc)

    assert set(message) == {"event_id", "occurred_at", "tenant_id", "from_user_id", "into_user_id"}
    assert isinstance(message["event_id"], str)
    assert str(uuid.UUID(message["event_id"])) == message["event_id"]
    occurred = datetime.fromisoformat(message["occurred_at"])
    assert occurred.tzinfo is not None and occurred.utcoffset().total_seconds() == 0
    assert before <= occurred <= after
    for key in ("tenant_id", "from_user_id", "into_user_id"):
        assert message[key] == payload[key]
    assert json.loads(json.dumps(message)) == message


def test_uuid_objects_in_the_payload_become_strings():
    tenant, source, target = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    message = validate_event("accounts", "user_merged",
                             {"tenant_id": tenant, "from_user_id": source, "into_user_id": target})
    assert message["tenant_id"] == str(tenant)
    assert message["from_user_id"] == str(source)
    json.dumps(message)


def test_each_event_gets_its_own_event_id():
    ids = {validate_event("accounts", "user_merged", merged_payload())["event_id"] for _ in range(20)}
    assert len(ids) == 20


def test_input_payload_is_not_mutated():
    payload = merged_payload()
    snapshot = dict(payload)
    validate_event("accounts", "user_merged", payload)
    assert payload == snapshot


def test_a_given_event_id_is_kept():
    event_id = str(uuid.uuid4())
    message = validate_event("accounts", "user_merged", merged_payload(event_id=event_id))
    assert message["event_id"] == event_id


@pytest.mark.parametrize("role", ROLES)
def test_user_created_accepts_every_role(role):
    message = validate_event("accounts", "user_created", user_payload(role=role))
    assert message["role"] == role
    assert message["company_id"] is None


@pytest.mark.parametrize("source, event_type", [
    ("billing", "user_merged"),
    ("accounts", "user_deleted"),
    ("accounts", "UserMerged"),
    ("tickets", "user_merged"),
    ("", ""),
])
def test_unknown_source_or_event(source, event_type):
    with pytest.raises(ValueError, match="no event named"):
        validate_event(source, event_type, merged_payload())


@pytest.mark.parametrize("missing", ["tenant_id", "from_user_id", "into_user_id"])
def test_missing_required_field(missing):
    payload = merged_payload()
    del payload[missing]
    with pytest.raises(ValueError, match=missing):
        validate_event("accounts", "user_merged", payload)


@pytest.mark.parametrize("field", ["email", "name", "role", "company_id", "user_id"])
def test_missing_user_field(field):
    payload = user_payload()
    del payload[field]
    with pytest.raises(ValueError, match=field):
        validate_event("accounts", "user_updated", payload)


def test_extra_field():
    with pytest.raises(ValueError, match="outside its contract.*password"):
        validate_event("accounts", "user_merged", merged_payload(password="hunter2"))


@pytest.mark.parametrize("role", ["root", "superadmin", "ADMIN", ""])
def test_role_outside_the_roles(role):
    with pytest.raises(ValueError, match="role"):
        validate_event("accounts", "user_created", user_payload(role=role))


@pytest.mark.parametrize("field", ["tenant_id", "from_user_id", "into_user_id", "event_id"])
def test_a_field_that_is_not_a_uuid(field):
    with pytest.raises(ValueError, match=field):
        validate_event("accounts", "user_merged", merged_payload(**{field: "not-a-uuid"}))


def test_null_where_not_allowed():
    with pytest.raises(ValueError, match="into_user_id"):
        validate_event("accounts", "user_merged", merged_payload(into_user_id=None))


def test_an_occurred_at_of_the_wrong_type_is_a_value_error():
    """The docstring promises ValueError for any contract breach (not a TypeError from dump)."""
    with pytest.raises(ValueError):
        validate_event("accounts", "user_merged",
                       merged_payload(occurred_at="2024-01-01T00:00:00+00:00"))


def test_every_contract_carries_the_envelope_fields():
    for events in CONTRACTS.values():
        for schema in events.values():
            assert {"event_id", "occurred_at", "tenant_id"} <= set(schema().fields)
