"""machines.assigned_user_version and machine_links.user_version: the accounts version of
the name and email kept there, so an older change arriving late does not overwrite a newer
one (issue 26)

Revision ID: d9f1b3c5e7a9
Revises: b5d7f9a1c3e5
Create Date: 2026-12-07 19:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'd9f1b3c5e7a9'
down_revision = 'b5d7f9a1c3e5'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0: written before versions were known; the next versioned change applies over it
    op.add_column('machines', sa.Column('assigned_user_version', sa.Integer(), server_default=sa.text('0'),
                                        nullable=False))
    op.add_column('machine_links', sa.Column('user_version', sa.Integer(), server_default=sa.text('0'),
                                             nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('machine_links') as batch:
        batch.drop_column('user_version')
    with op.batch_alter_table('machines') as batch:
        batch.drop_column('assigned_user_version')
