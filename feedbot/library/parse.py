"""Library files and pasted text → entries, whatever the format: BibTeX, RIS, CSL-JSON, Zotero's
JSON, or plain arXiv ids / DOIs / their URLs. Pure: no database, no network.

The format is told by the content, not the file name. Every problem is reported against the
entry's line or key; a broken entry is listed and the good ones are kept. Never raises on any
input but `LibraryError` (nothing usable at all: binary data, no known format, empty, too big).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from feedbot.sources.records import CONTROL
from feedbot.store import links

MAX_BYTES = 10 * 1024 * 1024
MAX_ENTRIES = 5000

_DOI = re.compile(r"\b(10\.\d{4,9}/[^\s\"<>{}]+)", re.IGNORECASE)
_RIS_START = re.compile(r"^\s*TY  -", re.MULTILINE)
_BIBTEX_START = re.compile(r"^\s*@\s*[A-Za-z]+\s*[{(]", re.MULTILINE)
_LATEX = re.compile(r"[\\{}$~^]")
_TEX_ESCAPE = re.compile(r"\\([_%&#$])")


class LibraryError(ValueError):
    """Nothing in the input can be read as a library; the message says why."""


@dataclass(frozen=True)
class Entry:
    """One paper of a library as its file holds it. `where` names it in a report (line or key)."""

    where: str
    title: str = ""
    abstract: str = ""
    authors: tuple[str, ...] = ()
    arxiv_id: str | None = None
    doi: str | None = None
    url: str | None = None
    added: datetime | None = None


@dataclass(frozen=True)
class Skipped:
    where: str
    why: str


@dataclass
class Parsed:
    format: str
    entries: list[Entry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def clean(text: str) -> str:
    return " ".join(CONTROL.sub(" ", text or "").split())


def normalise_doi(raw: str | None) -> str | None:
    """`https://doi.org/10.1000/XYZ.` → `10.1000/xyz` (DOIs are case-insensitive); None when none.
    A BibTeX field's escapes (`10.1000/a\\_b`, `-{}-`), as other tools write them, are undone."""
    match = _DOI.search(_TEX_ESCAPE.sub(r"\1", (raw or "").replace("{}", "")))
    if not match:
        return None
    return match.group(1).rstrip(".,;)]").lower()[:255]


def latex_to_text(text: str) -> str:
    """LaTeX markup as the text it typesets (`{\\"u}ber` → `über`); plain text untouched."""
    text = clean(text)
    if not _LATEX.search(text):
        return text
    from pylatexenc.latex2text import LatexNodes2Text

    try:
        return clean(LatexNodes2Text(math_mode="verbatim").latex_to_text(text))
    except Exception:  # pylatexenc gives up on some malformed markup: keep the text, minus braces
        return clean(text.replace("{", "").replace("}", ""))


_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?"
                   r"\s*(?:Z|([+-])(\d{2}):?(\d{2}))?)?")


def parse_date(raw: str | None) -> datetime | None:
    """`2021-03-04T10:00:00Z`, `2019-04-03 10:20:30 +0200` (BibDesk), `2021-03-04 10:00:00`,
    `2021/03/04` (RIS), `2021.03.04` (JabRef) → UTC datetime; None otherwise."""
    match = _DATE.match((raw or "").strip())
    if not match:
        return None
    *parts, sign, hours, minutes = match.groups()
    try:
        when = datetime(*[int(p) if p else 0 for p in parts], tzinfo=UTC)
    except ValueError:
        return None
    offset = timedelta(hours=int(hours), minutes=int(minutes)) if sign else timedelta()
    return when - offset if sign == "+" else when + offset


def too_big(size: int) -> str | None:
    """Why a file of `size` bytes is refused before it is read, or None."""
    if size <= MAX_BYTES:
        return None
    mib = 1024 * 1024
    return f"the file is {size / mib:.1f} MB; at most {MAX_BYTES // mib} MB can be imported at once (split the library)"


