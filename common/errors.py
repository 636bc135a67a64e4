"""Domain errors with stable machine codes, carried across RPC as themselves.

Plain Python, so domain modules raise them without loading nameko. `common.remote_errors`
(installed by `common.bootstrap`) registers every subclass with nameko's remote-error
registry, so a `NotFound` raised in the accounts service arrives in the gateway as a
`NotFound` (not a `RemoteError`), with its code, message and details intact. The gateway maps
the class to an HTTP status in one table.
"""
from typing import Callable

import orjson

_CLASS_LISTENERS: list[Callable[[type], object]] = []


class DomainError(Exception):
    default_code = "domain_error"

    def __init__(self, message, code=None, details=None):
        # The args are exactly what nameko serialises and passes back to __init__. nameko
        # turns every non-string value inside them into text, so the details travel as JSON
        # (and a JSON string given back to __init__ is the same details again).
        if isinstance(details, str):
            details = orjson.loads(details)
        super().__init__(str(message), code or self.default_code,
                         orjson.dumps(details or {}, default=str,
                                      option=orjson.OPT_NON_STR_KEYS).decode())

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for listener in _CLASS_LISTENERS:
            listener(cls)

    @property
    def message(self) -> str:
        return self.args[0]

    @property
    def code(self) -> str:
        return self.args[1]

    @property
    def details(self) -> dict:
        return orjson.loads(self.args[2])

    def __str__(self):
        return f"{self.code}: {self.message}"


def on_every_error_class(listener: Callable[[type], object]) -> None:
    """Calls `listener` with DomainError and each subclass: those defined now, then each one
    as it is defined."""
    _CLASS_LISTENERS.append(listener)
    classes = [DomainError]
    while classes:
        cls = classes.pop()
        listener(cls)
        classes.extend(cls.__subclasses__())


class BadRequest(DomainError):
    default_code = "bad_request"


class ValidationFailed(DomainError):
    default_code = "validation_failed"


class Unauthorized(DomainError):
    default_code = "unauthorized"


class Forbidden(DomainError):
    default_code = "forbidden"


class NotFound(DomainError):
    default_code = "not_found"


class Conflict(DomainError):
    default_code = "conflict"


class PayloadTooLarge(DomainError):
    default_code = "payload_too_large"


class RequestTimeout(DomainError):
    """The client took longer than its deadline to send the request (a slow or stalled body)."""
    default_code = "request_timeout"


def validation_failed(messages: dict) -> ValidationFailed:
    """From marshmallow's `ValidationError.messages` (field -> list of problems)."""
    return ValidationFailed("the request did not validate", details={"fields": messages})


class TooManyRequests(DomainError):
    """Refused for now; `details["retry_after_seconds"]` says when to try again."""
    default_code = "too_many_requests"


class ServiceUnavailable(DomainError):
    """A dependency (the broker, a database, a service) is unreachable: try again later.
    `details["retry_after_seconds"]`, when given, becomes the response's Retry-After."""
    default_code = "service_unavailable"


class ServiceTimeout(DomainError):
    default_code = "service_timeout"
