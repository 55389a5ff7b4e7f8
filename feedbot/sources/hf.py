"""The Hugging Face daily papers API: `GET {base}/api/daily_papers?date=YYYY-MM-DD`.

The answer is a JSON list; each item has `paper` with `id` (the arXiv id), `title`, `summary`,
`authors` (objects with `name`), `publishedAt` and `upvotes`, and the item's own `publishedAt`
(when it was put on the daily page). Anything else is refused whole.
"""

from __future__ import annotations

import json
from datetime import date, datetime

from feedbot.sources.http import Client, SourceError
from feedbot.sources.records import PaperRecord, from_source
from feedbot.store import links

JSON_TYPES = ("application/json",)


def url(base: str) -> str:
    return f"{base.rstrip('/')}/api/daily_papers"


def _day(value: object, where: str) -> date:
    if not isinstance(value, str):
        raise SourceError(f"{where}: publishedAt is missing")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        raise SourceError(f"{where}: publishedAt {value[:40]!r} is not a date") from None


def parse(body: bytes, listed_on: date | None) -> list[PaperRecord]:
    """The answer's papers, listed on `listed_on` (or each item's own date); SourceError when malformed."""
    try:
        items = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SourceError(f"Hugging Face answered invalid or truncated JSON ({exc})") from None
    if not isinstance(items, list):
        raise SourceError(f"Hugging Face answered a JSON {type(items).__name__}, expected a list of papers")
    if not items:
        raise SourceError("Hugging Face answered an empty list: no daily papers for that date (yet)")
    out = []
    for number, item in enumerate(items, 1):
        where = f"daily papers item {number}"
        paper = item.get("paper") if isinstance(item, dict) else None
        if not isinstance(paper, dict):
            raise SourceError(f"{where}: no 'paper' object")
        title, summary, raw_id = paper.get("title") or item.get("title"), paper.get("summary"), paper.get("id")
        if not isinstance(title, str) or not title.strip() or not isinstance(summary, str):
            raise SourceError(f"{where}: missing title or summary")
        if not isinstance(raw_id, str) or not raw_id.strip():
            raise SourceError(f"{where}: missing paper id")
        authors = paper.get("authors") or []
        if not isinstance(authors, list) or not all(isinstance(a, dict) for a in authors):
            raise SourceError(f"{where}: authors is not a list of objects")
        if not all(isinstance(a.get("name"), str | None) for a in authors):
            raise SourceError(f"{where}: an author's name is not text")
        day = listed_on or _day(item.get("publishedAt") or paper.get("publishedAt"), where)
        arxiv_id = links.normalise_arxiv_id(raw_id)
        repo = paper.get("githubRepo")
        out.append(from_source(
            title, summary, day, arxiv_id, [a.get("name") or "" for a in authors],
            code_url=links.find_code_url(repo) if isinstance(repo, str) else None,
            url=f"https://huggingface.co/papers/{raw_id.strip()}",
        ))
    return out


def fetch(client: Client, base: str, day: date | None = None) -> list[PaperRecord]:
    """One day's daily papers (the latest page when `day` is None)."""
    params = {"date": day.isoformat()} if day else {}
    response = client.get(url(base), params, JSON_TYPES)
    return parse(response.content, day)
