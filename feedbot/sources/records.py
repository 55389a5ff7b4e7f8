"""Turning a source's fields into a paper record: cleaned text, the same title key as a dump."""

from __future__ import annotations

import re
from datetime import date

from feedbot.sources.dumps import MAX_TITLE_CHARS, dedupe_key
from feedbot.sources.ingest import PaperRecord
from feedbot.store import links

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def clean(text: str) -> str:
    """Control characters dropped (PostgreSQL refuses NUL), whitespace collapsed."""
    return " ".join(_CONTROL.sub(" ", text).split())


def record(title: str, abstract: str, listed_on: date, arxiv_id: str | None, authors: list[str],
           code_url: str | None = None, url: str | None = None) -> PaperRecord:
    title = clean(title)[:MAX_TITLE_CHARS]
    abstract = clean(abstract)
    return PaperRecord(
        key=dedupe_key(title) or f"arxiv {arxiv_id}",
        title=title,
        abstract=abstract,
        listed_on=listed_on,
        arxiv_id=arxiv_id,
        url=links.abs_url(arxiv_id) if arxiv_id else url,
        authors=links.join_authors(clean(a) for a in authors) or None,
        code_url=code_url or links.find_code_url(abstract),
    )
