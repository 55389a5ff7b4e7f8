"""unbounded message ids and picks per part; failing sweeps; worker progress

Revision ID: 0005
Revises: 0004
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column("message_ids", existing_type=sa.String(length=255), type_=sa.Text(),
                              existing_nullable=True)
        batch_op.alter_column("part_picks", existing_type=sa.String(length=255), type_=sa.Text(),
                              existing_nullable=True)
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("heartbeats", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("heartbeats", schema=None) as batch_op:
        batch_op.drop_column("progress_at")
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_column("failing_since")
        batch_op.drop_column("error")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        for column in ("part_picks", "message_ids"):  # longer values are cut, as the old columns held them
            batch_op.alter_column(column, existing_type=sa.Text(), type_=sa.String(length=255),
                                  existing_nullable=True, postgresql_using=f"left({column}, 255)")
