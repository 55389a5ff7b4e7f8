"""the weekly recap: a subscriber's choice (NULL: the default for their frequency) and one row per
subscriber and week, claimed before the recap is sent

Revision ID: 0011
Revises: 0010
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("recap", sa.Boolean(), nullable=True))
    op.create_table(
        "recaps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("week", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_ids", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('claimed', 'sent', 'empty', 'failed', 'blocked')",
                           name=op.f("ck_recaps_status")),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE",
                                name=op.f("fk_recaps_subscriber_id_subscribers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recaps")),
        sa.UniqueConstraint("subscriber_id", "week", name=op.f("uq_recaps_subscriber_id")),
    )
    op.create_index(op.f("ix_recaps_week"), "recaps", ["week"])


def downgrade() -> None:
    op.drop_index(op.f("ix_recaps_week"), table_name="recaps")
    op.drop_table("recaps")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("recap")
