"""A service's own queues hold untrusted input: no message in them may stop the service.

nameko 2.14.1 trusts what arrives in its RPC queue. A request without `reply_to` or
`content_type` made its reply step raise (`KeyError: 'reply_to'`) in a managed thread, which
kills the container; the message came back on restart and crash-looped the service (issue 26:
one message in `rpc-scheduler`). A body kombu cannot decode (invalid JSON, a content type nobody
accepts) raised inside the consumer's drain loop, with the same end. And a reply is published
to the RPC exchange with `reply_to` as its routing key: a request whose `reply_to` was
`accounts.sign_in` would have had its answer delivered to accounts as a call.

Installed by `common.bootstrap`, for every queue of a service's QueueConsumer (RPC, event
handlers, reply listeners):

- a message that cannot be decoded is dead-lettered with the reason, then acked;
- an RPC request is answered only when it has the shape nameko's callers send — a JSON
  object with `args` (a list) and `kwargs` (an object), a `reply_to` that is a reply listener's
  routing key (nameko's callers use a UUID: it binds only their own reply queue) and a
  well-typed call-id stack; anything else is dead-lettered with the reason and never answered.

Dead-lettering goes through `common.messaging.dead_letter` (confirmed, headers made safe);
when the broker itself is gone the message stays unacked and comes back on reconnect.
"""
from __future__ import annotations

import logging
import re

from nameko.messaging import QueueConsumer
from nameko.rpc import RpcConsumer

from common.outages import BROKER_ERRORS, describe, warn_once

log = logging.getLogger(__name__)

# where a reply may go: the routing key of a caller's reply listener (a UUID), never another
# routing key of the RPC exchange (a service's method)
RPC_REPLY_ROUTING_KEY = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
CALL_ID_STACK_HEADER = "nameko.call_id_stack"


def is_reply_routing_key(name) -> bool:
    return isinstance(name, str) and RPC_REPLY_ROUTING_KEY.match(name) is not None


def rpc_request_problem(body, message) -> str | None:
    """Why this RPC request cannot be answered, or None when it has the callers' shape."""
    reply_to = message.properties.get("reply_to")
    if not is_reply_routing_key(reply_to):
        return "invalid: the reply_to property is not a reply listener's routing key (a UUID)"
    if message.properties.get("content_type") not in message.accept:
        return "invalid: the content_type property is not one the service accepts"
    if not isinstance(body, dict):
        return "invalid: the body is not an object"
    if not isinstance(body.get("args"), list) or not isinstance(body.get("kwargs"), dict):
        return "invalid: the body has no `args` list and `kwargs` object"
    stack = (message.headers or {}).get(CALL_ID_STACK_HEADER, [])
    if not isinstance(stack, list) or not all(isinstance(entry, str) for entry in stack):
        return f"invalid: the {CALL_ID_STACK_HEADER} header is not a list of text"
    return None


def park(queue_consumer, queue_name: str, message, reason: str) -> None:
    """Dead-letter and ack; never raises (this runs where an exception kills the service)."""
    from common.messaging import dead_letter  # here: common.messaging imports this module's peers

    try:
        dead_letter(queue_consumer.amqp_uri, queue_consumer.container.service_name, queue_name,
                    message, reason, attempts=1)
    except BROKER_ERRORS as exc:  # unacked: it comes back once the broker does
        warn_once(log, f"{queue_name}-park", "could not dead-letter a malformed message from %s, "
                  "the broker went away: %s", queue_name, describe(exc))
        return
    except Exception:  # a defect of ours: loud, but the service goes on
        log.exception("could not dead-letter a malformed message from %s", queue_name)
    queue_consumer.ack_message(message)


def _rpc_requests_checked(handle_message):
    def handle_checked_rpc_request(self, body, message):
        try:
            problem = rpc_request_problem(body, message)
        except Exception as exc:  # noqa: BLE001  (whatever it was, it is not a request)
            problem = f"invalid: {exc.__class__.__name__}"
        if problem is not None:
            park(self.queue_consumer, self.queue.name, message, problem)
            return None
        return handle_message(self, body, message)
    return handle_checked_rpc_request


def _undecodable_parked(get_consumers):
    def get_consumers_parking_undecodable(self, consumer_cls, channel):
        consumers = get_consumers(self, consumer_cls, channel)
        for consumer in consumers:
            queue_name = consumer.queues[0].name if consumer.queues else "?"
            consumer.on_decode_error = (
                lambda message, exc, queue_name=queue_name: park(
                    self, queue_name, message, f"undecodable: {exc.__class__.__name__}: {exc}"[:300]))
        return consumers
    get_consumers_parking_undecodable.guarded = True
    return get_consumers_parking_undecodable


def install() -> None:
    if not getattr(QueueConsumer.get_consumers, "guarded", False):
        QueueConsumer.get_consumers = _undecodable_parked(QueueConsumer.get_consumers)
        RpcConsumer.handle_message = _rpc_requests_checked(RpcConsumer.handle_message)
