"""Parse a scraped "daily papers" dump into paper records. Pure: bytes in, records or a DumpError out.

The format: header lines up to the first date line (`Mar 11` or `March 11`, no year), then
non-empty lines alternating title, abstract. A later date line starts a new section. The year is
the latest one that puts the date no later than a day after the dump's own timestamp (the page's
time zone may be ahead of UTC).

Nothing marks which line is a title, so a lost line shifts every pair after it. An odd count is
caught by the missing last abstract; an even loss is caught by the lines' shapes: a title is
short and no sentence, an abstract is a paragraph. See `check_shapes`.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

from feedbot.sources.records import CONTROL, MAX_TITLE_CHARS, PaperRecord, from_dump

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_LINE_CHARS = 64 * 1024
MAX_TITLE_WORDS = 30  # a sentence of more words is a (short) abstract out of place, not a title
ABSTRACT_ENDINGS = (".", "!", "…", "。")  # a title may end in "?" or ")", rarely in these
MIN_COLUMN_PAIRS = 4  # from this many pairs on, the two columns' lengths are compared
MIN_TITLE_WORDS = 3  # real titles have three words or more; one- or two-word lines ("A1", "abs") prove nothing

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_MONTHS |= {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS["sept"] = 9
_DATE_LINE = re.compile(r"^([A-Za-z]{3,9})\.? ([0-9]{1,2})$")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LETTER_WORD = re.compile(r"[^\W\d_]{2,}")


class DumpError(ValueError):
    """A dump that cannot be ingested; says which file, and where, and why."""

    def __init__(self, name: str, reason: str, line: int | None = None) -> None:
        self.name, self.reason, self.line = name, reason, line
        where = f"{name}, line {line}" if line else name
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class ParsedDump:
    name: str
    entries: list[PaperRecord]

    @property
    def dates(self) -> list[date]:
        return sorted({e.listed_on for e in self.entries})


def decode(raw: bytes, name: str) -> str:
    """Bytes to text: UTF-8 (BOM optional) or UTF-16 with a BOM; anything else is refused."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw, encoding, skip = raw[3:], "utf-8", 3
    elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding, skip = "utf-16", 0
    else:
        encoding, skip = "utf-8", 0
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DumpError(
            name, f"not valid {encoding.upper()} text: bad byte at offset {exc.start + skip}"
        ) from None


