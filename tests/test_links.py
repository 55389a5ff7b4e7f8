"""Paper identity from text, links in every view, the BibTeX export, and unicode-folded search."""

from __future__ import annotations

import re
from datetime import date

import bibtexparser
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pylatexenc.latex2text import LatexNodes2Text
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from feedbot.chat.bibtex import export
from feedbot.delivery.digests import Digest, render
from feedbot.delivery.messages import MAX_TEXT, Button, Reply, escape, fit, plain, telegram_length
from feedbot.ranking.recommend import Pick
from feedbot.store import db, links
from feedbot.store.models import Paper
from feedbot.store.papers import search_papers
from tests.fake_telegram import parse_html, parse_html_links, utf16_length


@pytest.mark.parametrize("written, arxiv_id", [
    ("see arXiv:2403.01234v2.", "2403.01234"),
    ("ARXIV: 1501.00001", "1501.00001"),
    ("https://arxiv.org/abs/2403.01234", "2403.01234"),
    ("http://arxiv.org/pdf/2403.01234v3.pdf", "2403.01234"),
    ("(https://huggingface.co/papers/2501.12345)", "2501.12345"),
    ("an old one: hep-th/9901001v1", "hep-th/9901001"),
    ("math.GT/0309136 is old-style too", "math.GT/0309136"),
    ("arxiv.org/abs/cond-mat/0102536", "cond-mat/0102536"),
    ("a bare 2403.01234 is just a number", None),
    ("arXiv:2413.01234 has no month 13", None),
    ("see example.com/hep-th/9901001", None),
    ("See arXiv:2403.01234.", "2403.01234"),
    ("(arXiv:1412.1234), and", "1412.1234"),
    ("https://ARXIV.ORG/ABS/HEP-TH/9901001V2", "hep-th/9901001"),
    ("arxiv.org/abs/math.ag/0101001", "math.AG/0101001"),
    ("https://arxiv.org/html/2403.01234v1#S2", "2403.01234"),
    ("arXiv:2403.1234 has four digits after 2014", None),
    ("arXiv:1412.12345 has five digits before 2015", None),
    ("arXiv:2403.01234.5 is a longer number", None),
    ("version 2.4.0, 2024.03.11 and 2403.01234", None),
])
def test_arxiv_ids_are_found_wherever_the_text_names_them(written, arxiv_id):
    assert links.find_arxiv_id(written) == arxiv_id


@pytest.mark.parametrize("title, abstract, own", [
    ("Sparse arXiv:2403.01234", "We extend arXiv:2301.00001.", "2403.01234"),
    ("Sparse", "We extend arXiv:2301.00001 to video.", None),
    ("Sparse", "Unlike arXiv:2301.00001 and arxiv.org/abs/2302.00002, we …", None),
    ("Sparse", "https://huggingface.co/papers/2403.01234 twice: arXiv:2403.01234v2", None),
    ("Sparse", "Code and paper: arxiv.org/abs/2403.01234, github.com/o/r", None),
])
def test_only_a_title_gives_a_paper_its_identity_and_its_link(title, abstract, own):
    """An id in the abstract, even the only one, is usually a cited paper's: never the pick's link,
    nor the BibTeX url; the title's id is both."""
    from feedbot.sources.records import from_dump

    assert links.identify(title, abstract).arxiv_id == own
    record = from_dump(title, abstract, date(2026, 3, 12), 3)
    assert record.arxiv_id == own
    assert record.url == (links.abs_url(own) if own else None)
    paper = Paper(id=1, title=title, abstract=abstract, first_listed=date(2026, 3, 12), arxiv_id=record.arxiv_id,
                  url=record.url, authors=None, code_url=record.code_url)
    [message] = render(Digest(1, date(2026, 3, 12), date(2026, 3, 12), [Pick(paper, 1.0, "liked", "why")]))
    title_link = parse_html_links(message.text)[1][0]
    url = bibtexparser.parse_string(export([paper])).entries[0].fields_dict.get("url")
    assert title_link == links.abs_url(own) if own else "/search/?query=Sparse" in title_link
    assert (url.value if url else None) == (links.abs_url(own) if own else None)


@pytest.mark.parametrize("written, code", [
    ("Code: https://github.com/owner/repo.", "https://github.com/owner/repo"),
    ("at github.com/owner/repo.git) and https://github.com/other/x", "https://github.com/owner/repo"),
    ("https://gitlab.com/group/project/-/tree/main", "https://gitlab.com/group/project"),
    ("see huggingface.co/papers/2501.12345 and huggingface.co/spaces/u/demo", "https://huggingface.co/spaces/u/demo"),
    ("https://github.com/features/actions then nothing", None),
    ("no code here", None),
])
def test_the_first_code_repository_is_found(written, code):
    assert links.find_code_url(written) == code


