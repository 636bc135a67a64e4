"""machines.usb_policy_supported: whether the machine's agent applies USB policies

Agents say so when they register (`capabilities`: ["usb_policy"]); the agent shipped here
does not, so a policy for its machines is refused instead of waiting and going STALE with an
alert. Machines registered before this change had no way to say it: false.

Revision ID: a3c5e7f9b1d3
Revises: f6b8d0e2a4c6
Create Date: 2026-12-04 18:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'a3c5e7f9b1d3'
down_revision = 'f6b8d0e2a4c6'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('machines') as batch:
        batch.add_column(sa.Column('usb_policy_supported', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('machines') as batch:
        batch.drop_column('usb_policy_supported')
