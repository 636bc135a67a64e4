"""Storage plumbing every service shares: engines, the unit of work, the Database provider.

A service owns one PostgreSQL schema (its name; reached through `search_path`, so its tables
and Alembic's version table need no schema prefix) or, on the embedded default, its own
SQLite file under ./var/. The unit of work commits inside the worker (ENGINEERING.md
pitfall 5: nameko acks before teardown hooks run) and writes the outbox rows for its events
in the same transaction.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path

from nameko.extensions import DependencyProvider
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from common.config import Settings
from common.events import validate_event
from common.metrics import register_collector, register_database_collector
from common.outbox import OutboxRelay, outbox_row, outbox_table
from common.tables import (NAMING_CONVENTION, UTCDateTime, escape_like, is_sqlite,  # noqa: F401  (their old home)
                           new_metadata, upsert_insert, utcnow)
from common.unit_of_work import AbstractUnitOfWork

log = logging.getLogger(__name__)

def create_service_engine(settings: Settings, service: str) -> Engine:
    url = make_url(settings.database_url_for(service))
    if url.get_backend_name() == "sqlite":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    engine = create_engine(
        url,
        connect_args={"options": f"-c search_path={service}", "application_name": service},
        pool_size=settings.db_pool_size,
        max_overflow=10,
        pool_recycle=1800,
    )
    ping_connections_idle_for(engine, PING_AFTER_IDLE_SECONDS)
    return engine


# A pooled connection is pinged before use only when it sat unused this long (a database
# restart is noticed there); SQLAlchemy's pool_pre_ping pinged on every checkout, a round
# trip that was 7 % of the tickets process under a list load. A connection in use when the
# database goes away fails its statement once: SQLAlchemy then invalidates the whole pool.
PING_AFTER_IDLE_SECONDS = 5.0


def ping_connections_idle_for(engine: Engine, seconds: float) -> None:
    @event.listens_for(engine, "checkin")
    def _note_idle_since(dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_after_idle(dbapi_connection, record, proxy):
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < seconds:
            return
        try:
            # the dialect's own ping, as pool_pre_ping's: psycopg's runs it in autocommit, a
            # bare SELECT would leave a transaction open that a reader then cannot leave
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool replaces it with a fresh connection
            raise DisconnectionError(f"a pooled connection is dead: {exc.__class__.__name__}") from exc


def wait_until_reachable(engine: Engine, what: str, attempts: int | None = None) -> None:
    """Retry with backoff instead of crash-looping (Swarm ignores depends_on, pitfall 14)."""
    delay, attempt = 0.5, 0
    while True:
        attempt += 1
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return
        except Exception as exc:  # any driver error means "not yet"
            if attempts is not None and attempt >= attempts:
                raise
            log.warning("%s unreachable (attempt %d): %s; retrying in %.1fs", what, attempt,
                        exc.__class__.__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10)


class Repository:
    """Base of each service's repository: queries over the unit of work's session."""

    def __init__(self, session: Session):
        self.session = session

    def add(self, row):
        """Insert now (flush), so the row's defaults and id are known to the caller."""
        self.session.add(row)
        self.session.flush()
        return row


class UnitOfWork(AbstractUnitOfWork):
    """One transaction: the service's repository, plus the events to publish after commit.
    `read_only`: no transaction at all (autocommit), each statement sees the data as of its
    own start — for a read of one statement, which then costs one round trip instead of
    three (BEGIN, the query, ROLLBACK); it can neither commit nor emit."""

    def __init__(self, store: "Store", read_only: bool = False):
        self._store = store
        self.read_only = read_only
        self.session: Session | None = None
        self.repo = None
        self._events_written = False

    def __enter__(self) -> "UnitOfWork":
        factory = self._store.reader_factory if self.read_only else self._store.session_factory
        self.session = factory()
        if self._store.repository is not None:
            self.repo = self._store.repository(self.session)
        return self

    def __exit__(self, *exc_info):
        # close() rolls back whatever was not committed (the pool resets the connection) and
        # drops the objects; an explicit rollback() first only expired them all, for nothing
        self.session.close()

    def emit(self, event_type: str, payload: dict) -> dict:
        """Queue an event in the outbox, inside this transaction (pitfall 8)."""
        if self.read_only:
            raise RuntimeError("a read-only unit of work cannot emit events")
        message = validate_event(self._store.service, event_type, payload)
        # on the connection, not session.execute: the row depends on no pending ORM change,
        # and an autoflush here made a second flush pass before commit's (issue 14)
        self.session.connection().execute(self._store.outbox.insert(), outbox_row(event_type, message))
        self._events_written = True
        return message

    def commit(self) -> None:
        if self.read_only:
            raise RuntimeError("a read-only unit of work cannot commit")
        self.session.commit()
        if self._events_written and self._store.on_events_committed is not None:
            self._store.on_events_committed()
        self._events_written = False


class Store:
    """A service's database, usable from a nameko worker, the CLI or a test alike."""

    def __init__(self, settings: Settings, service: str, repository=None, metadata=None,
                 engine: Engine | None = None):
        self.settings = settings
        self.service = service
        self.repository = repository
        self.engine = engine or create_service_engine(settings, service)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        # the same pool, each connection switched to autocommit while a reader holds it
        self.reader_factory = sessionmaker(self.engine.execution_options(isolation_level="AUTOCOMMIT"),
                                           expire_on_commit=False)
        self.outbox = outbox_table(metadata) if metadata is not None else None
        self.on_events_committed = None

    def unit_of_work(self, read_only: bool = False) -> UnitOfWork:
        return UnitOfWork(self, read_only=read_only)

    @contextmanager
    def connection(self):
        with self.engine.begin() as connection:
            yield connection

    def vacuum(self, tables) -> dict:
        """VACUUM (ANALYZE) these tables of the service's schema (PostgreSQL; SQLite reuses
        freed pages by itself). Outside any transaction, as VACUUM requires."""
        if self.engine.dialect.name != "postgresql":
            return {"vacuumed": []}
        started = time.monotonic()
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table in tables:
                connection.execute(text(f'VACUUM (ANALYZE) "{table}"'))
        return {"vacuumed": list(tables), "seconds": round(time.monotonic() - started, 3)}

    def ping(self) -> bool:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True

    def dispose(self) -> None:
        self.engine.dispose()


class Database(DependencyProvider):
    """nameko dependency: `self.db.unit_of_work()` in a worker; relays the outbox when
    the service has one."""

    def __init__(self, repository=None, metadata=None, gauges=None):
        """`gauges(store)`, when given, yields the service's own metric families at
        scrape time (e.g. tickets by status)."""
        self.repository = repository
        self.metadata = metadata
        self.gauges = gauges
        self.store: Store | None = None
        self.relay = None

    def setup(self):
        settings = Settings.from_mapping(self.container.config)
        service = self.container.service_name
        self.store = Store(settings, service, self.repository, self.metadata)
        wait_until_reachable(self.store.engine, f"database for {service}")
        register_database_collector(self.store)
        if self.gauges is not None:
            store, gauges = self.store, self.gauges
            register_collector(f"gauges:{service}", lambda: gauges(store))
        if self.store.outbox is not None:
            self.relay = OutboxRelay(self.store, self.container.config)
            self.store.on_events_committed = self.relay.wake

    def start(self):
        if self.relay is not None:
            self.container.spawn_managed_thread(self.relay.run)

    def stop(self):
        if self.relay is not None:
            self.relay.stop()

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        return self.store

