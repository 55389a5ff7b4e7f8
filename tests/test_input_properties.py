"""Property-based tests (Hypothesis) for what people and scrapers type: dumps as any bytes or with
lost lines, numbers, mutes, times and time zones."""

import re
import unicodedata
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from feedbot.clock import parse_hhmm
from feedbot.numbers import whole_number
from feedbot.sources.dumps import ABSTRACT_ENDINGS, DumpError, parse_dump
from feedbot.sources.records import MAX_TITLE_CHARS, dedupe_key
from feedbot.store.papers import search_text
from feedbot.store.subscribers import UserError, parse_timezone, zone
from feedbot.store.textmatch import fold, mute_pattern

STAMP = date(2026, 3, 20)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LINE_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=60)


@FAST
@given(st.one_of(st.binary(max_size=400),
                 st.lists(st.one_of(LINE_TEXT, st.sampled_from(["Mar 11", "March 12", "", "Feb 29", "Jan 1"])),
                          max_size=20).map(lambda lines: "\n".join(lines).encode())))
def test_any_bytes_are_entries_or_refused_with_a_reason(raw):
    try:
        parsed = parse_dump(raw, "any.txt", STAMP)
    except DumpError as exc:
        assert exc.reason and str(exc).startswith("any.txt")
        return
    for entry in parsed.entries:
        assert entry.title and entry.abstract and entry.key and entry.line >= 1
        assert len(entry.title) <= MAX_TITLE_CHARS
        assert STAMP - timedelta(days=366 * 9) <= entry.listed_on <= STAMP + timedelta(days=1)


TITLE = LINE_TEXT.map(lambda t: " ".join(t.split())).filter(
    lambda t: t and not t.endswith(ABSTRACT_ENDINGS) and not re.match(r"^[A-Za-z]{3,9}\.? [0-9]{1,2}$", t))
ABSTRACT = st.lists(st.sampled_from(["we", "propose", "a", "model", "that", "learns", "graphs", "with", "attention",
                                     "and", "beats", "baselines", "on", "benchmarks"]), min_size=60, max_size=120)


@FAST
@given(st.data())
def test_lost_lines_never_pair_a_title_with_a_wrong_abstract(data):
    """Whatever lines are lost, an accepted dump pairs each title with its own abstract, except the one
    case no shape can tell: a paper's abstract and the next paper's title lost together, which
    splices two neighbours (documented in the README)."""
    sections = data.draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    body, entries, kinds = [], [], []
    for s, count in enumerate(sections):
        body.append(f"Mar {11 + s}")
        kinds.append(("date", -1))
        for _ in range(count):
            i = len(entries)
            title = f"{data.draw(TITLE)} #{i}"
            abstract = f"Paper {i}: " + " ".join(data.draw(ABSTRACT)) + "."
            entries.append((title, abstract))
            body += [title, abstract]
            kinds += [("title", i), ("abstract", i)]
    last_abstract = max(n for n, (kind, _) in enumerate(kinds) if kind == "abstract")
    lost = data.draw(st.sets(st.sampled_from([n for n, (kind, _) in enumerate(kinds)
                                              if kind != "date" and n != last_abstract]), max_size=6))
    kept = [line for n, line in enumerate(body) if n not in lost]
    raw = ("new\n\n" + "\n\n".join(kept) + "\n").encode()
    try:
        parsed = parse_dump(raw, "cut.txt", STAMP)
    except DumpError as exc:
        assert exc.reason and exc.line, str(exc)
        return
    by_title = {t: i for i, (t, _) in enumerate(entries)}
    by_abstract = {a: i for i, (_, a) in enumerate(entries)}
    for entry in parsed.entries:
        i, j = by_title.get(entry.title), by_abstract.get(entry.abstract)
        assert i is not None and j is not None, entry
        if i != j:  # the splice: everything from abstract i to title j was lost
            start, end = body.index(entries[i][1]), body.index(entries[j][0])
            assert j > i and set(range(start, end + 1)) <= lost, (entry, sorted(lost))


