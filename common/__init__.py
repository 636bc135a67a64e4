"""What every Chamados process shares.

Importing this package makes psycopg 3 cooperate with eventlet (ENGINEERING.md pitfall 1):
psycopg's default C wait function blocks the whole hub, so five concurrent queries ran one
after another. The environment variable must be set before psycopg is first imported, and
every process (services, CLI, tests) imports `common` before it touches the database.
"""
import os
import sys

os.environ["PSYCOPG_WAIT_FUNC"] = "wait_select"

if "psycopg.waiting" in sys.modules:  # imported too early: fail loudly, never run slowly
    _waiting = sys.modules["psycopg.waiting"]
    if _waiting.wait is not _waiting.wait_select:
        raise RuntimeError("psycopg was imported before `common`; import `common` first")

