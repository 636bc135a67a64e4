"""nameko riding out a broker outage, in every process that runs a service.

nameko 2.14.1 lets a reply it cannot publish (the broker is gone) escape the worker thread,
which kills the container: the process exited in 9 of 10 broker outages (ENGINEERING.md
pitfall 20). Here a reply, ack or requeue the broker cannot take is logged once per interval
and dropped instead: the caller's deadline answers it (503/504), and the unacked request is
redelivered once the connection is back, as after any lost connection.

A lost connection is one WARNING line per interval, without kombu's traceback. Its
consumers also reconnect every 2 s at most (kombu's default grows to 30 s), so a service
is consuming again within seconds of the broker's return.

Installed by `common.bootstrap`, in every process (the gateway's outage protection included).
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

import kombu.mixins
from nameko.messaging import QueueConsumer
from nameko.rpc import RpcConsumer

from common.outages import BROKER_ERRORS, describe, warn_once
from common.rpc import broker_circuit

log = logging.getLogger(__name__)

RECONNECT_FIRST_SECONDS, RECONNECT_STEP_SECONDS, RECONNECT_MAX_SECONDS = 0.5, 0.5, 2.0


def _reply_or_forget(handle_result):
    def handle_result_riding_out_outages(self, message, result, exc_info):
        try:
            return handle_result(self, message, result, exc_info)
        except BROKER_ERRORS as exc:
            warn_once(log, "rpc-reply", "the broker went away before a reply could be sent; the "
                      "caller will time out and the request comes back when it reconnects: %s",
                      describe(exc))
            return result, exc_info
    return handle_result_riding_out_outages


def _settle_or_forget(settle, what: str):
    def settle_riding_out_outages(self, message):
        try:
            settle(self, message)
        except BROKER_ERRORS as exc:
            warn_once(log, f"rpc-{what}", "could not %s a message, the broker went away (it comes "
                      "back on reconnect): %s", what, describe(exc))
    return settle_riding_out_outages


@contextmanager
def _establish_connection_promptly(self):
    with self.create_connection() as connection:
        connection.ensure_connection(self.on_connection_error, self.connect_max_retries,
                                     interval_start=RECONNECT_FIRST_SECONDS,
                                     interval_step=RECONNECT_STEP_SECONDS,
                                     interval_max=RECONNECT_MAX_SECONDS)
        yield connection


def _on_connection_error_quietly(self, exc, interval):
    # the first sign of an outage in this process: calls fail fast from here on (common/rpc.py)
    broker_circuit.trip(self.amqp_uri)
    warn_once(log, "consumer-connect", "cannot reach the broker (%s); retrying every %.1f s or "
              "less", describe(exc), interval)


def _warn_without_traceback(message, *args, exc_info=None, **kwargs):
    """kombu's consumer loop warns with a full traceback on every lost connection (one per
    service and outage: 118 in one fault run); one line, once per interval, says as much."""
    failure = sys.exc_info()[1] if exc_info else None
    text = message % args if args else message
    warn_once(log, "consumer-connection-lost", "%s%s", text.rstrip(". "),
              f": {describe(failure)}" if failure is not None else "")


def install() -> None:
    if getattr(RpcConsumer.handle_result, "__name__", "") == "handle_result_riding_out_outages":
        return
    RpcConsumer.handle_result = _reply_or_forget(RpcConsumer.handle_result)
    QueueConsumer.ack_message = _settle_or_forget(QueueConsumer.ack_message, "ack")
    QueueConsumer.requeue_message = _settle_or_forget(QueueConsumer.requeue_message, "requeue")
    QueueConsumer.establish_connection = _establish_connection_promptly
    QueueConsumer.on_connection_error = _on_connection_error_quietly
    kombu.mixins.warn = _warn_without_traceback