def test_titles_only_and_shifted_example_dumps_are_refused(example_dumps):
    raw = next(iter(sorted(example_dumps.iterdir()))).read_text(encoding="utf-8")
    lines = raw.split("\n")
    start = lines.index("Mar 11")
    body = [n for n, line in enumerate(lines) if line.strip() and n > start]

    def without(lost):
        return "\n".join(line for n, line in enumerate(lines) if n not in lost).encode()

    refusals = {
        "titles only": (set(body[1::2]), "titles-only dump"),
        "two abstracts lost": ({body[3], body[9]}, "looks like a title, not an abstract"),
        "two adjacent abstracts lost": ({body[3], body[5]}, "looks like a title, not an abstract"),
        "two titles lost": ({body[2], body[8]}, "looks like an abstract"),
        "an abstract and a later title lost": ({body[3], body[6]}, "looks like a title, not an abstract"),
    }
    for name, (lost, reason) in refusals.items():
        with pytest.raises(DumpError, match=reason) as info:
            parse_dump(without(lost), "cut.txt", STAMP)
        assert info.value.line, name
    assert len(parse_dump(without({body[2], body[3]}), "ok.txt", STAMP).entries) == len(body) // 2 - 1


@FAST
@given(st.lists(st.text(st.characters(blacklist_categories=("L", "N", "M", "Cs")), min_size=1, max_size=8)
                .filter(lambda t: t.strip()), min_size=2, max_size=5, unique_by=lambda t: " ".join(t.split())))
def test_symbol_only_titles_keep_distinct_non_empty_keys(titles):
    keys = [dedupe_key(" ".join(t.split())) for t in titles]
    assert all(keys)
    assume(len({" ".join(t.split()).casefold() for t in titles}) == len(titles))
    assert len(set(keys)) == len(titles)


@FAST
@given(st.text(max_size=12))
def test_numbers_are_parsed_or_refused_never_raised(text):
    value = whole_number(text, 1, 20)
    assert value is None or (1 <= value <= 20 and text.strip().isdecimal())


@pytest.mark.parametrize("text", ["²", "³", "¹", "٣٣", "5.0", "1e3", "-1", "0", "21", "9" * 5000, "", " "])
def test_odd_numbers_get_none(text):
    assert whole_number(text, 1, 20) is None


def test_decimal_digits_of_any_script_count():
    assert whole_number("٣", 1, 20) == 3 and whole_number("１２", 1, 20) == 12 and whole_number(" 7 ", 1, 20) == 7


SYMBOL_WORDS = st.sampled_from(["c++", "c#", ".net", "f#", "node.js", "gpt-4", "naïve", "über", "GAN", "q&a"])
FILLER = st.sampled_from(["we", "use", "the", "model", "in", "ASP", "fast", "organ", "", "(", ")", ",", "."])


@FAST
@given(SYMBOL_WORDS, st.lists(FILLER, max_size=6), st.lists(FILLER, max_size=6),
       st.sampled_from([str.upper, str.lower, str.title, lambda s: s]), st.sampled_from([" ", "(", " ", "\n"]))
def test_a_muted_word_matches_however_it_is_written(word, before, after, case, edge):
    text = " ".join(before) + edge + case(word) + (")" if edge == "(" else " ") + " ".join(after)
    assert mute_pattern([word]).search(fold(text)), text
    accentless = fold(word)
    assert mute_pattern([accentless]).search(fold(text)), (accentless, text)


@pytest.mark.parametrize(("word", "text"), [("gan", "organ transplants"), (".net", "a .network"),
                                            ("c#", "music in c"), ("c++", "c and c+ only")])
def test_a_muted_word_does_not_match_inside_other_words(word, text):
    assert not mute_pattern([word]).search(fold(text))


@FAST
@given(st.text(max_size=12))
def test_time_parsing_accepts_or_raises_value_error(text):
    try:
        value = parse_hhmm(text)
    except ValueError:
        return
    assert 0 <= value.hour < 24 and 0 <= value.minute < 60


@FAST
@given(st.integers(0, 23), st.integers(0, 59), st.sampled_from(["{h}:{m:02d}", "{h:02d}{m:02d}", "{h}h{m:02d}"]))
def test_every_valid_time_round_trips(hour, minute, form):
    value = parse_hhmm(form.format(h=hour, m=minute))
    assert (value.hour, value.minute) == (hour, minute)


@FAST
@given(st.one_of(st.text(max_size=30), st.from_regex(r"\A(UTC|GMT)?[+-][0-9]{1,2}(:?[0-9]{2})?\Z")))
def test_time_zone_parsing_answers_or_explains(text):
    try:
        name = parse_timezone(text)
    except UserError as exc:
        assert str(exc)
        return
    assert zone(name) is not None
    assert parse_timezone(name) == name  # the stored form parses back to itself


@FAST
@given(st.sampled_from(["+", "-"]), st.integers(0, 14), st.sampled_from([0, 15, 30, 45]))
def test_offsets_round_trip(sign, hours, minutes):
    name = parse_timezone(f"UTC{sign}{hours}:{minutes:02d}")
    offset = zone(name).utcoffset(None).total_seconds()
    assert offset == (1 if sign == "+" else -1) * (hours * 3600 + minutes * 60)


