"""ENGINEERING.md pitfall 1: psycopg's default wait function blocks eventlet's hub, so
concurrent queries ran one after another. This fails if that ever comes back."""
import time

import eventlet
import psycopg.waiting
from sqlalchemy import text

from common.config import Settings
from common.db import create_service_engine

SLEEP_SECONDS, QUERIES = 0.5, 6


def test_wait_function_is_the_cooperative_one():
    assert psycopg.waiting.wait is psycopg.waiting.wait_select


def test_concurrent_queries_overlap_instead_of_queueing(private_database):
    engine = create_service_engine(Settings(database_url=private_database), "accounts")

    def sleep_in_database(_):
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_sleep(:s)"), {"s": SLEEP_SECONDS})

    try:
        sleep_in_database(None)  # warm the pool's first connection
        started = time.monotonic()
        list(eventlet.GreenPool(QUERIES).imap(sleep_in_database, range(QUERIES)))
        elapsed = time.monotonic() - started
    finally:
        engine.dispose()
    serial = SLEEP_SECONDS * QUERIES
    # overlapping, they take about one sleep; queued, about six: the bound sits between
    assert elapsed < serial * 0.6, f"{QUERIES} concurrent queries took {elapsed:.2f}s (serial: {serial}s)"