def test_links_and_authors():
    assert links.paper_url("2403.01234", "https://x", "T") == "https://arxiv.org/abs/2403.01234"
    assert links.paper_url(None, None, "A & B: über", "https://s.example/?q={query}") == \
        "https://s.example/?q=A+%26+B%3A+%C3%BCber"
    assert links.search_url("A/B c", "https://s.example/t/{title}") == "https://s.example/t/A%2FB%20c"
    assert len(links.search_url("語" * 500)) <= links.MAX_URL_CHARS
    assert links.short_authors("A. One\nB. Two\nC. Three") == "A. One, B. Two, C. Three"
    assert links.short_authors("A. One\nB. Two\nC. Three\nD. Four") == "A. One, B. Two et al."
    assert links.short_authors(None) == ""


def pick(n: int, title: str) -> Pick:
    """Pick n: every second one with an arXiv id, every third without a code link."""
    paper = Paper(id=1000 + n, title=title, abstract="An <abstract> & more. " * 40,
                  arxiv_id=f"2403.{n:05d}" if n % 2 else None, url=None,
                  authors="Á. Author\nB. <Author>\nC & D\nE", code_url=f"https://github.com/o/r{n}" if n % 3 else None)
    return Pick(paper, score=1.0, kind="liked", why=f"because you liked “<i>{n}</i>” & more")


@given(st.lists(st.text(min_size=1, max_size=500).filter(str.strip), min_size=20, max_size=20),
       st.sampled_from(["https://arxiv.org/search/?query={query}&searchtype=title",
                        "https://scholar.example/{title}?a=1&b=\"2\""]))
@settings(max_examples=25, deadline=None)
def test_a_digest_of_20_linked_picks_stays_within_telegram_limits(titles, template):
    picks = [pick(n, t) for n, t in enumerate(titles)]
    messages = render(Digest(1, date(2026, 3, 12), date(2026, 3, 12), picks, paper_link=template))
    hrefs = []
    for message in messages:
        shown, targets = parse_html_links(message.text)  # raises where Telegram would refuse the entities
        assert utf16_length(shown) <= MAX_TEXT
        hrefs += targets
    assert sum(len(m.keyboard) for m in messages) == 20
    titles_linked = [h for h in hrefs if "github.com" not in h]
    assert len(titles_linked) == 20  # every pick's title is a link
    assert titles_linked[1] == "https://arxiv.org/abs/2403.00001"
    assert sum("github.com" in h for h in hrefs) == sum(1 for n in range(20) if n % 3)


# Characters Telegram counts twice (UTF-16 surrogate pairs): 𝐛𝐨𝐥𝐝 and 𝔣𝔯𝔞𝔨𝔱𝔲𝔯 letters, emoji.
ASTRAL = st.characters(min_codepoint=0x10000, max_codepoint=0x1FAFF, blacklist_categories=("Cs", "Cn", "Co"))
ASTRAL_TEXT = st.text(st.one_of(ASTRAL, st.sampled_from(" &<>")), min_size=1, max_size=300).filter(str.strip)


@given(st.lists(st.tuples(ASTRAL_TEXT, ASTRAL_TEXT), min_size=20, max_size=20))
@settings(max_examples=40, deadline=None)
def test_a_digest_heavy_in_astral_characters_splits_where_telegram_counts(texts):
    """Telegram counts UTF-16 units of the parsed text: a digest of emoji and mathematical letters
    is split before any part passes 4096 of them, only between picks, and no part is refused."""
    picks = [Pick(Paper(id=1000 + n, title=title, abstract=abstract * 3, arxiv_id=None, url=None,
                        authors=title[:80], code_url=None), 1.0, "liked", f"because you liked “{title}”")
             for n, (title, abstract) in enumerate(texts)]
    messages = render(Digest(1, date(2026, 3, 12), date(2026, 3, 12), picks))
    numbers = []
    for message in messages:
        shown = parse_html(message.text)
        assert utf16_length(shown) <= MAX_TEXT == 4096
        assert telegram_length(message.text) == utf16_length(shown)
        here = [int(m.group(1)) for m in re.finditer(r"^(\d+)\. ", shown, re.MULTILINE)]
        assert [int(row[0].label.rsplit(" ", 1)[1]) for row in message.keyboard] == here
        numbers += here
    assert numbers == list(range(1, 21))


@given(st.lists(st.tuples(ASTRAL_TEXT, st.booleans()), min_size=1, max_size=60), st.integers(40, MAX_TEXT))
@settings(max_examples=150, deadline=None)
def test_any_long_reply_is_cut_into_messages_telegram_takes_losing_nothing(lines, limit):
    """Lists (/liked, /history, /interests, /mute…) longer than a message are cut between lines,
    never inside a tag; a line longer than a message is cut too. Every word arrives, in order."""
    text = "\n".join(f"<b>{escape(line)}</b>" if bold else escape(line) for line, bold in lines)
    keyboard = [[Button("👍 1", "v:1:+")]]
    parts = fit([Reply(text, keyboard)], limit)
    for part in parts:
        assert 0 < utf16_length(parse_html(part.text)) <= limit
    assert [p.keyboard for p in parts] == [[]] * (len(parts) - 1) + [keyboard]
    assert "".join("".join(parse_html(p.text).split()) for p in parts) == "".join(parse_html(text).split())


