"""paper identity: arXiv id, URL, authors, code URL, folded search text

Revision ID: 0003
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 2000


def upgrade() -> None:
    with op.batch_alter_table('papers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('arxiv_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('url', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('authors', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('code_url', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('search_text', sa.Text(), nullable=False, server_default=''))
        batch_op.create_unique_constraint(batch_op.f('uq_papers_arxiv_id'), ['arxiv_id'])
    _backfill()


def _backfill() -> None:
    """Existing papers get the id and code their text names, and their folded search text (as ingest does)."""
    from feedbot.store.links import abs_url, identify
    from feedbot.store.textmatch import fold

    connection = op.get_bind()
    papers = sa.table('papers', sa.column('id', sa.Integer), sa.column('title', sa.Text),
                      sa.column('abstract', sa.Text), sa.column('arxiv_id', sa.String),
                      sa.column('url', sa.Text), sa.column('code_url', sa.Text),
                      sa.column('search_text', sa.Text))
    taken: set[str] = set()
    last = 0
    while True:
        rows = connection.execute(
            sa.select(papers.c.id, papers.c.title, papers.c.abstract).where(papers.c.id > last)
            .order_by(papers.c.id).limit(BATCH)
        ).all()
        if not rows:
            break
        updates = []
        for pid, title, abstract in rows:
            found = identify(title, abstract)
            arxiv_id = found.arxiv_id if found.arxiv_id not in taken else None
            if arxiv_id:
                taken.add(arxiv_id)
            updates.append({'pid': pid, 'aid': arxiv_id, 'u': abs_url(found.arxiv_id) if found.arxiv_id else None,
                            'c': found.code_url, 's': fold(f'{title}\n{abstract}')})
        connection.execute(
            papers.update().where(papers.c.id == sa.bindparam('pid')).values(
                arxiv_id=sa.bindparam('aid'), url=sa.bindparam('u'), code_url=sa.bindparam('c'),
                search_text=sa.bindparam('s')),
            updates,
        )
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table('papers', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_papers_arxiv_id'), type_='unique')
        batch_op.drop_column('search_text')
        batch_op.drop_column('code_url')
        batch_op.drop_column('authors')
        batch_op.drop_column('url')
        batch_op.drop_column('arxiv_id')
