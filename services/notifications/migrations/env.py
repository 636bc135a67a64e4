from common.migrate import run_migrations_env
from services.notifications.storage import metadata

run_migrations_env(metadata)
