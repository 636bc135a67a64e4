"""AMQP short strings read leniently, in every process that consumes from the bus.

py-amqp reads short strings (properties such as message_id and reply_to, header names) as
strict UTF-8; a client that sent other bytes made every read of that queue fail, the same
message coming back each time (one heartbeat stalled ingestion for good). Undecodable bytes
read as U+FFFD instead. Installed by `common.bootstrap` in every process of the server; not
in the desktop agent, which speaks pika.
"""
import amqp.serialization


def lenient_text(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return value


def install() -> None:
    amqp.serialization.pstr_t = lenient_text
