"""tickets: full-text search over subject, description and public comments (`q`)

PostgreSQL: tickets.search_vector (tsvector, Portuguese configuration, accents folded) and its
GIN index. SQLite: the FTS5 table tickets_fts (unicode61, remove_diacritics 2), plus the same
column, NULL and unused, so both databases have the tables storage.py declares. Existing
tickets are indexed here (backfill), so tickets opened before the upgrade are found too.

Revision ID: e3a9c1f5b7d2
Revises: d8f2a4c6e1b3
Create Date: 2026-12-01 03:30:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = 'e3a9c1f5b7d2'
down_revision = 'd8f2a4c6e1b3'
branch_labels = None
depends_on = None

# as services/tickets/listing.py's SQL_ACCENTS (copied: a migration must not change later)
ACCENTED = "ÁÀÂÃÄÅáàâãäåÇçÉÈÊËéèêëÍÌÎÏíìîïÑñÓÒÔÕÖóòôõöÚÙÛÜúùûüÝýÿ"
PLAIN = "AAAAAAaaaaaaCcEEEEeeeeIIIIiiiiNnOOOOOoooooUUUUuuuuYyy"
PUBLIC_COMMENTS = ("(SELECT string_agg(c.body, E'\\n' ORDER BY c.created_at, c.id) FROM comments c "
                   "WHERE c.ticket_id = tickets.id AND c.visibility = 'PUBLIC')")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.add_column('tickets', sa.Column('search_vector', postgresql.TSVECTOR(), nullable=True))
        document = (f"tickets.subject || E'\\n' || coalesce(tickets.description, '') || E'\\n' || "
                    f"coalesce({PUBLIC_COMMENTS}, '')")
        op.execute(f"UPDATE tickets SET search_vector = to_tsvector('portuguese'::regconfig, "
                   f"lower(translate({document}, '{ACCENTED}', '{PLAIN}')))")
        op.create_index('ix_tickets_search_vector', 'tickets', ['search_vector'],
                        postgresql_using='gin')
        return
    with op.batch_alter_table('tickets') as batch:
        batch.add_column(sa.Column('search_vector', sa.Text(), nullable=True))
    op.execute("CREATE VIRTUAL TABLE tickets_fts USING fts5("
               "ticket_key, body, tokenize = 'unicode61 remove_diacritics 2')")
    op.execute("INSERT INTO tickets_fts (ticket_key, body) "
               "SELECT tickets.id, tickets.subject || char(10) || coalesce(tickets.description, '') "
               "|| char(10) || coalesce((SELECT group_concat(body, char(10)) FROM "
               "(SELECT c.body FROM comments c WHERE c.ticket_id = tickets.id "
               "AND c.visibility = 'PUBLIC' ORDER BY c.created_at, c.id)), '') FROM tickets")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index('ix_tickets_search_vector', table_name='tickets', postgresql_using='gin')
        op.drop_column('tickets', 'search_vector')
        return
    op.execute("DROP TABLE IF EXISTS tickets_fts")
    op.execute("ALTER TABLE tickets DROP COLUMN search_vector")  # SQLite ≥ 3.35, no table copy
