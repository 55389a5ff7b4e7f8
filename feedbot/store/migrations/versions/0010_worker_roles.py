"""worker roles: which worker leads the schedules and which one polls Telegram, and since when,
in each worker's heartbeat (several workers run on one PostgreSQL database)

Revision ID: 0010
Revises: 0009
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("heartbeats") as batch:
        batch.add_column(sa.Column("role", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("role_since", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("polling", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("heartbeats") as batch:
        batch.drop_column("polling")
        batch.drop_column("role_since")
        batch.drop_column("role")
