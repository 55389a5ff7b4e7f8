"""The arXiv API: an Atom feed of the newest papers in some categories, fetched page by page.

`GET {api}?search_query=cat:cs.LG+OR+cat:cs.CL&sortBy=submittedDate&sortOrder=descending&start=S
&max_results=N`. Each `entry` has `id` (`http://arxiv.org/abs/ID vN`), `title`, `summary`,
`author/name`, `published` and `category/@term`; the feed's `opensearch:totalResults` bounds the
paging. The API reports errors as a feed with one entry whose id points at `/api/errors`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime

from feedbot.sources.http import Client, SourceError
from feedbot.sources.records import PaperRecord, from_source
from feedbot.store import links

ATOM = "{http://www.w3.org/2005/Atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
ARXIV = "{http://arxiv.org/schemas/atom}"
FEED_TYPES = ("application/atom+xml", "application/xml", "text/xml")
PAGE_SIZE = 100
MIN_INTERVAL = 3.0  # arXiv's terms: no more than one request every three seconds


def query(categories: tuple[str, ...]) -> str:
    return " OR ".join(f"cat:{c}" for c in categories)


def parse_page(body: bytes, categories: tuple[str, ...]) -> tuple[int, int, list[PaperRecord]]:
    """(totalResults, entries on the page, its papers in the requested categories); SourceError when malformed."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise SourceError(f"arXiv answered malformed or truncated XML ({exc})") from None
    if root.tag != f"{ATOM}feed":
        raise SourceError(f"arXiv answered <{root.tag}>, not an Atom feed")
    total_text = (root.findtext(f"{OPENSEARCH}totalResults") or "").strip()
    if not total_text.isdigit():
        raise SourceError("arXiv's feed has no opensearch:totalResults")
    out = []
    wanted = set(categories)
    entries = root.findall(f"{ATOM}entry")
    for number, entry in enumerate(entries, 1):
        raw_id = (entry.findtext(f"{ATOM}id") or "").strip()
        if "/api/errors" in raw_id:
            raise SourceError(f"arXiv API error: {' '.join((entry.findtext(f'{ATOM}summary') or '').split())}")
        arxiv_id = links.normalise_arxiv_id(raw_id)
        title, summary = entry.findtext(f"{ATOM}title"), entry.findtext(f"{ATOM}summary")
        published = (entry.findtext(f"{ATOM}published") or "").strip()
        if arxiv_id is None or not (title or "").strip() or summary is None or not published:
            raise SourceError(f"arXiv feed entry {number} lacks an arXiv id, title, summary or published date")
        try:
            day = datetime.fromisoformat(published.replace("Z", "+00:00")).date()
        except ValueError:
            raise SourceError(f"arXiv feed entry {number}: published {published[:40]!r} is not a date") from None
        terms = {c.get("term", "") for c in entry.findall(f"{ATOM}category")}
        if wanted and terms and not terms & wanted:
            continue
        authors = [a.findtext(f"{ATOM}name") or "" for a in entry.findall(f"{ATOM}author")]
        comment = entry.findtext(f"{ARXIV}comment") or ""
        out.append(from_source(title, summary, day, arxiv_id, authors,
                               code_url=links.find_code_url(summary) or links.find_code_url(comment)))
    return int(total_text), len(entries), out


def fetch(client: Client, api_url: str, categories: tuple[str, ...], limit: int = 200,
          page_size: int = PAGE_SIZE) -> list[PaperRecord]:
    """The newest `limit` papers in these categories, newest first; every page or nothing.

    Entries outside the categories are dropped (the API's query can match more); when every entry
    is dropped the answer holds no paper for us, which is refused like an empty feed.
    """
    papers: list[PaperRecord] = []
    start = 0
    while start < limit:
        params = {"search_query": query(categories), "sortBy": "submittedDate", "sortOrder": "descending",
                  "start": str(start), "max_results": str(min(page_size, limit - start))}
        response = client.get(api_url, params, FEED_TYPES)
        total, entries, page = parse_page(response.content, categories)
        if entries == 0:
            if start == 0:
                raise SourceError(f"arXiv answered an empty feed for {query(categories)}")
            raise SourceError(f"arXiv answered an empty page at start={start} of {total} results")
        papers += page
        start += entries
        if start >= total:
            break
    if not papers:
        raise SourceError(f"arXiv's answer for {query(categories)} holds no paper in {' or '.join(categories)} "
                          f"({start} entries, all in other categories: a category name arXiv does not use?)")
    return papers[:limit]  # a server that ignores max_results still yields at most `limit`
