"""which subscribers' votes each change of the vote counter touched, so ranking can keep everyone's
votes in memory and read again only the subscribers whose votes moved

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
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("voter_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq", "voter_id", name=op.f("pk_vote_changes")),
    )


def downgrade() -> None:
    op.drop_table("vote_changes")
