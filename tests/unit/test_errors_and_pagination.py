"""common/errors.py, common/pagination.py and common/contracts load/parse_id."""
import base64
import uuid

import orjson
import pytest
from hypothesis import given, settings, strategies as st
from marshmallow import fields
from nameko.exceptions import RemoteError, deserialize, serialize

from common.contracts import PageQuery, StrictSchema, load, parse_id
from common.errors import (BadRequest, Conflict, DomainError, Forbidden, NotFound,
                           PayloadTooLarge, Unauthorized, ValidationFailed, validation_failed)
from common.pagination import (datetime_value, decode_cursor, encode_cursor, text_value,
                               uuid_value)


def keep(value):
    return value

ERROR_CLASSES = {
    DomainError: "domain_error",
    BadRequest: "bad_request",
    ValidationFailed: "validation_failed",
    Unauthorized: "unauthorized",
    Forbidden: "forbidden",
    NotFound: "not_found",
    Conflict: "conflict",
    PayloadTooLarge: "payload_too_large",
}


def round_trip(exc):
    return deserialize(serialize(exc))


# --- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, default_code", ERROR_CLASSES.items())
def test_default_code_and_empty_details(cls, default_code):
    error = cls("something happened")
    assert error.code == default_code
    assert error.message == "something happened"
    assert error.details == {}
    assert str(error) == f"{default_code}: something happened"
    assert isinstance(error, DomainError)


@pytest.mark.parametrize("cls", ERROR_CLASSES)
def test_code_message_details_are_kept(cls):
    error = cls("ticket 7 not found", code="ticket_not_found", details={"ticket_id": "7"})
    assert error.code == "ticket_not_found"
    assert error.message == "ticket 7 not found"
    assert error.details == {"ticket_id": "7"}
    rebuilt = cls(*error.args)  # what nameko does with the args on the caller's side
    assert (rebuilt.message, rebuilt.code, rebuilt.details) == (error.message, error.code, error.details)


def test_message_is_text():
    assert NotFound(404).message == "404"


@pytest.mark.parametrize("cls", ERROR_CLASSES)
def test_round_trip_through_nameko_keeps_the_class(cls):
    original = cls("no such ticket", code="ticket_not_found",
                   details={"fields": {"subject": ["too long"]}, "ticket_id": "abc"})
    copy = round_trip(original)
    assert type(copy) is cls
    assert copy.code == "ticket_not_found"
    assert copy.message == "no such ticket"
    assert copy.details == {"fields": {"subject": ["too long"]}, "ticket_id": "abc"}


@pytest.mark.parametrize("cls, default_code", ERROR_CLASSES.items())
def test_round_trip_keeps_default_code(cls, default_code):
    copy = round_trip(cls("plain"))
    assert type(copy) is cls
    assert copy.code == default_code
    assert copy.details == {}


def test_round_trip_keeps_non_text_detail_values():
    """errors.py promises code, message and details arrive 'intact' across RPC."""
    original = ValidationFailed("too many", details={"limit": 500, "given": 501, "retry": None})
    copy = round_trip(original)
    assert copy.details == {"limit": 500, "given": 501, "retry": None}


def test_new_subclasses_register_themselves():
    class QuotaExceeded(Conflict):
        default_code = "quota_exceeded"

    copy = round_trip(QuotaExceeded("over quota"))
    assert type(copy) is QuotaExceeded
    assert copy.code == "quota_exceeded"


def test_unregistered_exception_becomes_remote_error():
    class Unregistered(Exception):
        pass

    for exc in (RuntimeError("boom"), KeyError("k"), Unregistered("x")):
        copy = round_trip(exc)
        assert type(copy) is RemoteError
        assert copy.exc_type == type(exc).__name__


def test_validation_failed_from_marshmallow_messages():
    error = validation_failed({"email": ["Not a valid email address."]})
    assert type(error) is ValidationFailed
    assert error.code == "validation_failed"
    assert error.details == {"fields": {"email": ["Not a valid email address."]}}


# --- pagination ---------------------------------------------------------------------------

@pytest.mark.parametrize("values", [
    ["2024-05-01T12:00:00+00:00", str(uuid.uuid4())],
    [1],
    [0, "a", None, True, 1.5],
    [[1, 2], {"k": "v"}],
    ["ação", "çé"],
    [],
])
def test_cursor_round_trip(values):
    cursor = encode_cursor(values)
    assert isinstance(cursor, str)
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor
    assert decode_cursor(cursor, *[keep] * len(values)) == values


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.integers(-2**53, 2**53), st.text(), st.booleans(), st.none()),
                max_size=6))
