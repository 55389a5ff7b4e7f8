"""a counter of vote changes, bumped in the transaction of every change, so ranking can tell cheaply
whether the community's votes moved since it built its shared tables

Revision ID: 0006
Revises: 0005
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    counter = op.create_table(
        "vote_counter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("changes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vote_counter")),
    )
    op.bulk_insert(counter, [{"id": 1, "changes": 0}])


def downgrade() -> None:
    op.drop_table("vote_counter")
