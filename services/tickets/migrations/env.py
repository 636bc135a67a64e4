from common.migrate import run_migrations_env
from services.tickets.storage import metadata

run_migrations_env(metadata)
