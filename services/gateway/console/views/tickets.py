"""Chamados: list with filters and a saved default, new ticket, the ticket page (actions, comments, timeline, live chat)."""
from __future__ import annotations

from services.gateway.console.web import page  # noqa: F401


class TicketViews:
    pass
