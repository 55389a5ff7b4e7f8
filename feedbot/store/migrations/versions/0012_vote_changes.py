"""for each subscriber whose votes ever changed, the vote counter at their latest change, so ranking
can keep everyone's votes in memory and read again only the subscribers whose votes moved

Revision ID: 0012
Revises: 0011
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vote_changes",
        sa.Column("voter_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("voter_id", name=op.f("pk_vote_changes")),
    )
    op.create_index(op.f("ix_vote_changes_seq"), "vote_changes", ["seq"])


def downgrade() -> None:
    op.drop_index(op.f("ix_vote_changes_seq"), table_name="vote_changes")
    op.drop_table("vote_changes")
