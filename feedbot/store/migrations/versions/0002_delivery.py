"""delivery records per part, worker heartbeats, indexes for the hot queries

Revision ID: 0002
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parts_sent", sa.SmallInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("source", sa.String(length=16), server_default="schedule", nullable=False))
        batch_op.add_column(sa.Column("owner", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_deliveries_status", ["status"], unique=False)
    with op.batch_alter_table("shown", schema=None) as batch_op:
        batch_op.create_index("ix_shown_paper_id", ["paper_id"], unique=False)
    op.create_table(
        "heartbeats",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("host", sa.String(length=128), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sweep_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sweep_finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_heartbeats")),
    )


def downgrade() -> None:
    op.drop_table("heartbeats")
    with op.batch_alter_table("shown", schema=None) as batch_op:
        batch_op.drop_index("ix_shown_paper_id")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_status")
        batch_op.drop_column("attempted_at")
        batch_op.drop_column("owner")
        batch_op.drop_column("source")
        batch_op.drop_column("parts_sent")
