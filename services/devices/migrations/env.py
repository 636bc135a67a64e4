from common.migrate import run_migrations_env

run_migrations_env()
