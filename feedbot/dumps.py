"""Parse a scraped "daily papers" dump into entries. Pure: bytes in, entries or a DumpError out.

The format: header lines up to the first date line (`Mar 11` or `March 11`, no year), then
non-empty lines alternating title, abstract. A later date line starts a new section. The year is
the latest one that puts the date on or before the dump's own timestamp.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from dataclasses import dataclass
from datetime import date

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_LINE_CHARS = 64 * 1024
MAX_TITLE_CHARS = 500

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_MONTHS |= {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS["sept"] = 9
_DATE_LINE = re.compile(r"^([A-Za-z]{3,9})\.? (\d{1,2})$")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_NON_WORD = re.compile(r"[\W_]+")


class DumpError(ValueError):
    """A dump that cannot be ingested; says which file, and where, and why."""

    def __init__(self, name: str, reason: str, line: int | None = None) -> None:
        self.name, self.reason, self.line = name, reason, line
        where = f"{name}, line {line}" if line else name
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Entry:
    title: str
    abstract: str
    listed_on: date
    line: int

    @property
    def key(self) -> str:
        return dedupe_key(self.title)


@dataclass(frozen=True)
class ParsedDump:
    name: str
    entries: list[Entry]

    @property
    def dates(self) -> list[date]:
        return sorted({e.listed_on for e in self.entries})


def dedupe_key(title: str) -> str:
    """The same paper however it was typed: NFKC, casefolded, punctuation and spaces collapsed."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    return " ".join(_NON_WORD.sub(" ", folded).split())[:512]


def normalise_space(text: str) -> str:
    return " ".join(text.split())


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
    """The latest date with this month/day that is not after `stamp` (Feb 29 finds a leap year)."""
    for year in range(stamp.year, stamp.year - 9, -1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate <= stamp:
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

    entries: list[Entry] = []
    section: date | None = None
    title: tuple[str, int] | None = None
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        if len(line) > MAX_LINE_CHARS:
            raise DumpError(name, f"line is {len(line):,} characters, over the {MAX_LINE_CHARS:,} cap", number)
        bad = _CONTROL.search(line)
        if bad:
            what = "NUL byte" if bad.group() == "\x00" else f"control character U+{ord(bad.group()):04X}"
            raise DumpError(name, f"{what} in the text (binary data?)", number)
        line = normalise_space(line)
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
            if len(line) > MAX_TITLE_CHARS:
                raise DumpError(name, f"title is {len(line)} characters, over the {MAX_TITLE_CHARS} cap", number)
            title = (line, number)
        else:
            entries.append(Entry(title[0], line, section, title[1]))
            title = None
    if section is None:
        raise DumpError(name, "no date line found (expected a line like 'Mar 11' before the papers)")
    if title is not None:
        raise DumpError(name, f"title {title[0][:60]!r} has no abstract after it", title[1])
    if not entries:
        raise DumpError(name, "no papers after the date line (header only?)")
    return ParsedDump(name, entries)
