"""A paper to store: the one record type the dump parser and the fetchers both produce, and its title key."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from feedbot.store import links

MAX_TITLE_CHARS = 300  # longer than any real title: such a line is an abstract out of place
CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_NON_WORD = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class PaperRecord:
    """One paper as a dump or a source lists it, or an imported library holds it (never listed:
    `listed_on` None); the optional fields say where it lives."""

    key: str
    title: str
    abstract: str
    listed_on: date | None
    arxiv_id: str | None = None
    url: str | None = None
    authors: str | None = None
    code_url: str | None = None
    line: int = 0  # the title's line in a dump (where a refusal points); 0 for a fetched paper
    doi: str | None = None  # lower-case, without https://doi.org/


def dedupe_key(title: str) -> str:
    """The same paper however it was typed: NFKC, casefolded, punctuation and spaces collapsed.

    A title with no word characters at all (emoji, symbols) keeps its symbols, so it is never the
    empty key that every such title would share.
    """
    folded = unicodedata.normalize("NFKC", title).casefold()
    words = " ".join(_NON_WORD.sub(" ", folded).split())
    return (words or " ".join(folded.split()) or title)[:512]


def from_dump(title: str, abstract: str, listed_on: date, line: int) -> PaperRecord:
    """A dump's paper, with the arXiv id its title names and the code URL its abstract names (see
    links.identify); an id only its abstract names is another paper's, never its link."""
    found = links.identify(title, abstract)
    return PaperRecord(dedupe_key(title), title, abstract, listed_on, found.arxiv_id,
                       links.abs_url(found.arxiv_id) if found.arxiv_id else None, None, found.code_url, line)


def clean(text: str) -> str:
    """Control characters dropped (PostgreSQL refuses NUL), whitespace collapsed."""
    return " ".join(CONTROL.sub(" ", text).split())


def from_source(title: str, abstract: str, listed_on: date, arxiv_id: str | None, authors: Iterable[str],
            code_url: str | None = None, url: str | None = None) -> PaperRecord:
    """A source's paper: text cleaned as a dump's is, the same title key, its arXiv page as its URL."""
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
