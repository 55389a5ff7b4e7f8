"""deliveries indexed by (status, id) instead of status alone: a sender takes the oldest `claimed`
rows, which PostgreSQL otherwise read in the order they lie and sorted, all of them, for every take

Revision ID: 0013
Revises: 0012
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _swap(drop: str, create: str, columns: list[str]) -> None:
    """On PostgreSQL built CONCURRENTLY (outside the migration's transaction), so a worker still
    running while the database is upgraded can go on writing deliveries meanwhile."""
    if op.get_context().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.create_index(create, "deliveries", columns, postgresql_concurrently=True)
            op.drop_index(drop, table_name="deliveries", postgresql_concurrently=True)
        return
    op.create_index(create, "deliveries", columns)
    op.drop_index(drop, table_name="deliveries")


def upgrade() -> None:
    _swap("ix_deliveries_status", "ix_deliveries_status_id", ["status", "id"])


def downgrade() -> None:
    _swap("ix_deliveries_status_id", "ix_deliveries_status", ["status"])
