"""Prometheus metrics every service shares, and the /metrics response.

Metric names follow Prometheus conventions (base units, `_total`, `_seconds`, `_bytes`),
prefixed `chamados_`. The default registry also carries the standard process collector
(`process_resident_memory_bytes`, CPU seconds, open fds).
"""
from __future__ import annotations

import logging
import time

from nameko.extensions import DependencyProvider
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import text
from werkzeug.wrappers import Response

from common.logs import bind_worker_context, clear_worker_context

log = logging.getLogger(__name__)

ENTRYPOINT_DURATION = Histogram(
    "chamados_entrypoint_duration_seconds",
    "Time spent in a service entrypoint (RPC, event handler, HTTP route)",
    ["service", "entrypoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ENTRYPOINT_ERRORS = Counter(
    "chamados_entrypoint_errors_total",
    "Entrypoint calls that ended in an exception, by exception class",
    ["service", "entrypoint", "error"],
)
OUTBOX_PUBLISHED = Counter(
    "chamados_outbox_published_total",
    "Events the outbox relay published with a broker confirm",
    ["service"],
)


class EntrypointMetrics(DependencyProvider):
    """Times every entrypoint and binds service/entrypoint/call id to its log lines."""

    def __init__(self):
        self._started = {}

    def worker_setup(self, worker_ctx):
        self._started[worker_ctx] = time.perf_counter()
        bind_worker_context(worker_ctx.entrypoint.method_name, worker_ctx.call_id)

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self._started.pop(worker_ctx, None)
        entrypoint = worker_ctx.entrypoint.method_name
        service = self.container.service_name
        if started is not None:
            ENTRYPOINT_DURATION.labels(service, entrypoint).observe(time.perf_counter() - started)
        if exc_info is not None:
            ENTRYPOINT_ERRORS.labels(service, entrypoint, exc_info[0].__name__).inc()

    def worker_teardown(self, worker_ctx):
        clear_worker_context()


class CachedCollector:
    """Metric families read at scrape time and cached, so a scrape every few seconds costs
    at most one query per `ttl_seconds`; a failing read yields nothing rather than failing
    the scrape."""

    ttl_seconds = 5.0

    def __init__(self, read):
        self._read = read
        self._cached_at = float("-inf")
        self._cached = []

    def describe(self):
        return []  # read lazily; nothing to query at registration

    def collect(self):
        now = time.monotonic()
        if now - self._cached_at > self.ttl_seconds:
            try:
                self._cached = list(self._read())
            except Exception as exc:
                log.warning("metrics collection failed: %s", exc)
                self._cached = []
            self._cached_at = now
        return self._cached


_registered_collectors = {}


def register_collector(key: str, read) -> None:
    """Once per key per process (a test may start the same service twice)."""
    previous = _registered_collectors.pop(key, None)
    if previous is not None:
        REGISTRY.unregister(previous)
    collector = CachedCollector(read)
    REGISTRY.register(collector)
    _registered_collectors[key] = collector


def register_database_collector(store) -> None:
    register_collector(f"database:{store.service}", lambda: database_families(store))


def database_families(store):
    """Size of the database, and bytes and rows of each of the service's tables (the
    outbox's rows exactly: its backlog is what the alert watches)."""
    service = store.service
    database = GaugeMetricFamily(
        "chamados_database_size_bytes",
        "Size of the database this service uses (whole PostgreSQL database, or its SQLite file)",
        labels=["service"])
    table_bytes = GaugeMetricFamily(
        "chamados_table_size_bytes", "On-disk size of each of this service's tables, with indexes",
        labels=["service", "table"])
    table_rows = GaugeMetricFamily(
        "chamados_table_rows", "Rows in each of this service's tables (PostgreSQL: estimate)",
        labels=["service", "table"])
    with store.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            size, tables = _sqlite_sizes(connection)
        else:
            size, tables = _postgresql_sizes(connection, service)
        backlog = None
        if store.outbox is not None:
            backlog = connection.execute(text("SELECT count(*) FROM outbox")).scalar()
    database.add_metric([service], size)
    for name, nbytes, rows in tables:
        if nbytes is not None:
            table_bytes.add_metric([service, name], nbytes)
        table_rows.add_metric([service, name], rows)
    yield database
    yield table_bytes
    yield table_rows
    if backlog is not None:
        outbox = GaugeMetricFamily("chamados_outbox_backlog",
                                   "Events committed but not yet confirmed by the broker",
                                   labels=["service"])
        outbox.add_metric([service], backlog)
        yield outbox


def _postgresql_sizes(connection, schema):
    size = connection.execute(text("SELECT pg_database_size(current_database())")).scalar()
    tables = connection.execute(text(
        "SELECT c.relname, pg_total_relation_size(c.oid), COALESCE(s.n_live_tup, 0) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
        "WHERE n.nspname = :schema AND c.relkind = 'r'"), {"schema": schema}).all()
    return size, [(name, nbytes, rows) for name, nbytes, rows in tables]


def _sqlite_sizes(connection):
    page_size = connection.execute(text("PRAGMA page_size")).scalar()
    pages = connection.execute(text("PRAGMA page_count")).scalar()
    names = connection.execute(text(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")).scalars().all()
    tables = []
    for name in names:  # the embedded default is small: exact counts are cheap
        rows = connection.execute(text(f'SELECT count(*) FROM "{name}"')).scalar()
        tables.append((name, None, rows))
    return page_size * pages, tables


def metrics_response() -> Response:
    # a werkzeug Response: nameko's (status, body) tuple rejects bytes (pitfall 12)
    return Response(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
