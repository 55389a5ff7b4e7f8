"""deliveries indexed by (status, id) instead of status alone: a sender takes the oldest `claimed`
rows, which PostgreSQL otherwise read in the order they lie and sorted, all of them, for every take

Revision ID: 0013
Revises: 0012
"""
from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _swap(drop: str, create: str, columns: list[str]) -> None:
    """On PostgreSQL built CONCURRENTLY (outside the migration's transaction), so a worker still
    running while the database is upgraded can go on writing deliveries meanwhile. Each step may
    have been done by a run that was stopped before the version was written (a cancelled build
    leaves an invalid index behind), so a run again redoes what is missing and fails on nothing."""
    if op.get_context().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            if op.get_bind().execute(text(INVALID_INDEX), {"name": create}).first() is not None:
                op.drop_index(create, table_name="deliveries", postgresql_concurrently=True)  # a cancelled build
            op.create_index(create, "deliveries", columns, postgresql_concurrently=True, if_not_exists=True)
            op.drop_index(drop, table_name="deliveries", postgresql_concurrently=True, if_exists=True)
        return
    op.create_index(create, "deliveries", columns, if_not_exists=True)
    op.drop_index(drop, table_name="deliveries", if_exists=True)


# The named index in this schema, when a cancelled CONCURRENTLY build left it invalid (IF NOT EXISTS would keep it).
INVALID_INDEX = """
SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = :name AND n.nspname = current_schema() AND NOT i.indisvalid
"""


def upgrade() -> None:
    _swap("ix_deliveries_status", "ix_deliveries_status_id", ["status", "id"])


def downgrade() -> None:
    _swap("ix_deliveries_status_id", "ix_deliveries_status", ["status"])