def test_titles_only_dumps_of_any_size_are_refused(example_dumps):
    """Two titles look like one paper whose abstract is a title: refused at every size, with or
    without date lines between them, while one-word test abstracts ("A1", "abs") stay accepted."""
    titles = [e.title for path in sorted(example_dumps.iterdir())
              for e in parse_dump(path.read_bytes(), path.name, STAMP).entries]
    for count in range(2, 41, 2):
        for dated in (False, True):
            lines = ["Mar 11"]
            for n, title in enumerate(titles[:count]):
                if dated and n and n % 2 == 0:
                    lines.append(f"Mar {11 + n // 2 % 2}")
                lines.append(title)
            with pytest.raises(DumpError, match="titles-only") as info:
                parse_dump(("new\n\n" + "\n\n".join(lines) + "\n").encode(), "titles.txt", STAMP)
            assert info.value.line, (count, dated)
    for pair in (("T1", "A1"), ("Title two", "abstract two"), ("A Paper: Title", "abs"), ("Paper 1", "Abstract 1.")):
        assert parse_dump(f"new\n\nMar 11\n\n{pair[0]}\n\n{pair[1]}\n".encode(), "ok.txt", STAMP).entries


def test_short_abstracts_in_title_places_are_refused():
    """Abstracts under MAX_TITLE_CHARS characters lose their titles too: a sentence of many words
    where a title belongs is refused, in an abstracts-only dump or after a lost title."""
    abstracts = [f"We study problem {n} with a small model that learns from data, and we show that it beats "
                 f"all of the strong baselines on each of the ten tasks we tried in this short paper: so it "
                 f"is a good fit for it." for n in range(4)]
    assert all(len(a) < MAX_TITLE_CHARS for a in abstracts)
    for body in (abstracts[:2], abstracts, ["Title zero", abstracts[0], abstracts[1], abstracts[2]]):
        with pytest.raises(DumpError, match="looks like an abstract") as info:
            parse_dump(("new\n\nMar 11\n\n" + "\n\n".join(body) + "\n").encode(), "cut.txt", STAMP)
        assert info.value.line


def _old_papers_fold(text: str) -> str:
    """The fold /search used to store (case first, then NFKD): the reference the one fold must keep."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def _old_mute_fold(text: str) -> str:
    """The fold mutes and interests used to match with (NFKD, marks dropped, NFKC, case last)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize("NFKC", "".join(c for c in decomposed if not unicodedata.combining(c))).casefold()


ANY_TEXT = st.one_of(st.text(max_size=40), st.text(st.sampled_from("AaÉéİıß㎒𝐀ＣＡＦｆﬁᾳ̈́ͅ++#. -_ſΣσς"), max_size=12))


@FAST
@given(ANY_TEXT)
def test_one_fold_keeps_what_search_and_mutes_each_relied_on(text):
    """search (papers.search_text) and mutes/interests (textmatch) now share one fold. It gives the
    same text as each old fold wherever that one was settled (already case-folded and NFKC), the
    only exception being the Greek iota subscript, which full case folding spells out as ι."""
    folded = fold(text)
    assert fold(folded) == folded  # idempotent: a stored fold and a folded query meet
    assert not any(unicodedata.combining(c) for c in unicodedata.normalize("NFD", folded))  # no accents
    assert folded == unicodedata.normalize("NFKC", folded)  # compatibility forms gone
    assert folded.casefold() == folded  # no case left to fold
    if "\u0345" in unicodedata.normalize("NFKD", text):
        return
    assert folded == _old_mute_fold(text)
    old = _old_papers_fold(text)
    if old == unicodedata.normalize("NFKC", old).casefold():
        assert folded == old


@pytest.mark.parametrize(("text", "folded"), [
    ("Über CAFÉ", "uber cafe"), ("Naïve ＣＡＦÉ", "naive cafe"), ("Kurt Gödel", "kurt godel"),
    ("C++ and C# on .NET", "c++ and c# on .net"), ("ﬁne-tuning", "fine-tuning"), ("Straße", "strasse"),
    ("㎒ and 𝐀𝐁", "mhz and ab"), ("İstanbul", "istanbul"), ("ᾳ", "αι"), ("🙂 Σ", "🙂 σ"),
])
def test_fold_examples(text, folded):
    assert fold(text) == folded
    assert search_text(text, "") == folded
    assert all(term in fold(f"x {text} y") for term in fold(text).split())  # what /search asks of a paper
