"""Each service's Alembic history, upgraded to head, builds exactly the tables its
`storage.metadata` declares (nothing for `chamados revision` to autogenerate), on SQLite
and on PostgreSQL."""
import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from common.config import Settings
from common.db import create_service_engine
from common.migrate import MIGRATED_SERVICES, upgrade

# made by raw SQL in a migration, outside any metadata: SQLite's FTS5 table for ticket search
# and its shadow tables (tickets_fts_data, _idx, _docsize, _config)
SQLITE_RAW_TABLES = ("tickets_fts",)
# declared for PostgreSQL only (a GIN index over a tsvector); SQLite searches with FTS5
POSTGRESQL_ONLY_INDEXES = ("ix_tickets_search_vector",)


def differences(settings: Settings, service: str) -> list:
    metadata = importlib.import_module(f"services.{service}.storage").metadata
    engine = create_service_engine(settings, service)
    sqlite = engine.dialect.name == "sqlite"

    def compared(_object, name, type_, _reflected, _compare_to) -> bool:
        if not sqlite:
            return True
        if type_ == "index" and name in POSTGRESQL_ONLY_INDEXES:
            return False
        return not (type_ == "table" and any(name == raw or name.startswith(raw + "_")
                                             for raw in SQLITE_RAW_TABLES))

    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                                   "include_object": compared})
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


@pytest.mark.parametrize("service", MIGRATED_SERVICES)
def test_sqlite_migrations_match_the_models(service, tmp_path):
    settings = Settings(var_dir=tmp_path)
    upgrade(settings, services=(service,))
    assert differences(settings, service) == []


@pytest.mark.parametrize("service", MIGRATED_SERVICES)
def test_postgresql_migrations_match_the_models(service, private_database):
    assert differences(Settings(database_url=private_database), service) == []
