"""Who may do what, beyond what domain.py's rules decide per ticket."""
from __future__ import annotations

from common.actor import Actor
from common.errors import Forbidden


def require_staff(actor: Actor, what: str) -> None:
    if not actor.is_staff:
        raise Forbidden(f"only staff may {what}", code="forbidden_role")


def require_admin(actor: Actor, what: str) -> None:
    if not actor.is_admin:
        raise Forbidden(f"only admins {what}", code="forbidden_role")
