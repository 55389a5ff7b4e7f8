"""Paper identity from free text, and the links shown for a paper. Pure: strings in, strings out.

A dump entry often carries its arXiv id somewhere (`arXiv:2403.01234`, an `arxiv.org/abs/…` or
`/pdf/…` URL, a `huggingface.co/papers/…` page, an old-style `hep-th/9901001`), and its abstract
often names the code (`github.com/owner/repo`). Taking them here lets a dumped paper and a fetched
one be recognised as the same paper, and lets every view link to it.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, quote_plus, urlsplit

DEFAULT_PAPER_LINK = "https://arxiv.org/search/?query={query}&searchtype=title"
ABS_URL = "https://arxiv.org/abs/{id}"
MAX_AUTHORS_SHOWN = 3
MAX_URL_CHARS = 600
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"

# The archives that had old-style (pre-2007) identifiers: `archive[.SUBJ]/YYMMNNN`.
_OLD_ARCHIVE_NAMES = (
    "acc-phys adap-org alg-geom ao-sci astro-ph atom-ph bayes-an chao-dyn chem-ph cmp-lg comp-gas "
    "cond-mat cs dg-ga funct-an gr-qc hep-ex hep-lat hep-ph hep-th math math-ph mtrl-th nlin nucl-ex "
    "nucl-th patt-sol physics plasm-ph q-alg q-bio quant-ph solv-int supr-con"
)
_OLD_ARCHIVES = _OLD_ARCHIVE_NAMES.split()
# New-style ids: YYMM.NNNN from 0704 to 1412, YYMM.NNNNN from 1501 on.
_MONTH = r"(?:0[1-9]|1[0-2])"
_NEW_ID = rf"(?:(?:0[7-9]|1[0-4]){_MONTH}\.\d{{4}}|(?:1[5-9]|[2-9]\d){_MONTH}\.\d{{5}})"
_OLD_ID = r"(?:" + "|".join(re.escape(a) for a in sorted(_OLD_ARCHIVES, key=len, reverse=True)) + \
    r")(?:\.[A-Z]{2})?/\d{2}(?:0[1-9]|1[0-2])\d{3}"
_ID = rf"(?:{_NEW_ID}|{_OLD_ID})"
_VERSION = r"(?:v\d+)?"
_END = r"(?!\d|\.\d)"  # a sentence's full stop may follow an id, more digits may not
_ARXIV_PATTERNS = [
    re.compile(rf"\barxiv\s*:\s*({_ID}){_VERSION}{_END}", re.IGNORECASE),
    re.compile(rf"\barxiv\.org/(?:abs|pdf|html|format)/({_ID}){_VERSION}{_END}", re.IGNORECASE),
    re.compile(rf"\bhuggingface\.co/papers/({_NEW_ID}){_VERSION}{_END}", re.IGNORECASE),
    re.compile(rf"(?<![\w/.-])({_OLD_ID}){_VERSION}{_END}"),
]
_CODE = re.compile(
    r"(?:https?://)?(?:www\.)?(?P<host>github\.com|gitlab\.com|huggingface\.co)/"
    r"(?P<path>(?:(?:datasets|spaces)/)?[A-Za-z0-9][\w.-]*/[\w.-]*[\w-])",
    re.IGNORECASE,
)
_NOT_REPOS = {"papers", "docs", "blog", "login", "join", "settings", "features", "topics", "orgs", "about",
              "pricing", "explore", "marketplace", "sponsors", "search", "models", "collections", "tasks"}
_ID_ONLY = re.compile(rf"^{_ID}$", re.IGNORECASE)


@dataclass(frozen=True)
class Identity:
    """What a paper's own text says about where it lives: `arxiv_id`, named in its title, is the
    paper's identity and link (it merges a dumped paper with a fetched one)."""

    arxiv_id: str | None = None
    code_url: str | None = None


def _canonical(arxiv_id: str) -> str:
    """Old-style ids in their one spelling: lower-case archive, upper-case subject (`math.AG/0101001`)."""
    if "/" not in arxiv_id:
        return arxiv_id
    archive, number = arxiv_id.split("/", 1)
    name, _, subject = archive.partition(".")
    return f"{name.lower()}.{subject.upper()}/{number}" if subject else f"{name.lower()}/{number}"


def find_arxiv_ids(text: str) -> list[str]:
    """Every distinct arXiv id the text names (without versions), in the order they appear."""
    found = sorted((m.start(), _canonical(m.group(1))) for p in _ARXIV_PATTERNS for m in p.finditer(text))
    return list(dict.fromkeys(arxiv_id for _, arxiv_id in found))


def find_arxiv_id(text: str) -> str | None:
    """The first arXiv id the text names (without its version), or None."""
    ids = find_arxiv_ids(text)
    return ids[0] if ids else None


def normalise_arxiv_id(raw: str) -> str | None:
    """`2403.01234v2`, `arXiv:2403.01234`, an abs/pdf URL → `2403.01234`; None when it is no arXiv id."""
    text = re.sub(r"v\d+$", "", raw.strip())
    if _ID_ONLY.match(text):
        return _canonical(text)
    return find_arxiv_id(raw)