def decode(raw: bytes) -> str:
    """The bytes as text (UTF-8 with or without BOM, UTF-16 with BOM, else Windows-1252 text);
    LibraryError for empty, oversized or binary input."""
    if too_big(len(raw)):
        raise LibraryError(too_big(len(raw)))
    if not raw.strip():
        raise LibraryError("the file is empty")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise LibraryError("the file says UTF-16 but is not: binary data?") from None
    if b"\x00" in raw:
        raise LibraryError("this is binary data, not a library (export it as .bib, .ris or CSL-JSON)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
        if text.count("\ufffd") > 0 or len(CONTROL.findall(text)) > len(text) // 100:
            raise LibraryError("this is binary data or an unknown text encoding, not a library "
                               "(export it as UTF-8 .bib, .ris or CSL-JSON)") from None
        return text


def parse_bytes(raw: bytes) -> Parsed:
    return parse_text(decode(raw))


def parse_text(text: str) -> Parsed:
    """Entries of whatever format the text is in; LibraryError when it is none of them."""
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise LibraryError("the file is empty")
    stripped = text.lstrip()
    if stripped[:1] in "[{":
        try:
            data = json.loads(stripped)
        except (ValueError, RecursionError):
            data = None
        if data is not None:
            return _limit(_from_json(data))
    if _RIS_START.search(text):
        return _limit(_from_ris(text))
    if _BIBTEX_START.search(text):
        return _limit(_from_bibtex(text))
    parsed = _from_ids(text)
    if not parsed.entries:
        raise LibraryError("I found no BibTeX, RIS, CSL-JSON, arXiv id or DOI in it")
    return _limit(parsed)


def _limit(parsed: Parsed) -> Parsed:
    if not parsed.entries and not parsed.skipped:
        raise LibraryError(f"the {parsed.format} holds no entries")
    if len(parsed.entries) > MAX_ENTRIES:
        raise LibraryError(f"the library has {len(parsed.entries):,} entries; at most {MAX_ENTRIES:,} can be "
                           "imported at once (split it)")
    return parsed


def _ids_in(*texts: str | None) -> tuple[str | None, str | None]:
    """The first arXiv id and the first DOI any of the texts names."""
    arxiv_id = doi = None
    for text in texts:
        if not text:
            continue
        arxiv_id = arxiv_id or links.find_arxiv_id(text) or _bare_arxiv(text)
        doi = doi or normalise_doi(text)
    return arxiv_id, doi


def _bare_arxiv(text: str) -> str | None:
    """A field holding only an id (`eprint = {2301.00001v2}`)."""
    return links.normalise_arxiv_id(text) if len(text.strip()) < 40 else None


def _entry(where: str, title: str, abstract: str, authors: list[str], id_texts: list[str | None],
           url: str | None, added: datetime | None, doi: str | None = None,
           arxiv_id: str | None = None) -> Entry | Skipped:
    found_arxiv, found_doi = _ids_in(*id_texts)
    arxiv_id = arxiv_id or found_arxiv
    doi = normalise_doi(doi) or found_doi
    title, abstract = latex_to_text(title)[:300], latex_to_text(abstract)
    url = clean(url or "") or None
    if url and not url.startswith(("http://", "https://")):
        url = None
    if not (title or arxiv_id or doi):
        return Skipped(where, "no title, arXiv id or DOI")
    return Entry(where, title, abstract, tuple(a for a in (latex_to_text(x) for x in authors) if a)[:50],
                 arxiv_id, doi, url, added)


def _add(parsed: Parsed, item: Entry | Skipped) -> None:
    (parsed.entries if isinstance(item, Entry) else parsed.skipped).append(item)


# --- BibTeX -------------------------------------------------------------------------------------

def _from_bibtex(text: str) -> Parsed:
    import logging

    import bibtexparser
    from bibtexparser import model

    logging.getLogger("bibtexparser").setLevel(logging.ERROR)  # broken blocks are reported, not logged
    parsed = Parsed("BibTeX file")
    try:
        library = bibtexparser.parse_string(text)
    except Exception as exc:  # the parser gave up on the whole text
        raise LibraryError(f"the BibTeX could not be read: {exc}") from None
    blocks = list(library.entries)
    for block in library.failed_blocks:
        duplicate = getattr(block, "ignore_error_block", None)
        if isinstance(duplicate, model.Entry):
            blocks.append(duplicate)  # a key used twice: still a paper of the library
            continue
        first = (block.raw or "").strip().splitlines()[:1]
        where = f"line {block.start_line + 1}" + (f" ({first[0][:60]})" if first else "")
        _add(parsed, Skipped(where, "broken BibTeX (unbalanced braces or quotes?)"))
    for block in sorted(blocks, key=lambda b: b.start_line):
        fields = {f.key.lower(): str(f.value) for f in block.fields}
        where = f"line {block.start_line + 1} ({block.key[:60]})"
        authors = [a for a in re.split(r"\s+and\s+", fields.get("author", "")) if a.strip()]
        added = parse_date(fields.get("timestamp")) or parse_date(fields.get("added-at")) \
            or parse_date(fields.get("date-added"))
        id_texts = [fields.get(k) for k in ("eprint", "arxivid", "arxiv", "url", "journal", "note",
                                            "howpublished", "archiveprefix")]
        _add(parsed, _entry(where, fields.get("title", ""), fields.get("abstract", ""), authors, id_texts,
                            fields.get("url"), added, doi=fields.get("doi")))
    return parsed


# --- RIS ----------------------------------------------------------------------------------------

def _from_ris(text: str) -> Parsed:
    import rispy

    parsed = Parsed("RIS file")
    lines = text.splitlines()
    starts = [n for n, line in enumerate(lines) if re.match(r"^\s*TY  -", line)]
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(lines)
        chunk = "\n".join(line.lstrip() if n == 0 else line for n, line in enumerate(lines[start:end]))
        where = f"line {start + 1}"
        try:
            records = rispy.loads(chunk)
        except Exception as exc:
            _add(parsed, Skipped(where, f"broken RIS record ({str(exc)[:80]})"))
            continue
        if not records:
            _add(parsed, Skipped(where, "broken RIS record (no ER line?)"))
            continue
        for record in records:
            def text_of(*names: str, record: dict = record) -> str:
                return next((_ris_text(record.get(n)) for n in names if record.get(n)), "")
            authors = [str(a) for a in (record.get("authors") or []) + (record.get("first_authors") or [])]
            urls = record.get("urls") or []
            _add(parsed, _entry(
                where, text_of("title", "primary_title", "translated_title"), text_of("abstract", "notes_abstract"),
                authors, [text_of("notes"), " ".join(map(str, urls)), text_of("journal_name", "secondary_title"),
                          text_of("number"), text_of("custom1")],
                str(urls[0]) if urls else None, parse_date(text_of("date", "access_date")),
                doi=text_of("doi")))
    return parsed


def _ris_text(value: object) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, list) else str(value)


