"""RPC replies: written once, published without a confirm, taken without an ack.

nameko 2.14.1's Responder serialises every result twice (a "can it be serialised" check,
then the publish) and publishes the reply persistent, with a publisher confirm: the worker
waits for the broker's ack and the broker does the confirm's work. A confirm on a reply
buys nothing here: a reply the broker cannot take is dropped anyway (common.nameko_outages)
and the caller's deadline answers for it, as for a reply lost after a confirm; a reply
queue is neither durable nor outlives its caller, so persistence buys nothing either.

On the caller's side (nameko's ReplyListener, in the gateway and every service that calls
another) a reply is consumed without acknowledgement: an ack is one more frame each way per
call, and a reply unacknowledged when its caller dies is of use to no one (its queue
expires with the caller).

Installed by `common.bootstrap`.
tests/integration/test_rpc_replies.py checks answers, errors and the unserialisable case.
"""
from __future__ import annotations

import sys

import kombu.serialization
from nameko import rpc as nameko_rpc
from nameko.amqp.publish import Publisher
from nameko.messaging import QueueConsumer
from nameko.exceptions import UnserializableValueError, serialize

TRANSIENT = 1


class ReplyPublisher(Publisher):
    use_confirms = False
    delivery_mode = TRANSIENT


class Responder(nameko_rpc.Responder):
    publisher_cls = ReplyPublisher

    def send_response(self, result, exc_info):
        """nameko's reply, its payload serialised once: {"result": ..., "error": ...}."""
        error = None if exc_info is None else serialize(exc_info[1])
        # answered in the codec the request came in, as nameko does
        serializer = kombu.serialization.registry.type_to_name[self.message.properties["content_type"]]
        try:
            content_type, content_encoding, body = kombu.serialization.dumps(
                {"result": result, "error": error}, serializer)
        except Exception:
            exc_info = sys.exc_info()
            content_type, content_encoding, body = kombu.serialization.dumps(
                {"result": None, "error": serialize(UnserializableValueError(result))}, serializer)
            result = None
        self.publisher_cls(self.amqp_uri, ssl=self.ssl, login_method=self.login_method).publish(
            body, content_type=content_type, content_encoding=content_encoding,
            exchange=self.exchange, routing_key=self.message.properties["reply_to"],
            correlation_id=self.message.properties.get("correlation_id"))
        return result, exc_info


def _replies_unacknowledged(get_consumers):
    def get_consumers_replies_unacknowledged(self, consumer_cls, channel):
        consumers = get_consumers(self, consumer_cls, channel)
        for provider, consumer in self._consumers.items():
            if isinstance(provider, nameko_rpc.ReplyListener):
                # read when the consumer starts (basic.consume), just after this; the
                # listener's own ack is then a no-op (kombu skips acks of no-ack consumers)
                consumer.no_ack = True
        return consumers
    get_consumers_replies_unacknowledged.installed = True
    return get_consumers_replies_unacknowledged


def install() -> None:
    # RpcConsumer.handle_result builds its Responder by this module-level name
    nameko_rpc.Responder = Responder
    if not getattr(QueueConsumer.get_consumers, "installed", False):
        QueueConsumer.get_consumers = _replies_unacknowledged(QueueConsumer.get_consumers)
