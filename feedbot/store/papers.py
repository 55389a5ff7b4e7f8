"""Read-side queries over papers and dumps, shared by the CLI, the bot and `feedbot status`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from feedbot.store.links import DEFAULT_PAPER_LINK, PaperLinks, links_for
from feedbot.store.models import Dump, Listing, Paper
from feedbot.store.textmatch import fold


@dataclass(frozen=True)
class DumpSummary:
    status: str
    count: int
    last_name: str
    last_error: str | None


def count_papers(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Paper)) or 0


def papers_per_date(session: Session) -> list[tuple[date, int, int]]:
    """(listing date, papers listed that day, papers first listed that day), newest first."""
    listed = (
        select(Listing.listed_on, func.count(func.distinct(Listing.paper_id)))
        .group_by(Listing.listed_on)
    )
    first = dict(session.execute(select(Paper.first_listed, func.count()).group_by(Paper.first_listed)).all())
    rows = [(day, n, first.get(day, 0)) for day, n in session.execute(listed)]
    return sorted(rows, reverse=True)


def dump_summaries(session: Session) -> list[DumpSummary]:
    out = []
    for status, count in session.execute(select(Dump.status, func.count()).group_by(Dump.status)):
        last = session.execute(
            select(Dump.file_name, Dump.error).where(Dump.status == status)
            .order_by(Dump.finished_at.desc().nulls_last(), Dump.id.desc()).limit(1)
        ).one()
        out.append(DumpSummary(status, count, last[0], last[1]))
    return sorted(out, key=lambda s: s.status)


def latest_dump_failed(session: Session) -> bool:
    """Whether the most recent dump failed: the digest then says so instead of 'no new papers'."""
    status = session.scalar(select(Dump.status).order_by(Dump.started_at.desc(), Dump.id.desc()).limit(1))
    return status == "failed"


def search_text(title: str, abstract: str, authors: str | None = None) -> str:
    """What /search matches against, stored folded (see textmatch.fold)."""
    return fold(f"{title}\n{abstract}\n{authors or ''}".rstrip("\n"))


def _containing(query, words: str):
    """Only papers whose title, abstract or authors contain every word (case and accents ignored)."""
    terms = fold(words).split()[:8]
    return query.where(and_(*[Paper.search_text.contains(t, autoescape=True) for t in terms])) if terms else query


def search_papers(session: Session, words: str, limit: int = 10) -> list[Paper]:
    """Listed papers whose title, abstract or authors contain every word, newest first. Papers known
    only from imported libraries are not listed, so never found."""
    query = _containing(select(Paper).where(Paper.first_listed.is_not(None)), words)
    query = query.order_by(Paper.first_listed.desc(), Paper.id.desc()).limit(limit)
    return list(session.scalars(query))


def papers_listed_on(session: Session, day: date, limit: int = 100, words: str = "") -> list[Paper]:
    """Papers listed on `day` (containing every word, if any), in the page's order."""
    query = select(Paper).join(Listing, Listing.paper_id == Paper.id).where(Listing.listed_on == day)
    query = _containing(query, words).group_by(Paper.id).order_by(func.min(Listing.position), Paper.id).limit(limit)
    return list(session.scalars(query))


def links_of(paper: Paper, template: str = DEFAULT_PAPER_LINK) -> PaperLinks:
    return links_for(paper.arxiv_id, paper.url, paper.title, paper.authors, paper.code_url, template)
