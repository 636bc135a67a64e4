"""Admin ▸ Dispositivos: the fleet list and a device's page."""
from __future__ import annotations

from services.gateway.console.web import page  # noqa: F401


class DeviceViews:
    pass
