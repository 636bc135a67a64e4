"""Admin ▸ Empresas and Admin ▸ Usuários."""
from __future__ import annotations

from services.gateway.console.web import page  # noqa: F401


class PeopleViews:
    pass
