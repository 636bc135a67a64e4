"""Admin ▸ Saúde (/admin/health) and Relatórios (CSV exports)."""
from __future__ import annotations

from services.gateway.console.web import page  # noqa: F401


class OperationsViews:
    pass
