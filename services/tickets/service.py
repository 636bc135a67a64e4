"""tickets: for now a running service with `ping`, /metrics and its (empty) schema; the
tickets issue fills it."""
from common.db import Database
from common.service_base import ServiceBase
from services.tickets import storage


class Service(ServiceBase):
    name = "tickets"
    db = Database(metadata=storage.metadata)