def test_console_and_plain_fallback_spell_links_out():
    html = '1. <b><a href="https://arxiv.org/abs/1?a=1&amp;b=2">A &amp; B</a></b> · <a href="https://g/x">code</a>'
    assert plain(html) == "1. A & B (https://arxiv.org/abs/1?a=1&b=2) · code (https://g/x)"


unicode_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=80).filter(str.strip)


@given(st.lists(st.tuples(unicode_text, st.lists(unicode_text, max_size=4)), min_size=1, max_size=5))
@settings(max_examples=150, deadline=None)
def test_any_titles_and_authors_export_to_bibtex_that_reads_back_the_same(papers):
    rows = [Paper(id=n, title=title, abstract=title, first_listed=date(2026, 3, 1),
                  arxiv_id="2403.01234" if n == 0 else None, url=None,
                  authors=links.join_authors(names) or None) for n, (title, names) in enumerate(papers)]
    library = bibtexparser.parse_string(export(rows))
    assert library.failed_blocks == [] and len(library.entries) == len(rows)
    decode = LatexNodes2Text().latex_to_text
    for row, entry in zip(rows, library.entries, strict=True):
        fields = entry.fields_dict
        # pylatexenc spells \\textasciicircum as the modifier letter ˆ; LaTeX prints it as ^.
        assert decode(fields["title"].value).replace("ˆ", "^") == " ".join(row.title.split()).replace("ˆ", "^")
        names = links.split_authors(row.authors)
        if names:
            parts = _split_and(fields["author"].value)
            assert [decode(p).replace("ˆ", "^") for p in parts] == [n.replace("ˆ", "^") for n in names]
    first = library.entries[0].fields_dict
    assert first["eprint"].value == "2403.01234" and first["archivePrefix"].value == "arXiv"
    assert first["url"].value == "https://arxiv.org/abs/2403.01234"


def _split_and(value: str) -> list[str]:
    """BibTeX's own rule: names split on ' and ' outside braces; a braced name loses its braces."""
    parts, depth, start = [], 0, 0
    for match in re.finditer(r"\\.|[{}]| and ", value):
        token = match.group()
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
        elif token == " and " and depth == 0:
            parts.append(value[start:match.start()])
            start = match.end()
    parts.append(value[start:])
    return [p[1:-1] if p.startswith("{") and p.endswith("}") and _balanced(p[1:-1]) else p for p in parts]


def _balanced(text: str) -> bool:
    depth = 0
    for match in re.finditer(r"\\.|[{}]", text):
        depth += {"{": 1, "}": -1}.get(match.group(), 0)
        if depth < 0:
            return False
    return depth == 0


def test_export_escapes_what_broke_latex():
    paper = Paper(id=1, title=r"50% of A & B_1 #2 $x$ \emph{y} ~ ^ --", abstract="a", first_listed=date(2026, 3, 1),
                  arxiv_id=None, url=None, authors="Bob and Sons\nSmith, J.")
    written = export([paper])
    assert r"50\% of A \& B\_1 \#2 \$x\$ \textbackslash{}emph\{y\} \textasciitilde{} \textasciicircum{} -{}-" in written
    assert "author = {{Bob and Sons} and {Smith, J.}}" in written


@pytest.mark.parametrize("query, hits", [
    ("über", {"Über alles"}), ("ÜBER", {"Über alles"}), ("uber", {"Über alles"}),
    ("ÉCOLE", {"Résumé of the école"}), ("resume", {"Résumé of the école"}),
    ("straße", {"STRASSE models"}), ("ΣΊΣΥΦΟΣ", {"σίσυφος learning"}),
    ("100%", {"A 100% solution"}), ("under_score", set()),
])
def test_search_folds_unicode_case_and_accents_on_both_databases(engine, query, hits):
    from feedbot.sources.ingest import store_records
    from feedbot.sources.records import PaperRecord

    titles = ["Über alles", "Résumé of the école", "STRASSE models", "σίσυφος learning", "A 100% solution",
              "under score"]
    records = [PaperRecord(t.casefold(), t, "abstract", date(2026, 3, 1)) for t in titles]
    store_records(engine, "t", "0" * 64, records)
    with Session(engine) as session:
        assert {p.title for p in search_papers(session, query)} == hits


