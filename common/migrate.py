"""Alembic, one migration history per service, each in the service's own schema/file.

`chamados migrate` upgrades every service; `chamados revision SERVICE -m MSG` autogenerates
a revision from the service's `storage.metadata`. Each service's migrations/env.py hands its
own metadata to `run_migrations_env()`: common imports no service (ENGINEERING.md).
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from common.config import ROOT, Settings
from common.db import create_service_engine, wait_until_reachable

MIGRATED_SERVICES = ("accounts", "tickets", "devices", "notifications")


def migrations_dir(service: str) -> Path:
    return ROOT / "services" / service / "migrations"


def alembic_config(service: str, connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir(service)))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    config.attributes["service"] = service
    return config


def ensure_schema(settings: Settings, service: str) -> None:
    if settings.is_sqlite:
        return
    engine = create_service_engine(settings, service)
    try:
        wait_until_reachable(engine, "database", attempts=30)
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{service}"'))
    finally:
        engine.dispose()


def upgrade(settings: Settings, services=MIGRATED_SERVICES) -> None:
    for service in services:
        ensure_schema(settings, service)
        engine = create_service_engine(settings, service)
        try:
            with engine.begin() as connection:
                command.upgrade(alembic_config(service, connection), "head")
        finally:
            engine.dispose()


def make_revision(settings: Settings, service: str, message: str) -> None:
    ensure_schema(settings, service)
    engine = create_service_engine(settings, service)
    try:
        with engine.begin() as connection:
            command.revision(alembic_config(service, connection), message=message,
                             autogenerate=True)
    finally:
        engine.dispose()


def run_migrations_env(metadata) -> None:
    """Body of every service's migrations/env.py (online mode only), given the service's
    table metadata."""
    from alembic import context

    config = context.config
    context.configure(
        connection=config.attributes["connection"],
        target_metadata=metadata,
        render_as_batch=config.attributes["connection"].dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
