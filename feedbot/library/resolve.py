"""Library entries → papers to store. An entry's own title and abstract are used as they are; one
with an arXiv id and no abstract is read from arXiv, one with a DOI and no abstract from OpenAlex;
one with only a title is kept title-only. What cannot be resolved is listed with why."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from feedbot.library.fetch import ARXIV_BATCH, OPENALEX_BATCH, Found, arxiv_papers, batches, openalex_papers
from feedbot.library.parse import Entry, Skipped
from feedbot.sources.http import Client, SourceError
from feedbot.sources.records import PaperRecord, from_source

log = logging.getLogger(__name__)

UNREACHABLE = "not reachable now — send the file again later"
Progress = Callable[[int, int], None]


@dataclass
class Apis:
    """Where the fetchers go, and the polite clients they use (arXiv paced at one request every 3 s),
    made on first use: an import whose entries all carry their text opens no connection."""

    arxiv_url: str
    openalex_url: str
    arxiv: Client | None = None
    openalex: Client | None = None

    @classmethod
    def from_settings(cls, settings) -> Apis:
        return cls(settings.arxiv_api_url, settings.openalex_api_url)

    def arxiv_client(self) -> Client:
        from feedbot.sources.arxiv import MIN_INTERVAL

        self.arxiv = self.arxiv or Client(min_interval=MIN_INTERVAL)
        return self.arxiv

    def openalex_client(self) -> Client:
        self.openalex = self.openalex or Client(min_interval=0.1)
        return self.openalex

    def close(self) -> None:
        for client in (self.arxiv, self.openalex):
            if client is not None:
                client.http.close()


@dataclass
class Resolved:
    papers: list[tuple[Entry, PaperRecord]] = field(default_factory=list)
    fetched: int = 0
    title_only: int = 0
    skipped: list[Skipped] = field(default_factory=list)


def _fetch_all(ids: list[str], size: int, fetch: Callable[[list[str]], dict[str, Found]], what: str,
               tick: Callable[[list[str]], None]) -> tuple[dict[str, Found], set[str]]:
    """Every batch fetched (`tick` after each), until the API cannot be reached: then the rest are
    `unreachable`."""
    found: dict[str, Found] = {}
    for number, batch in enumerate(batches(ids, size)):
        try:
            found.update(fetch(batch))
        except SourceError as exc:
            log.warning("library import: %s not reachable: %s", what, exc)
            return found, set(ids[number * size:])
        tick(batch)
    return found, set()


def resolve(entries: list[Entry], apis: Apis, progress: Progress | None = None) -> Resolved:
    total, done = len(entries), 0

    def tick(count: int) -> None:
        nonlocal done
        done = min(total, done + count)
        if progress:
            progress(done, total)

    tick(sum(1 for e in entries if e.abstract or not (e.arxiv_id or e.doi)))
    arxiv_ids = list(dict.fromkeys(e.arxiv_id for e in entries if e.arxiv_id and not e.abstract))
    from_arxiv, arxiv_down = _fetch_all(arxiv_ids, ARXIV_BATCH,
                                        lambda b: arxiv_papers(apis.arxiv_client(), apis.arxiv_url, b), "arXiv",
                                        lambda batch: tick(len(batch)))
    dois = list(dict.fromkeys(e.doi for e in entries if e.doi and not e.abstract
                              and not (e.arxiv_id and e.arxiv_id in from_arxiv and from_arxiv[e.arxiv_id].abstract)))
    doi_only = {e.doi for e in entries if e.doi and not e.abstract and not e.arxiv_id}  # arXiv ticked the rest
    from_openalex, openalex_down = _fetch_all(
        dois, OPENALEX_BATCH, lambda b: openalex_papers(apis.openalex_client(), apis.openalex_url, b), "OpenAlex",
        lambda batch: tick(sum(1 for doi in batch if doi in doi_only)))
    if progress:
        progress(total, total)

    out = Resolved()
    for entry in entries:
        found = (from_arxiv.get(entry.arxiv_id) if entry.arxiv_id else None) or \
            (from_openalex.get(entry.doi) if entry.doi else None)
        if found is not None and not entry.abstract and (found.abstract or not entry.title):
            entry = dataclasses.replace(
                entry, title=entry.title or found.title, abstract=found.abstract,
                authors=entry.authors or found.authors, arxiv_id=entry.arxiv_id or found.arxiv_id,
                doi=entry.doi or found.doi)
            out.fetched += 1
        elif not entry.abstract:
            down = (entry.arxiv_id in arxiv_down) or (entry.doi in openalex_down)
            if down:
                out.skipped.append(Skipped(entry.where, UNREACHABLE))
                continue
            if not entry.title:
                name = f"arXiv has no paper {entry.arxiv_id}" if entry.arxiv_id else \
                    f"OpenAlex knows no paper with DOI {entry.doi}"
                out.skipped.append(Skipped(entry.where, name))
                continue
            out.title_only += 1
        record = from_source(entry.title, entry.abstract, None, entry.arxiv_id, entry.authors, url=entry.url)
        out.papers.append((entry, dataclasses.replace(record, doi=entry.doi)))
    return out
