"""devices: for now a running service with `ping`, /metrics and its (empty) schema; the
devices issue fills it."""
from common.db import Database
from common.service_base import ServiceBase
from services.devices import storage


class Service(ServiceBase):
    name = "devices"
    db = Database(metadata=storage.metadata)