def test_migration_backfills_ids_and_search_text_and_downgrades(database_url):
    db.upgrade(database_url, "0001")
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO papers (key, title, abstract, first_listed, created_at) VALUES "
                "('a', 'Über A', 'See arXiv:2403.01234 and github.com/o/r', '2026-03-01', '2026-03-01'),"
                "('b', 'B', 'Also arXiv:2403.01234', '2026-03-01', '2026-03-01'), "
                "('c', 'C', 'nothing', '2026-03-01', '2026-03-01'), "
                "('t', 'T arXiv:2403.01234', 'x', '2026-03-01', '2026-03-01'), "
                "('u', 'U arXiv:2403.01234v2', 'y', '2026-03-01', '2026-03-01')"))
        db.upgrade(database_url, "0003")
        with Session(engine) as session:  # the columns 0003 has: later revisions add more
            rows = {p.key: p for p in session.execute(
                select(Paper.key, Paper.arxiv_id, Paper.code_url, Paper.url, Paper.search_text))}
        assert rows["a"].arxiv_id is None and rows["a"].code_url == "https://github.com/o/r"
        assert rows["a"].url is None and rows["b"].url is None  # cited in the abstract: not theirs
        assert rows["t"].arxiv_id == "2403.01234"  # named in its title: its identity
        assert rows["u"].arxiv_id is None  # one row per id: the first keeps it
        assert rows["t"].url == rows["u"].url == "https://arxiv.org/abs/2403.01234"  # each links to its own
        assert rows["a"].search_text.startswith("uber a")
        db.downgrade(database_url, "0001")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM papers")).scalar() == 5
        db.upgrade(database_url)
    finally:
        engine.dispose()


def test_telegram_digests_and_lists_link_every_paper_without_previews(bot, telegram, seeded):
    from tests.test_bot import onboard, talk

    onboard(telegram)
    talk(telegram, "/skip")
    [digest] = talk(telegram, "/digest")
    shown, hrefs = parse_html_links(digest.text)
    assert digest.link_preview == {"is_disabled": True}
    assert len([h for h in hrefs if "/search/?query=" in h or "/abs/" in h]) == len(digest.buttons) == 5
    [found] = talk(telegram, "/search diffusion")
    assert len(parse_html_links(found.text)[1]) >= len(found.buttons) > 0


def test_migration_clears_links_taken_from_an_abstract(database_url):
    """A database whose dumps were ingested when a lone id in an abstract became the link: the
    upgrade clears those links and keeps every paper's own."""
    db.upgrade(database_url, "0004")
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO papers (key, title, abstract, first_listed, created_at, arxiv_id, url, search_text) "
                "VALUES "
                "('c', 'Citing', 'We extend arXiv:2403.01234.', '2026-03-01', '2026-03-01', NULL, "
                " 'https://arxiv.org/abs/2403.01234', ''),"
                "('o', 'Own arXiv:2403.05678', 'x', '2026-03-01', '2026-03-01', NULL, "
                " 'https://arxiv.org/abs/2403.05678', ''),"
                "('i', 'Its id', 'y', '2026-03-01', '2026-03-01', '2403.09999', "
                " 'https://arxiv.org/abs/2403.09999', ''),"
                "('h', 'Hub', 'z', '2026-03-01', '2026-03-01', NULL, 'https://huggingface.co/papers/x', '')"))
        db.upgrade(database_url)
        with Session(engine) as session:
            urls = dict(session.execute(select(Paper.key, Paper.url)).all())
        assert urls == {"c": None, "o": "https://arxiv.org/abs/2403.05678",
                        "i": "https://arxiv.org/abs/2403.09999", "h": "https://huggingface.co/papers/x"}
    finally:
        engine.dispose()


def test_migration_refolds_search_text_so_search_finds_old_papers(database_url):
    """Papers stored under the earlier fold (compatibility letters kept upper case: `𝐀`, `㎒`)
    are found by /search after the upgrade, on both databases (PostgreSQL's LIKE is case-sensitive)."""
    db.upgrade(database_url, "0004")
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO papers (key, title, abstract, first_listed, created_at, authors, search_text) VALUES "
                "('m', '𝐀ttention at 5 ㎒', 'x', '2026-03-01', '2026-03-01', 'Ａda Ｌovelace', "
                " 'Attention at 5 MHz\nx\nAda Lovelace'),"
                "('p', 'plain', 'y', '2026-03-01', '2026-03-01', NULL, 'plain\ny')"))
        db.upgrade(database_url)
        with Session(engine) as session:
            assert [p.key for p in search_papers(session, "attention mhz ada")] == ["m"]
            assert [p.key for p in search_papers(session, "PLAIN")] == ["p"]
            stored = dict(session.execute(select(Paper.key, Paper.search_text)).all())
        assert stored == {"m": "attention at 5 mhz\nx\nada lovelace", "p": "plain\ny"}
    finally:
        engine.dispose()
