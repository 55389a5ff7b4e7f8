"""groups and channels as subscribers: the kind of chat a subscriber is, and each member's own
vote on the group's picks (the group's profile learns from them together)

Revision ID: 0009
Revises: 0008
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), server_default="private", nullable=False))
        batch.create_check_constraint(batch.f("ck_subscribers_kind"), "kind IN ('private', 'group', 'channel')")
    op.create_table(
        "member_votes",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.SmallInteger(), nullable=False),
        sa.Column("voted_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("value IN (-1, 1)", name=op.f("ck_member_votes_value")),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE",
                                name=op.f("fk_member_votes_subscriber_id_subscribers")),
        sa.ForeignKeyConstraint(["paper_id"], ["papers.id"], ondelete="CASCADE",
                                name=op.f("fk_member_votes_paper_id_papers")),
        sa.PrimaryKeyConstraint("subscriber_id", "paper_id", "member_id", name=op.f("pk_member_votes")),
    )
    op.create_index(op.f("ix_member_votes_paper_id"), "member_votes", ["paper_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_member_votes_paper_id"), table_name="member_votes")
    op.drop_table("member_votes")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_constraint(batch.f("ck_subscribers_kind"), type_="check")
        batch.drop_column("kind")
