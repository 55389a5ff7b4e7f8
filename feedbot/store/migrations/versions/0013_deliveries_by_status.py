"""deliveries indexed by (status, id): a sender takes the oldest `claimed` row, and recovery reads
the `sending` ones, without reading every delivery ever made

Revision ID: 0013
Revises: 0012
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_deliveries_status_id"), "deliveries", ["status", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_deliveries_status_id"), table_name="deliveries")
