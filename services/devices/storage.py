"""devices tables (schema `devices`). For now only the outbox its events will go through."""
from common.db import new_metadata
from common.outbox import outbox_table

metadata = new_metadata()
outbox_table(metadata)
