"""scheduler: for now a running service with `ping` and /metrics. It keeps nothing
persistent; it connects to the database for the size gauges now and for its
advisory-lock leadership later (scheduler issue)."""
from common.db import Database
from common.service_base import ServiceBase


class Service(ServiceBase):
    name = "scheduler"
    db = Database()
