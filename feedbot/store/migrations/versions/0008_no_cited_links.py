"""papers no longer link to an arXiv id their abstract names (a cited paper's), only to their own

Revision ID: 0008
Revises: 0007
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ABS = "https://arxiv.org/abs/"


def upgrade() -> None:
    """Clear the link of papers without an arXiv id of their own whose link is the arXiv page of
    an id their title does not name: ingest took it from the abstract, where it is a citation."""
    from feedbot.store.links import find_arxiv_ids

    connection = op.get_bind()
    papers = sa.table("papers", sa.column("id", sa.Integer), sa.column("title", sa.Text),
                      sa.column("arxiv_id", sa.String), sa.column("url", sa.Text))
    rows = connection.execute(
        sa.select(papers.c.id, papers.c.title, papers.c.url)
        .where(papers.c.arxiv_id.is_(None), papers.c.url.startswith(ABS))
    ).all()
    cited = [{"pid": pid} for pid, title, url in rows if url.removeprefix(ABS) not in find_arxiv_ids(title)]
    if cited:
        connection.execute(papers.update().where(papers.c.id == sa.bindparam("pid")).values(url=None), cited)


def downgrade() -> None:
    """Nothing to undo: the links cleared were wrong."""
