"""people.version and companies.version: the accounts version each snapshot holds, so an
older change arriving late does not overwrite a newer one (issue 26)

Revision ID: c7e9a1b3d5f7
Revises: a4c8e2f6b0d9
Create Date: 2026-12-07 19:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'c7e9a1b3d5f7'
down_revision = 'a4c8e2f6b0d9'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0: written before versions were known; the next versioned change applies over it
    op.add_column('people', sa.Column('version', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.add_column('companies', sa.Column('version', sa.Integer(), server_default=sa.text('0'), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('companies') as batch:
        batch.drop_column('version')
    with op.batch_alter_table('people') as batch:
        batch.drop_column('version')
