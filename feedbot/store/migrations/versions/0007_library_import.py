"""library import: papers known by DOI and never listed, imports, votes with their origin

Revision ID: 0007
Revises: 0006
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("doi", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_papers_doi"), ["doi"])
        batch_op.alter_column("first_listed", existing_type=sa.Date(), nullable=True)
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('running', 'done', 'failed', 'undone')", name=op.f("ck_imports_status")),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"],
                                name=op.f("fk_imports_subscriber_id_subscribers"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
    )
    with op.batch_alter_table("imports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_imports_subscriber_id"), ["subscriber_id"], unique=False)
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin", sa.String(length=16), nullable=False, server_default="tap"))
        batch_op.add_column(sa.Column("import_id", sa.Integer(), nullable=True))
        batch_op.create_check_constraint(batch_op.f("ck_votes_origin"), "origin IN ('tap', 'import')")
        batch_op.create_foreign_key(batch_op.f("fk_votes_import_id_imports"), "imports", ["import_id"], ["id"],
                                    ondelete="CASCADE")
        batch_op.create_index(batch_op.f("ix_votes_import_id"), ["import_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_votes_import_id"))
        batch_op.drop_constraint(batch_op.f("fk_votes_import_id_imports"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("ck_votes_origin"), type_="check")
        batch_op.drop_column("import_id")
        batch_op.drop_column("origin")
    with op.batch_alter_table("imports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_imports_subscriber_id"))
    op.drop_table("imports")
    # Papers only an import knew were never listed: they have no date to keep, so they go.
    op.execute("DELETE FROM votes WHERE paper_id IN (SELECT id FROM papers WHERE first_listed IS NULL)")
    op.execute("DELETE FROM shown WHERE paper_id IN (SELECT id FROM papers WHERE first_listed IS NULL)")
    op.execute("DELETE FROM papers WHERE first_listed IS NULL")
    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.alter_column("first_listed", existing_type=sa.Date(), nullable=False)
        batch_op.drop_constraint(batch_op.f("uq_papers_doi"), type_="unique")
        batch_op.drop_column("doi")