def test_cursor_round_trip_property(values):
    assert decode_cursor(encode_cursor(values), *[keep] * len(values)) == values


@pytest.mark.parametrize("cursor", [None, ""])
def test_no_cursor_is_none(cursor):
    assert decode_cursor(cursor, keep, keep) is None


def _bad(cursor, arity=2, parsers=None):
    with pytest.raises(ValidationFailed) as caught:
        decode_cursor(cursor, *(parsers or [keep] * arity))
    assert caught.value.code == "validation_failed"
    assert "cursor" in caught.value.details["fields"]


@pytest.mark.parametrize("cursor", [
    "!!!", "garbage", "a", "not a cursor at all", "%%%%", "é", "W1", "\x00",
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    base64.urlsafe_b64encode(b"[1, 2").decode(),
])
def test_garbage_cursor(cursor):
    _bad(cursor)


def test_wrong_arity():
    _bad(encode_cursor([1, 2, 3]), 2)
    _bad(encode_cursor([1]), 2)
    _bad(encode_cursor([]), 1)


@pytest.mark.parametrize("value", [{"a": 1}, 5, "text", None, True])
def test_non_list_cursor(value):
    cursor = base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")
    _bad(cursor, 1)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_decodes_or_fails_as_validation(cursor):
    try:
        result = decode_cursor(cursor, keep, keep)
    except ValidationFailed:
        return
    assert result is None or (isinstance(result, list) and len(result) == 2)


@pytest.mark.parametrize("values", [
    [None, None], [1, 2], ["a@example.com", "not-a-uuid"], [["nested"], {"a": 1}],
    ["a\x00b", str(uuid.uuid4())],
])
def test_forged_cursor_values_are_refused_by_their_parsers(values):
    _bad(encode_cursor(values), parsers=[text_value, uuid_value])


def test_typed_cursor_values_come_back_parsed():
    when, ident = "2024-05-01T12:00:00+00:00", uuid.uuid4()
    parsed = decode_cursor(encode_cursor([when, str(ident)]), datetime_value, uuid_value)
    assert parsed[1] == ident and parsed[0].isoformat() == when
    _bad(encode_cursor(["2024-05-01T12:00:00", str(ident)]), parsers=[datetime_value, uuid_value])


# --- contracts: load and parse_id ---------------------------------------------------------

class Thing(StrictSchema):
    name = fields.String(required=True)
    count = fields.Integer()


def test_load_returns_the_loaded_data():
    assert load(Thing, {"name": "x", "count": "3"}) == {"name": "x", "count": 3}


def test_load_of_none_is_an_empty_mapping():
    assert load(PageQuery, None) == {"limit": 50, "cursor": None}


def test_load_errors_become_validation_failed_with_fields():
    with pytest.raises(ValidationFailed) as caught:
        load(Thing, {"count": "many", "extra": 1})
    error = caught.value
    assert error.code == "validation_failed"
    fields_at_fault = error.details["fields"]
    assert set(fields_at_fault) == {"name", "count", "extra"}
    assert all(isinstance(problems, list) and problems for problems in fields_at_fault.values())


@pytest.mark.parametrize("query, field", [
    ({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"limit": "x"}, "limit"),
    ({"cursor": "c" * 513}, "cursor"), ({"sort": "asc"}, "sort"),
])
def test_page_query_bounds(query, field):
    with pytest.raises(ValidationFailed) as caught:
        load(PageQuery, query)
    assert list(caught.value.details["fields"]) == [field]


def test_load_partial():
    assert load(Thing, {"count": 1}, partial=True) == {"count": 1}


def test_parse_id_accepts_uuid_text_and_objects():
    value = uuid.uuid4()
    assert parse_id(value, "ticket") is value
    assert parse_id(str(value), "ticket") == value
    assert parse_id(str(value).upper(), "ticket") == value


@pytest.mark.parametrize("value", ["", "abc", "123", "not-a-uuid", None, 42,
                                   "00000000-0000-0000-0000-00000000000g"])
@pytest.mark.parametrize("what", ["ticket", "user", "machine"])
def test_parse_id_of_a_non_uuid_is_not_found(value, what):
    with pytest.raises(NotFound) as caught:
        parse_id(value, what)
    assert type(caught.value) is NotFound
    assert caught.value.code == f"{what}_not_found"
    assert caught.value.message == f"{what} not found"