def find_code_url(text: str) -> str | None:
    """The first code repository (GitHub, GitLab, Hugging Face) the text links to, as an https URL."""
    for match in _CODE.finditer(text):
        host, path = match.group("host").lower(), match.group("path")
        if path.split("/", 1)[0].lower() in _NOT_REPOS:
            continue
        path = path.removesuffix(".git")
        return f"https://{host}/{path}"
    return None


def identify(title: str, abstract: str) -> Identity:
    """The arXiv id a title names, and the first code URL in the abstract.

    An id in the abstract is neither the paper's identity nor its link: "we extend
    arXiv:2301.00001" names another paper, and taking it would merge two papers into one or point
    the pick at the cited paper (a lone id in an abstract is usually a citation too).
    """
    return Identity(find_arxiv_id(title), find_code_url(abstract))


def abs_url(arxiv_id: str) -> str:
    return ABS_URL.format(id=arxiv_id)


def safe_url(url: str) -> str:
    """Characters a URL may not hold (spaces, quotes, <, >, non-ASCII) percent-encoded; escapes kept."""
    return quote(url, safe=_URL_SAFE)


def check_template(template: str) -> str:
    """The link template if every title would give a working link; ValueError saying why otherwise.

    Refused: no `{title}`/`{query}`, other `{names}` or stray braces, a placeholder in the scheme
    or host (the title would become the host), whitespace, and anything but an http(s) URL.
    """
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template)
                  if name is not None]
    except ValueError:
        raise ValueError("has a stray { or }") from None
    if not fields:
        raise ValueError("has neither {title} nor {query}")
    for name, spec, conv in fields:
        if name not in ("title", "query") or spec or conv:
            raise ValueError(f"may hold only {{title}} and {{query}}, not {{{name}{'!' + conv if conv else ''}"
                             f"{':' + spec if spec else ''}}}")
    if any(c.isspace() or not c.isprintable() for c in template):
        raise ValueError("has whitespace or control characters")
    parts = urlsplit(template.replace("{title}", "t").replace("{query}", "q"))
    host = urlsplit(template).netloc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("is not an http(s) URL with a host")
    if "{" in host or "}" in host:
        raise ValueError("has a placeholder in its host")
    return template


@lru_cache(maxsize=8192)  # a broadcast shows the same papers to many: each link is made once
def search_url(title: str, template: str = DEFAULT_PAPER_LINK) -> str:
    """The link for a paper without an arXiv id: `{title}` is path-encoded, `{query}` query-encoded.

    Long titles are cut word by word so the URL stays short (it counts against message sizes).
    """
    words = title.split()
    template = safe_url(template).replace("%7Btitle%7D", "{title}").replace("%7Bquery%7D", "{query}")
    while True:
        text = " ".join(words)
        url = template.replace("{title}", quote(text, safe="")).replace("{query}", quote_plus(text))
        if len(url) <= MAX_URL_CHARS or len(words) <= 1:
            break
        words = words[:-1]
    if len(url) > MAX_URL_CHARS:  # one very long word: cut by characters
        text = words[0] if words else ""
        while text and len(url) > MAX_URL_CHARS:
            text = text[: len(text) * 3 // 4]
            url = template.replace("{title}", quote(text, safe="")).replace("{query}", quote_plus(text))
    return url


def paper_url(arxiv_id: str | None, url: str | None, title: str, template: str = DEFAULT_PAPER_LINK) -> str:
    """Where a pick's title points: its arXiv page, else its known URL, else a title search."""
    if arxiv_id:
        return abs_url(arxiv_id)
    if url:
        return url
    return search_url(title, template)


@dataclass(frozen=True)
class PaperLinks:
    """What a view shows around a paper's title: where it points, who wrote it, where the code is."""

    url: str
    authors: str = ""  # short form, e.g. "A. Author, B. Author et al."
    code_url: str | None = None


def links_for(arxiv_id: str | None, url: str | None, title: str, authors: str | None, code_url: str | None,
              template: str = DEFAULT_PAPER_LINK) -> PaperLinks:
    code = safe_url(code_url) if code_url and len(code_url) <= MAX_URL_CHARS else None
    target = safe_url(url) if url and len(url) <= MAX_URL_CHARS else None
    return PaperLinks(paper_url(arxiv_id, target, title, template), short_authors(authors), code)


def join_authors(names: Iterable[str]) -> str:
    """Authors as stored: one name per line, whitespace collapsed, empties dropped."""
    return "\n".join(n for n in (" ".join(str(name).split()) for name in names) if n)


def split_authors(stored: str | None) -> list[str]:
    return [n for n in (stored or "").split("\n") if n]


def short_authors(stored: str | None, limit: int = MAX_AUTHORS_SHOWN) -> str:
    """`A. Author, B. Author et al.`: the first few authors, or '' when none are known."""
    names = [n if len(n) <= 80 else n[:79] + "…" for n in split_authors(stored)]
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[: limit - 1]) + " et al."