# --- CSL-JSON and Zotero's JSON -----------------------------------------------------------------

def _from_json(data: object) -> Parsed:
    items = data.get("items") if isinstance(data, dict) else data
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise LibraryError("the JSON is not a list of papers (CSL-JSON or Zotero)")
    zotero = any(isinstance(i, dict) and isinstance(i.get("data"), dict) for i in items)
    parsed = Parsed("Zotero library" if zotero else "CSL-JSON file")
    for number, item in enumerate(items, 1):
        if zotero and isinstance(item, dict) and isinstance(item.get("data"), dict):
            result = zotero_entry(item["data"], f"item {number}")
        elif isinstance(item, dict):
            result = _csl_entry(item, f"item {number}")
        else:
            result = Skipped(f"item {number}", "not a paper record")
        if result is not None:
            _add(parsed, result)
    return parsed


def _s(value: object) -> str:
    return value if isinstance(value, str) else str(value) if isinstance(value, int | float) else ""


def _csl_entry(item: dict, where: str) -> Entry | Skipped:
    key = _s(item.get("id"))
    where = f"{where} ({key[:60]})" if key else where
    authors = []
    for person in item.get("author") or []:
        if isinstance(person, dict):
            name = _s(person.get("literal")) or " ".join(
                p for p in (_s(person.get("given")), _s(person.get("family"))) if p)
            authors.append(name)
    fields = {k: _s(v) for k, v in item.items()}
    return _entry(where, fields.get("title", ""), fields.get("abstract", ""), authors,
                  [fields.get(k) for k in ("arxiv", "number", "URL", "note", "container-title", "archive_location",
                                           "publisher")],
                  fields.get("URL"), None, doi=fields.get("DOI"))


_NOT_PAPERS = {"note", "attachment", "annotation"}


def zotero_entry(data: dict, where: str) -> Entry | Skipped | None:
    """One item of the Zotero Web API (`data` of `/items`); None for notes and attachments."""
    kind = _s(data.get("itemType"))
    if kind in _NOT_PAPERS:
        return None
    key = _s(data.get("key"))
    where = f"{where} ({key})" if key else where
    authors = []
    for creator in data.get("creators") or []:
        if isinstance(creator, dict):
            authors.append(_s(creator.get("name")) or " ".join(
                p for p in (_s(creator.get("firstName")), _s(creator.get("lastName"))) if p))
    fields = {k: _s(v) for k, v in data.items()}
    return _entry(where, fields.get("title", ""), fields.get("abstractNote", ""), authors,
                  [fields.get(k) for k in ("archiveID", "extra", "url", "publicationTitle", "number", "repository")],
                  fields.get("url"), parse_date(fields.get("dateAdded")), doi=fields.get("DOI"))


# --- plain text of ids --------------------------------------------------------------------------

def _from_ids(text: str) -> Parsed:
    """arXiv ids, arXiv/DOI URLs and DOIs, one or many per line; a line naming none is listed."""
    parsed = Parsed("list of ids")
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        line = unicodedata.normalize("NFKC", line).strip()
        if not line:
            continue
        found = False
        for token in line.replace(",", " ").split():
            arxiv_id = links.find_arxiv_id(token) or links.normalise_arxiv_id(token)
            doi = None if arxiv_id else normalise_doi(token)
            name = arxiv_id or doi
            if not name:
                continue
            found = True
            if name in seen:
                continue
            seen.add(name)
            parsed.entries.append(Entry(f"line {number} ({token[:60]})", arxiv_id=arxiv_id, doi=doi))
        if not found:
            parsed.skipped.append(Skipped(f"line {number} ({line[:60]})", "not an arXiv id, arXiv URL or DOI"))
    return parsed
