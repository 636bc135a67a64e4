"""services/gateway/http.py error_response: the one error table (ENGINEERING.md pitfall 11)."""
import logging

import orjson
import pytest
from nameko.exceptions import BadRequest as NamekoBadRequest
from werkzeug.exceptions import BadRequest as WerkzeugBadRequest
from werkzeug.exceptions import MethodNotAllowed, NotFound as RouteNotFound
from werkzeug.exceptions import RequestEntityTooLarge

from common.errors import (BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge,
                           RequestTimeout, TooManyRequests, Unauthorized, ValidationFailed)
from common.errors import ServiceTimeout, ServiceUnavailable
from services.gateway.responses import ERROR_STATUS, error_response

EXPECTED_STATUS = {
    BadRequest: 400, Unauthorized: 401, Forbidden: 403, NotFound: 404, Conflict: 409,
    RequestTimeout: 408, PayloadTooLarge: 413, ValidationFailed: 422, TooManyRequests: 429, ServiceUnavailable: 503, ServiceTimeout: 504,
}


def body_of(response):
    assert response.content_type == "application/json"
    return orjson.loads(response.get_data())


def test_table_is_the_documented_one():
    assert dict(ERROR_STATUS) == EXPECTED_STATUS


@pytest.mark.parametrize("cls, status", EXPECTED_STATUS.items())
def test_each_domain_error_maps_to_its_status(cls, status):
    error = cls("the thing went wrong", code="thing_wrong", details={"thing": "t1"})
    response = error_response(error)
    assert response.status_code == status
    assert body_of(response) == {"error": {"code": "thing_wrong", "message": "the thing went wrong",
                                           "details": {"thing": "t1"}}}


@pytest.mark.parametrize("cls, status", EXPECTED_STATUS.items())
def test_default_code_and_empty_details(cls, status):
    response = error_response(cls("plain"))
    assert response.status_code == status
    assert body_of(response) == {"error": {"code": cls.default_code, "message": "plain",
                                           "details": {}}}


def test_a_subclass_maps_like_its_parent():
    class TicketNotFound(NotFound):
        default_code = "ticket_not_found"

    response = error_response(TicketNotFound("no ticket"))
    assert response.status_code == 404
    assert body_of(response)["error"]["code"] == "ticket_not_found"


@pytest.mark.parametrize("cls", [TooManyRequests, ServiceUnavailable])
def test_429_and_503_say_when_to_retry(cls):
    assert error_response(cls("later")).headers["Retry-After"] == "5"
    named = error_response(cls("later", details={"retry_after_seconds": 12.2}))
    assert named.headers["Retry-After"] == "13"
    assert body_of(named)["error"]["details"] == {"retry_after_seconds": 12.2}
    assert "Retry-After" not in error_response(NotFound("gone")).headers


def test_401_asks_for_a_bearer_token():
    response = error_response(Unauthorized("invalid or expired token", code="invalid_token"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("cls", [cls for cls in EXPECTED_STATUS if cls is not Unauthorized])
def test_only_401_carries_www_authenticate(cls):
    assert "WWW-Authenticate" not in error_response(cls("x")).headers


def test_unknown_route():
    response = error_response(RouteNotFound())
    assert response.status_code == 404
    assert body_of(response)["error"]["code"] == "route_not_found"
    assert set(body_of(response)["error"]) == {"code", "message", "details"}


def test_method_not_allowed_lists_the_allowed_methods():
    response = error_response(MethodNotAllowed(valid_methods=["POST", "GET", "HEAD"]))
    assert response.status_code == 405
    error = body_of(response)["error"]
    assert error["code"] == "method_not_allowed"
    assert error["details"] == {"allowed": ["GET", "HEAD", "POST"]}


def test_method_not_allowed_without_methods():
    response = error_response(MethodNotAllowed())
    assert response.status_code == 405
    assert body_of(response)["error"]["details"] == {"allowed": []}


def test_request_entity_too_large():
    response = error_response(RequestEntityTooLarge())
    assert response.status_code == 413
    assert body_of(response)["error"]["code"] == "payload_too_large"


def test_other_werkzeug_errors_keep_their_status():
    response = error_response(WerkzeugBadRequest("raw detail from werkzeug"))
    assert response.status_code == 400
    body = body_of(response)
    assert body["error"]["code"] == "bad_request"
    assert "raw detail from werkzeug" not in response.get_data(as_text=True)


def test_nameko_bad_request():
    response = error_response(NamekoBadRequest("cannot decode: secret detail"))
    assert response.status_code == 400
    assert body_of(response)["error"]["code"] == "bad_request"
    assert "secret detail" not in response.get_data(as_text=True)


@pytest.mark.parametrize("exc", [
    RuntimeError("secret detail"),
    KeyError("secret detail"),
    ValueError("secret detail"),
    ZeroDivisionError("secret detail"),
])
def test_anything_unmapped_is_a_500_without_the_exception_text(exc, caplog):
    with caplog.at_level(logging.CRITICAL, logger="services.gateway.responses"):
        response = error_response(exc)
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "secret detail" not in text
    assert "Traceback" not in text and type(exc).__name__ not in text
    body = body_of(response)
    assert body["error"]["code"] == "internal_error"
    assert body["error"]["details"] == {}
    assert set(body["error"]) == {"code", "message", "details"}


def test_unmapped_error_is_logged(caplog):
    with caplog.at_level(logging.ERROR, logger="services.gateway.responses"):
        error_response(RuntimeError("secret detail"))
    assert any(record.exc_info and record.exc_info[1].args == ("secret detail",)
               for record in caplog.records)
