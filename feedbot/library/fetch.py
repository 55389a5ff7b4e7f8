"""What a library entry lacks, read from the APIs: arXiv (by `id_list`), OpenAlex (by DOI), and a
whole Zotero library (the Zotero Web API, once, with a key that is never stored nor logged).

All go through the sources' polite client (User-Agent, pacing, retries, Retry-After). A paper an
API does not know is simply absent from the answer; an API that cannot be reached raises
SourceError, and the caller lists the entries that needed it as "not reachable now".
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from feedbot.library.parse import Entry, Skipped, clean, normalise_doi, zotero_entry
from feedbot.sources.arxiv import ATOM, FEED_TYPES
from feedbot.sources.http import Client, SourceError
from feedbot.store import links

log = logging.getLogger(__name__)

ARXIV_BATCH = 100
OPENALEX_BATCH = 50
ZOTERO_PAGE = 100
JSON_TYPES = ("application/json",)
_ZOTERO_KEY = re.compile(r"[A-Za-z0-9]{1,128}")


@dataclass(frozen=True)
class Found:
    """A paper as an API describes it."""

    title: str
    abstract: str
    authors: tuple[str, ...]
    arxiv_id: str | None = None
    doi: str | None = None


def batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def arxiv_papers(client: Client, api_url: str, ids: list[str]) -> dict[str, Found]:
    """The papers of up to ARXIV_BATCH arXiv ids, by id; an id arXiv does not know is absent."""
    response = client.get(api_url, {"id_list": ",".join(ids), "max_results": str(len(ids))}, FEED_TYPES)
    try:
        root = ET.fromstring(response.content)
    except ET.ParseError as exc:
        raise SourceError(f"arXiv answered malformed or truncated XML ({exc})") from None
    if root.tag != f"{ATOM}feed":
        raise SourceError(f"arXiv answered <{root.tag}>, not an Atom feed")
    found = {}
    for entry in root.findall(f"{ATOM}entry"):
        raw_id = (entry.findtext(f"{ATOM}id") or "").strip()
        if "/api/errors" in raw_id:
            continue  # an id arXiv cannot parse: it stays unresolved, the others are kept
        arxiv_id = links.normalise_arxiv_id(raw_id)
        title = clean(entry.findtext(f"{ATOM}title") or "")
        if arxiv_id is None or not title:
            continue  # arXiv's placeholder for an id it does not have
        authors = tuple(clean(a.findtext(f"{ATOM}name") or "") for a in entry.findall(f"{ATOM}author"))
        found[arxiv_id] = Found(title, clean(entry.findtext(f"{ATOM}summary") or ""), authors, arxiv_id)
    return found


def abstract_from_index(index: object) -> str:
    """OpenAlex's `abstract_inverted_index` ({word: [positions]}) back to the abstract's text."""
    if not isinstance(index, dict):
        return ""
    words: dict[int, str] = {}
    for word, positions in index.items():
        if isinstance(positions, list):
            for position in positions:
                if isinstance(position, int) and 0 <= position < 100_000:
                    words[position] = str(word)
    return clean(" ".join(words[p] for p in sorted(words)))


def openalex_papers(client: Client, api_url: str, dois: list[str]) -> dict[str, Found]:
    """The works of up to OPENALEX_BATCH DOIs, by lower-case DOI; a DOI OpenAlex lacks is absent."""
    params = {"filter": "doi:" + "|".join(dois), "per-page": str(max(len(dois), 1)),
              "select": "doi,title,abstract_inverted_index,authorships,ids"}
    response = client.get(f"{api_url}/works", params, JSON_TYPES)
    try:
        results = response.json().get("results")
    except (ValueError, AttributeError):
        raise SourceError("OpenAlex answered malformed JSON") from None
    if not isinstance(results, list):
        raise SourceError("OpenAlex's answer has no results list")
    found = {}
    for work in results:
        if not isinstance(work, dict):
            continue
        doi = normalise_doi(str(work.get("doi") or ""))
        title = clean(str(work.get("title") or ""))
        if not doi or not title:
            continue
        authors = tuple(clean(str((a.get("author") or {}).get("display_name") or ""))
                        for a in work.get("authorships") or [] if isinstance(a, dict))
        ids = work.get("ids") if isinstance(work.get("ids"), dict) else {}
        arxiv_id = links.find_arxiv_id(" ".join(str(v) for v in ids.values()))
        found[doi] = Found(title, abstract_from_index(work.get("abstract_inverted_index")),
                           tuple(a for a in authors if a), arxiv_id, doi)
    return found


class ZoteroError(SourceError):
    """The Zotero library cannot be read: the message says why, for the subscriber."""


def zotero_library(client: Client, api_url: str, user_id: str, key: str,
                   progress: Callable[[int, int], None] | None = None) -> tuple[list[Entry], list[Skipped]]:
    """Every top-level item of a Zotero user library, page by page, honouring `Backoff`.

    The key goes in a header of this client only (never a URL, never a log line)."""
    if not user_id.isdigit():
        raise ZoteroError("a Zotero user id is a number: find yours at zotero.org/settings/keys")
    if not _ZOTERO_KEY.fullmatch(key):  # never echoed; an HTTP header could not even carry some
        raise ZoteroError("a Zotero API key is letters and digits: copy it from zotero.org/settings/keys")
    client.http.headers.update({"Zotero-API-Key": key, "Zotero-API-Version": "3"})
    try:
        access = _zotero_get(client, f"{api_url}/keys/current", {}, "check the key")
        body = _json(access)
        if isinstance(body, dict) and str(body.get("userID", "")) == user_id:
            library = ((body.get("access") or {}).get("user") or {}).get("library")
            if not library:
                raise ZoteroError("this Zotero key may not read your library: allow library access "
                                  "at zotero.org/settings/keys")
        entries: list[Entry] = []
        skipped: list[Skipped] = []
        start, total = 0, None
        while total is None or start < total:
            response = _zotero_get(client, f"{api_url}/users/{user_id}/items/top",
                                   {"format": "json", "limit": str(ZOTERO_PAGE), "start": str(start)},
                                   "read the library")
            items = _json(response)
            if not isinstance(items, list):
                raise ZoteroError("Zotero answered something that is not a list of items")
            header = response.headers.get("total-results", "")
            total = int(header) if header.isdigit() else start + len(items)
            for number, item in enumerate(items, start + 1):
                data = item.get("data") if isinstance(item, dict) else None
                result = zotero_entry(data, f"item {number}") if isinstance(data, dict) else \
                    Skipped(f"item {number}", "not a Zotero item")
                if isinstance(result, Entry):
                    entries.append(result)
                elif result is not None:
                    skipped.append(result)
            if not items:
                break
            start += len(items)
            if progress:
                progress(start, total)
            backoff = response.headers.get("backoff", "").strip()
            if backoff.isdigit() and start < total:
                client.sleep(min(float(backoff), client.max_wait))
        return entries, skipped
    finally:
        client.http.headers.pop("Zotero-API-Key", None)


def _zotero_get(client: Client, url: str, params: dict, doing: str):
    try:
        return client.get(url, params, JSON_TYPES)
    except ZoteroError:
        raise
    except SourceError as exc:
        text = str(exc)
        if "HTTP 403" in text:
            raise ZoteroError(f"Zotero refused to {doing} (403): check the user id and the key, and that "
                              "the key may read this library (a private library needs its owner's key)") from None
        if "HTTP 404" in text:
            raise ZoteroError("Zotero knows no such user library (404): check the user id") from None
        raise ZoteroError(f"Zotero is not reachable now ({text.split(' answered ')[-1][:120]}); "
                          "try again later") from None


def _json(response) -> object:
    try:
        return response.json()
    except ValueError:
        raise ZoteroError("Zotero answered malformed JSON") from None
