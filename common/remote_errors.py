"""Domain errors cross RPC as themselves: every `DomainError` class, those defined now and
those defined later, goes into nameko's remote-error registry, so a caller's proxy raises the
class the service raised (with its code, message and details) instead of a `RemoteError`.
Installed by `common.bootstrap`; `common.errors` itself stays plain Python for the domains."""
from nameko.exceptions import deserialize_to_instance

from common.errors import on_every_error_class


def install() -> None:
    on_every_error_class(deserialize_to_instance)
