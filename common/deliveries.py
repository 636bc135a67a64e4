"""What a batch consumer (`common.messaging.batch_consumer`) hands its handler, and what the
handler hands back, as plain data: a handler builds its verdicts without importing the broker
machinery. Pure: no infrastructure import here."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Delivery:
    """One message of a batch, as the handler sees it: its properties already checked."""

    index: int
    body: bytes
    headers: dict
    message_id: str | None
    reply_to: str | None
    correlation_id: str | None


@dataclass
class Verdict:
    """What the handler says of one delivery: dead-letter it (with the reason), and/or
    answer its `reply_to` after the batch committed."""

    dead_letter: str | None = None
    reply: dict | None = None
