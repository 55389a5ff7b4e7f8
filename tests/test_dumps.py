"""The dump parser: format, dates, encodings and every kind of malformed input."""

from datetime import date

import pytest

from feedbot.sources.dumps import DumpError, infer_year, parse_dump
from feedbot.sources.records import dedupe_key
from tests.conftest import EXAMPLE_DUMPS

STAMP = date(2026, 3, 20)
HEADER = "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\n"


def dump(*lines: str) -> bytes:
    return (HEADER + "\n\n".join(lines) + "\n").encode()


def test_seeds_parse_to_409_entries_354_distinct():
    entries = []
    for path in sorted(EXAMPLE_DUMPS.iterdir()):
        entries += parse_dump(path.read_bytes(), path.name, STAMP).entries
    assert len(entries) == 409
    assert len({e.key for e in entries}) == 354
    assert {e.listed_on for e in entries} == {date(2026, 3, 11), date(2026, 3, 12)}
    assert entries[0].title == "Task structure and nonlinearity jointly determine learned representational geometry"
    assert entries[0].abstract.startswith("The utility of a learned neural representation")


def test_sections_and_full_month_names():
    parsed = parse_dump(dump("March 11", "A", "a", "Mar 12", "B", "b", "C", "c"), "x", STAMP)
    assert [(e.title, e.listed_on.day) for e in parsed.entries] == [("A", 11), ("B", 12), ("C", 12)]
    assert parsed.dates == [date(2026, 3, 11), date(2026, 3, 12)]


def test_year_is_latest_not_after_stamp():
    assert infer_year(12, 31, date(2026, 1, 2)) == date(2025, 12, 31)
    assert infer_year(1, 2, date(2026, 1, 2)) == date(2026, 1, 2)
    assert infer_year(2, 29, date(2026, 3, 1)) == date(2024, 2, 29)


def test_dedupe_key_folds_case_punctuation_width_and_space():
    assert dedupe_key("GraphGPT:  Graph Instruction-Tuning") == dedupe_key("graphgpt graph instruction tuning")
    assert dedupe_key("ＡＢＣ (Full width)") == "abc full width"


def test_whitespace_normalised_and_html_kept_verbatim():
    parsed = parse_dump(dump("Mar 11", "  A <script>alert(1)</script>\t title ", "x &amp; y"), "x", STAMP)
    assert parsed.entries[0].title == "A <script>alert(1)</script> title"
    assert parsed.entries[0].abstract == "x &amp; y"


@pytest.mark.parametrize("encode", [
    lambda s: s.encode("utf-16"),
    lambda s: b"\xef\xbb\xbf" + s.encode(),
    lambda s: s.replace("\n", "\r\n").encode(),
    lambda s: s.replace("\n", "\r").encode(),
])
def test_accepted_encodings_and_line_endings(encode):
    text = HEADER + "Mar 11\n\nÜber Café models\n\nAbstract é.\n"
    parsed = parse_dump(encode(text), "x", STAMP)
    assert [(e.title, e.abstract) for e in parsed.entries] == [("Über Café models", "Abstract é.")]


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "empty file"),
    (b"  \n\n", "empty file"),
    (HEADER.encode(), "no date line"),
    (dump("Mar 11"), "no papers after the date line"),
    (dump("Mar 11", "Title only"), "line 9: title 'Title only' has no abstract"),
    (dump("Mar 11", "T1", "A1", "T2", "Mar 12", "T3", "A3"), "title 'T2' has no abstract"),
    (dump("Mar 11", "T", "A").replace(b"A\n", b"A\xff\xfe\n"), "not valid UTF-8 text: bad byte at offset"),
    (dump("Mar 11", "T", "A\x00B"), "NUL byte"),
    (bytes(range(256)) * 10, "not valid UTF-8"),
    (dump("Mar 11", "T", "x" * 70_000), "over the 65,536 cap"),
])
def test_bad_dumps_name_the_problem(raw, message):
    with pytest.raises(DumpError) as info:
        parse_dump(raw, "bad.txt", STAMP)
    assert message in str(info.value)
    assert str(info.value).startswith("bad.txt")


def test_invalid_utf8_reports_byte_offset():
    raw = dump("Mar 11", "T", "A")
    raw = raw[:20] + b"\xc3\x28" + raw[20:]
    with pytest.raises(DumpError, match="offset 20"):
        parse_dump(raw, "bad.txt", STAMP)
