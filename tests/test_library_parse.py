"""Library files and pasted ids read without a database: every format, its dates and ids, broken
entries listed while good ones are kept, bad input refused with a reason, and any bytes or text
either read or refused cleanly (Hypothesis)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import rispy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedbot.library.parse import MAX_BYTES, MAX_ENTRIES, Entry, LibraryError, Parsed, parse_bytes, parse_text

BIB = r"""% exported by JabRef
@article{smith2020,
  title = {{\"U}ber {Attention}: a Study of $\alpha$-Heads},
  author = {Smith, John and M{\"u}ller, Hans},
  abstract = {We study attention \emph{heads}.},
  timestamp = {2021-05-03T10:00:00Z},
  doi = {https://doi.org/10.1000/XYZ123}
}
@misc{broken, title = {Broken {entry}, abstract={oops}
@misc{pre, title = {A Preprint}, eprint = {2301.00001v2}, archivePrefix = {arXiv}, added-at = {2022-01-02 03:04:05}}
@inproceedings{noted, title = {Noted}, note = {arXiv:hep-th/9901001}}
@misc{url, title = {By URL}, url = {https://arxiv.org/abs/2402.01234v3}}
@comment{jabref-meta: databaseType:bibtex;}
"""


def test_bibtex_latex_ids_dates_and_a_broken_entry_listed():
    parsed = parse_text(BIB)
    assert parsed.format == "BibTeX file"
    by_key = {e.where.split("(")[1].rstrip(")"): e for e in parsed.entries}
    smith = by_key["smith2020"]
    assert smith.title.startswith("Über Attention: a Study of") and "{" not in smith.title
    assert smith.abstract == "We study attention heads."
    assert smith.authors == ("Smith, John", "Müller, Hans")
    assert smith.doi == "10.1000/xyz123" and smith.added == datetime(2021, 5, 3, 10, tzinfo=UTC)
    assert by_key["pre"].arxiv_id == "2301.00001" and by_key["pre"].added == datetime(2022, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert by_key["noted"].arxiv_id == "hep-th/9901001"
    assert by_key["url"].arxiv_id == "2402.01234"
    [broken] = parsed.skipped
    assert broken.where.startswith("line 9") and "broken BibTeX" in broken.why


def test_ris_with_dates_dois_and_a_record_without_end():
    text = rispy.dumps([
        {"type_of_reference": "JOUR", "title": "Graph Networks", "abstract": "We pass messages.",
         "authors": ["Doe, Jane"], "doi": "10.1234/ABC.5", "date": "2020/02/03"},
        {"type_of_reference": "RPRT", "title": "A Report", "urls": ["https://arxiv.org/abs/2301.00002"]},
    ])
    parsed = parse_text(text + "TY  - JOUR\nTI  - No End\n")
    assert parsed.format == "RIS file"
    first, second = parsed.entries
    assert (first.title, first.abstract, first.doi) == ("Graph Networks", "We pass messages.", "10.1234/abc.5")
    assert first.added == datetime(2020, 2, 3, tzinfo=UTC) and first.where == f"line {text.index('TY') and 2}"
    assert second.arxiv_id == "2301.00002"
    [unended] = parsed.skipped
    assert unended.where == f"line {len(text.splitlines()) + 1}" and "broken RIS record" in unended.why


def test_csl_json_and_zotero_json():
    csl = [{"id": "k1", "type": "article", "title": "CSL Paper", "abstract": "Text.", "DOI": "10.5555/Q1",
            "author": [{"family": "Lovelace", "given": "Ada"}, {"literal": "The Team"}]},
           {"id": "k2", "type": "article", "number": "arXiv:2301.00003", "title": "Pre"},
           "not an item"]
    parsed = parse_text(json.dumps(csl))
    assert parsed.format == "CSL-JSON file"
    assert parsed.entries[0].authors == ("Ada Lovelace", "The Team") and parsed.entries[0].doi == "10.5555/q1"
    assert parsed.entries[1].arxiv_id == "2301.00003"
    assert [s.where for s in parsed.skipped] == ["item 3"]
    zotero = [{"key": "AB", "data": {"key": "AB", "itemType": "preprint", "title": "Z",
                                     "archiveID": "arXiv:2301.00004", "dateAdded": "2023-04-05T06:07:08Z"}},
              {"key": "CD", "data": {"key": "CD", "itemType": "note", "note": "x"}}]
    parsed = parse_text(json.dumps(zotero))
    assert parsed.format == "Zotero library" and len(parsed.entries) == 1 and not parsed.skipped
    assert parsed.entries[0].arxiv_id == "2301.00004"
    assert parsed.entries[0].added == datetime(2023, 4, 5, 6, 7, 8, tzinfo=UTC)


def test_pasted_ids_one_or_many_per_line():
    parsed = parse_text("2301.00001 arXiv:2301.00002v2, https://arxiv.org/pdf/2301.00003\n"
                        "https://doi.org/10.1145/3292500.3330701\nhello there\n2301.00001")
    assert [e.arxiv_id or e.doi for e in parsed.entries] == [
        "2301.00001", "2301.00002", "2301.00003", "10.1145/3292500.3330701"]
    assert [(s.where, s.why) for s in parsed.skipped] == [
        ("line 3 (hello there)", "not an arXiv id, arXiv URL or DOI")]


@pytest.mark.parametrize(("raw", "why"), [
    (b"", "empty"),
    (b"   \n\n", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    (bytes(range(256)) * 4, "binary"),
    (b"Dear reader, this is a letter.", "no BibTeX, RIS, CSL-JSON"),
    (b'{"name": "not a library"}', "not a list of papers"),
    (b"[]", "holds no entries"),
    (b"x" * (MAX_BYTES + 1), "at most 10 MB"),
    ("".join(f"@misc{{k{n}, title={{T{n}}}}}\n" for n in range(MAX_ENTRIES + 1))
     .encode(), "at most 5,000"),
])
def test_bad_input_gets_a_clear_refusal(raw, why):
    with pytest.raises(LibraryError, match=why):
        parse_bytes(raw)


def test_encodings_are_read_as_text():
    bib = "@misc{a, title={Café Society}}"
    for raw in (bib.encode("utf-8-sig"), bib.encode("utf-16"), bib.encode("cp1252")):
        assert parse_bytes(raw).entries[0].title == "Café Society"


def _check(parsed: Parsed) -> None:
    assert parsed.format and len(parsed.entries) <= MAX_ENTRIES
    for entry in parsed.entries:
        assert isinstance(entry, Entry) and entry.where
        assert entry.title or entry.arxiv_id or entry.doi
        assert "\x00" not in entry.title + entry.abstract
    assert all(s.where and s.why for s in parsed.skipped)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_any_bytes_are_read_or_refused(raw):
    try:
        _check(parse_bytes(raw))
    except LibraryError as exc:
        assert str(exc)


FRAGMENTS = st.sampled_from([
    "@article{", "@misc(", "}", "{", "title = ", "abstract=", "\"", ",", "\n", "TY  - JOUR\n", "ER  - \n",
    "TI  - ", "AB  - ", "DO  - 10.1000/x\n", "[", "]", "{\"title\": ", "\"data\": {", "2301.00001", "arXiv:",
    "https://doi.org/10.1145/1.2", "\\\"u", "$", "\\emph{", "%", "@comment{", "é", "\x00", "\r\n", "eprint={",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=500), st.lists(FRAGMENTS, max_size=60).map("".join)))
def test_any_text_is_read_or_refused(text):
    try:
        _check(parse_text(text))
    except LibraryError as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None)
@given(suffix=st.text(alphabet="abcXYZ019-._;()/:_%&#", min_size=1, max_size=30).filter(
    lambda s: s[-1] not in ".,;)]" and s[0] not in "/"))
def test_a_doi_survives_feedbots_own_bibtex_export_and_every_format_of_it(suffix):
    """Any DOI, written the way feedbot's export, another tool's LaTeX-escaped BibTeX and a CSL-JSON
    file carry it, reads back as the same lower-case DOI, so the paper matches itself."""
    from types import SimpleNamespace

    from feedbot.chat.bibtex import export, latex_escape

    doi = f"10.1234/{suffix}"
    paper = SimpleNamespace(id=1, title="A Paper", abstract="Its text.", authors=None, arxiv_id=None, url=None,
                            code_url=None, doi=doi, first_listed=None)
    [from_bibtex] = parse_bytes(export([paper]).encode()).entries
    [from_csl] = parse_bytes(json.dumps([{"title": "A Paper", "DOI": doi}]).encode()).entries
    [escaped] = parse_bytes(f"@misc{{k, title={{A Paper}}, doi={{{latex_escape(doi)}}}}}".encode()).entries
    assert from_bibtex.doi == from_csl.doi == escaped.doi == doi.lower()


@pytest.mark.parametrize(("raw", "expected"), [
    ("2021-05-03T10:00:00Z", datetime(2021, 5, 3, 10, tzinfo=UTC)),
    ("2019-04-03 10:20:30 +0200", datetime(2019, 4, 3, 8, 20, 30, tzinfo=UTC)),  # BibDesk's date-added
    ("2019-04-03T10:20:30.123-05:30", datetime(2019, 4, 3, 15, 50, 30, tzinfo=UTC)),
    ("2021.03.04", datetime(2021, 3, 4, tzinfo=UTC)),  # JabRef's timestamp
    ("2021/03/04/", datetime(2021, 3, 4, tzinfo=UTC)),  # RIS DA
    ("2021-02-30", None), ("March 2021", None), ("", None)])
def test_every_tools_date_added_is_read_in_utc(raw, expected):
    from feedbot.library.parse import parse_date

    assert parse_date(raw) == expected