def infer_year(month: int, day: int, stamp: date) -> date:
    """The latest date with this month/day at most a day after `stamp` (Feb 29 finds a leap year).

    `stamp` is a UTC date; the page's own date can be a day ahead of it (a `Jan 1` page saved at
    23:30 UTC on Dec 31 from a zone east of UTC), never more, so one day of slack.
    """
    latest = stamp + timedelta(days=1)
    for year in range(latest.year, latest.year - 9, -1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate <= latest:
            return candidate
    raise ValueError(f"no valid year for {calendar.month_abbr[month]} {day}")


def parse_date_line(line: str, stamp: date) -> date | None:
    """The date a line names, or None when the line is not a date line."""
    match = _DATE_LINE.match(line)
    if not match or match.group(1).lower() not in _MONTHS:
        return None
    month, day = _MONTHS[match.group(1).lower()], int(match.group(2))
    if not 1 <= day <= 31:
        return None
    return infer_year(month, day, stamp)


def parse_dump(raw: bytes, name: str, stamp: date) -> ParsedDump:
    """Parse a whole dump, or raise DumpError naming the file and line."""
    if len(raw) > MAX_FILE_BYTES:
        raise DumpError(name, f"file is {len(raw):,} bytes, over the {MAX_FILE_BYTES:,}-byte cap")
    if not raw.strip():
        raise DumpError(name, "empty file")
    text = decode(raw, name)

    entries: list[PaperRecord] = []
    section: date | None = None
    title: tuple[str, int] | None = None
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        if len(line) > MAX_LINE_CHARS:
            raise DumpError(name, f"line is {len(line):,} characters, over the {MAX_LINE_CHARS:,} cap", number)
        bad = CONTROL.search(line)
        if bad:
            what = "NUL byte" if bad.group() == "\x00" else f"control character U+{ord(bad.group()):04X}"
            raise DumpError(name, f"{what} in the text (binary data?)", number)
        line = " ".join(line.split())
        if not line:
            continue
        try:
            listed = parse_date_line(line, stamp)
        except ValueError as exc:
            raise DumpError(name, str(exc), number) from None
        if listed is not None and title is not None:
            raise DumpError(name, f"title {title[0][:60]!r} has no abstract after it", title[1])
        if title is None:
            if listed is not None:
                section = listed
                continue
            if section is None:
                continue  # header lines before the first date
            title = (line, number)
        else:
            entries.append(from_dump(title[0], line, section, title[1]))
            title = None
    if section is None:
        raise DumpError(name, "no date line found (expected a line like 'Mar 11' before the papers)")
    if title is not None:
        raise DumpError(name, f"title {title[0][:60]!r} has no abstract after it", title[1])
    if not entries:
        raise DumpError(name, "no papers after the date line (header only?)")
    check_shapes(name, entries)
    return ParsedDump(name, entries)


def looks_like_abstract(line: str) -> bool:
    """A paragraph rather than a title: longer than any title, or ending like a sentence."""
    return len(line) > MAX_TITLE_CHARS or line.endswith(ABSTRACT_ENDINGS)


def looks_like_title(line: str) -> bool:
    """A title rather than a paragraph: no sentence ending, not long, and words enough for a title."""
    return not looks_like_abstract(line) and len(_LETTER_WORD.findall(line)) >= MIN_TITLE_WORDS


def _is_sentence(line: str) -> bool:
    """A sentence longer than any title: a short abstract, unmistakably."""
    return line.endswith(ABSTRACT_ENDINGS) and len(line.split()) > MAX_TITLE_WORDS


def check_shapes(name: str, entries: list[PaperRecord]) -> None:
    """Refuse a dump whose title/abstract pairs are shifted or that holds only titles.

    A line lost from a dump pairs each later title with the next title and each abstract with the
    next abstract (or the other way round), so a shifted region shows lines of the wrong shape:
    - a title over MAX_TITLE_CHARS characters, or a sentence of over MAX_TITLE_WORDS words, is an
      abstract in a title's place;
    - when the dump has real abstracts (some over MAX_TITLE_CHARS, or a sentence of over
      MAX_TITLE_WORDS words), an "abstract" that is a short
      line not ending like a sentence is a title in an abstract's place;
    - an abstract column where every line is shaped like a title (`looks_like_title`) is a
      titles-only dump, whatever its size (two titles make one such "paper");
    - with MIN_COLUMN_PAIRS pairs or more, an abstract column where most lines are no sentence and
      lines are about as long as the titles is a titles-only dump.
    Short test dumps ("T1", "A1") stay accepted: one- or two-word lines are no evidence either way.
    """
    real_abstracts = any(len(e.abstract) > MAX_TITLE_CHARS or _is_sentence(e.abstract) for e in entries)
    for entry in entries:  # the first misplaced line is reported
        if len(entry.title) > MAX_TITLE_CHARS or _is_sentence(entry.title):
            raise DumpError(name, f"a {len(entry.title):,}-character line where a title belongs: it looks like "
                            f"an abstract, so a title or an abstract is missing above it", entry.line)
        if real_abstracts and not looks_like_abstract(entry.abstract):
            raise DumpError(name, f"the line after title {entry.title[:60]!r} looks like a title, not an "
                            "abstract (short, no sentence ending): an abstract is missing here, or the "
                            "dump holds titles only", entry.line)
    if real_abstracts:
        return
    if all(looks_like_title(e.abstract) for e in entries):
        raise DumpError(name, f"all {len(entries)} abstracts are title-shaped lines (a few words, no sentence "
                        "ending): this looks like a titles-only dump", entries[0].line)
    sentences = sum(looks_like_abstract(e.abstract) for e in entries)
    if len(entries) >= MIN_COLUMN_PAIRS and 2 * sentences < len(entries):
        titles = sorted(len(e.title) for e in entries)
        abstracts = sorted(len(e.abstract) for e in entries)
        if abstracts[len(abstracts) // 2] < 1.5 * titles[len(titles) // 2]:
            raise DumpError(name, f"{len(entries) - sentences} of {len(entries)} abstracts are short lines with no "
                            "sentence ending, as short as the titles: this looks like a titles-only dump",
                            entries[0].line)
