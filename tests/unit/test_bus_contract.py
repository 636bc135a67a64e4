"""Every event handler in the services is declared in common.events.SUBSCRIPTIONS (so its
queue exists before anything publishes, pitfall 9) and listens to an event its source
really emits; and every declared subscription has its handler."""
import importlib

from nameko.events import EventHandler

from common.config import SERVICE_NAMES
from common.events import CONTRACTS, SUBSCRIPTIONS
from common.messaging import ReliableEventHandler


def handlers_in_services():
    found = set()
    for name in SERVICE_NAMES:
        service = importlib.import_module(f"services.{name}.service").Service
        for attribute in dir(service):
            method = getattr(service, attribute)
            for entrypoint in getattr(method, "nameko_entrypoints", ()):
                if isinstance(entrypoint, EventHandler):
                    assert isinstance(entrypoint, ReliableEventHandler), (
                        f"{name}.{attribute} uses a plain @event_handler: use common.messaging.subscribe")
                    found.add((name, entrypoint.source_service, entrypoint.event_type, attribute))
    return found


def test_every_handler_is_declared_and_every_declaration_handled():
    assert handlers_in_services() == set(SUBSCRIPTIONS)


def test_subscriptions_name_events_their_source_emits():
    for consumer, source, event_type, method in SUBSCRIPTIONS:
        assert event_type in CONTRACTS[source], (consumer, source, event_type, method)
