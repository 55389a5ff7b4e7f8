"""The built-in sources against a loopback server: good answers stored like a dump, bad ones refused
whole, polite paging and retries, one paper whether it came by dump or by source, and a fetched
paper walked into a digest that links to its arXiv page."""

from __future__ import annotations

import dataclasses
import gzip
import json
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from feedbot.chat.conversation import Chat, User
from feedbot.ranking import textmodel
from feedbot.sources import arxiv, hf, run
from feedbot.sources.http import LONGEST_WAIT, Client, SourceError, parse_retry_after
from feedbot.sources.ingest import ingest_file
from feedbot.sources.spec import SourceSpec, SourceSpecError, parse_sources
from feedbot.store.models import Dump, Listing, Paper
from tests.fake_telegram import parse_html_links
from tests.source_fixtures import ARXIV_ERROR, HF_ITEMS, arxiv_entry, arxiv_feed, hf_json
from tests.source_server import Canned, SourceServer

HF = SourceSpec("hf")
ARXIV = SourceSpec("arxiv", ("cs.LG", "cs.CL"))
DAY = date(2024, 3, 5)
FAST_PROPERTIES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class FakeTime:
    """An injectable clock and sleep: waits are recorded, none are slept."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def source_settings(settings, server):
    return dataclasses.replace(settings, hf_api_url=server.base_url, arxiv_api_url=server.base_url + "/api/query")


def client(fake: FakeTime, interval: float = 0.0) -> Client:
    return Client(min_interval=interval, timeout=5, retries=3, backoff=1.5, sleep=fake.sleep, clock=fake.clock)


def counts(engine) -> tuple[int, int, int]:
    with Session(engine) as session:
        return tuple(session.scalar(select(func.count()).select_from(t)) for t in (Paper, Dump, Listing))


def test_hf_daily_papers_are_stored_like_a_dump(engine, server, source_settings):
    server.serve("/api/daily_papers", Canned(hf_json()))
    report = run.run(engine, source_settings, HF, client(FakeTime()), day=DAY)
    assert (report.status, report.new, report.entries) == ("ingested", 2, 2)
    [seen] = server.requests
    assert seen.query == {"date": "2024-03-05"} and seen.headers["user-agent"].startswith("feedbot/")
    with Session(engine) as session:
        papers = {p.arxiv_id: p for p in session.scalars(select(Paper))}
        listed = set(session.scalars(select(Listing.listed_on)))
    first = papers["2403.01234"]
    assert first.title == "Diffusion Models for Video Editing" and first.first_listed == DAY
    assert first.authors.split("\n") == ["Ada Lovelace", "Émile Borel", "Grace Hopper", "Alan Turing"]
    assert first.code_url == "https://github.com/example/vidiff"  # from the abstract
    assert first.url == "https://arxiv.org/abs/2403.01234"
    assert papers["2403.05678"].code_url == "https://github.com/example/sparse"  # the API's githubRepo
    assert listed == {DAY}
    again = run.run(engine, source_settings, HF, client(FakeTime()), day=DAY)
    assert again.status == "duplicate" and counts(engine) == (2, 1, 2)


def test_hf_without_a_date_lists_each_paper_on_its_daily_page_date(engine, server, source_settings):
    server.serve("/api/daily_papers", Canned(hf_json()))
    assert run.run(engine, source_settings, HF, client(FakeTime())).new == 2
    assert server.requests[0].query == {}
    with Session(engine) as session:
        assert set(session.scalars(select(Paper.first_listed))) == {date(2024, 3, 5)}


def test_arxiv_pages_newest_first_three_seconds_apart(engine, server, source_settings):
    entries = [arxiv_entry(f"2403.0{n:04d}", f"Paper number {n}", published=f"2024-03-{10 - n:02d}T10:00:00Z",
                           comment="code at github.com/ex/p" + str(n)) for n in range(5)]
    server.paged["/api/query"] = {
        "0": Canned(arxiv_feed(entries[:2], total=5), "application/atom+xml; charset=utf-8"),
        "2": Canned(arxiv_feed(entries[2:4], total=5, start=2), "application/atom+xml; charset=utf-8"),
        "4": Canned(arxiv_feed(entries[4:], total=5, start=4), "application/atom+xml; charset=utf-8"),
    }
    fake = FakeTime()
    records = arxiv.fetch(client(fake, interval=arxiv.MIN_INTERVAL), source_settings.arxiv_api_url,
                          ARXIV.categories, limit=50, page_size=2)
    assert [r.arxiv_id for r in records] == [f"2403.0{n:04d}" for n in range(5)]
    assert fake.sleeps == [3.0, 3.0]  # one request every 3 s, none before the first
    assert [s.query["start"] for s in server.requests] == ["0", "2", "4"]
    first = server.requests[0].query
    assert first["search_query"] == "cat:cs.LG OR cat:cs.CL" and first["sortBy"] == "submittedDate"
    assert first["sortOrder"] == "descending" and first["max_results"] == "2"
    assert records[1].code_url == "https://github.com/ex/p1" and records[0].authors == "A. Author\nB. Author"

    report = run.run(engine, source_settings, ARXIV, client(FakeTime()), limit=3)
    assert (report.status, report.new) == ("ingested", 3)
    with Session(engine) as session:
        assert sorted(session.scalars(select(Listing.listed_on))) == [date(2024, 3, d) for d in (8, 9, 10)]


def test_arxiv_keeps_only_the_requested_categories(server, source_settings):
    entries = [arxiv_entry("2403.00001", "Kept", categories=("stat.ML", "cs.LG")),
               arxiv_entry("2403.00002", "Dropped", categories=("math.AG",))]
    server.serve("/api/query", Canned(arxiv_feed(entries), "application/atom+xml"))
    records = arxiv.fetch(client(FakeTime()), source_settings.arxiv_api_url, ("cs.LG",))
    assert [r.title for r in records] == ["Kept"]


TRUNCATED_XML = arxiv_feed([arxiv_entry("2403.00001", "A paper")])[:-40]
BAD_ANSWERS = {
    "hf html error page": (HF, Canned(b"<!doctype html><title>502</title>", "text/html"), "text/html"),
    "hf truncated json": (HF, Canned(hf_json()[:-30]), "truncated JSON"),
    "hf wrong content type": (HF, Canned(hf_json(), "text/plain"), "text/plain"),
    "hf empty list": (HF, Canned(b"[]"), "empty list"),
    "hf not a list": (HF, Canned(b'{"error": "Invalid date"}'), "expected a list"),
    "hf item without a title": (HF, Canned(json.dumps([{"paper": {"id": "2403.1", "summary": "x"}}]).encode()),
                                "missing title"),
    "hf 404": (HF, Canned(b'{"error": "not found"}', status=404), "HTTP 404"),
    "arxiv html error page": (ARXIV, Canned(b"<html><body>Bad gateway</body></html>", "text/html"), "text/html"),
    "arxiv truncated xml": (ARXIV, Canned(TRUNCATED_XML, "application/atom+xml"), "truncated XML"),
    "arxiv wrong content type": (ARXIV, Canned(arxiv_feed([arxiv_entry("2403.00001", "P")]), "application/json"),
                                 "application/json"),
    "arxiv empty feed": (ARXIV, Canned(arxiv_feed([], total=0), "application/atom+xml"), "empty feed"),
    "arxiv api error": (ARXIV, Canned(ARXIV_ERROR, "application/atom+xml"), "incorrect id format"),
    "arxiv not atom": (ARXIV, Canned(b"<?xml version='1.0'?><rss/>", "application/xml"), "not an Atom feed"),
    "hf author name not text": (HF, Canned(json.dumps([dict(HF_ITEMS[0], paper=dict(
        HF_ITEMS[0]["paper"], authors=[{"name": 7}]))]).encode()), "author"),
    "hf nested too deep": (HF, Canned(b"[" * 100_000 + b"]" * 100_000), "JSON"),
    "hf body not gzip as declared": (HF, Canned(b"not gzip at all", headers={"Content-Encoding": "gzip"}),
                                     "DecodingError"),
    "hf redirect loop": (HF, Canned(b"", "text/plain", 302, {"Location": "/api/daily_papers?date=2024-03-05"}),
                         "TooManyRedirects"),
    "arxiv published not a date": (ARXIV, Canned(arxiv_feed([arxiv_entry("2403.00001", "P", published="soon")]),
                                                 "application/atom+xml"), "not a date"),
    "always 503": (HF, Canned(b"busy", "text/plain", 503), "failed 4 times"),
    "429 asking for an hour": (ARXIV, Canned(b"slow down", "text/plain", 429, {"Retry-After": "3600"}),
                               "asked to wait 3600 s"),
}


@pytest.mark.parametrize("case", list(BAD_ANSWERS))
def test_a_bad_answer_is_refused_whole_and_stores_nothing(engine, server, source_settings, case):
    spec, answer, message = BAD_ANSWERS[case]
    server.serve("/api/daily_papers", answer)
    server.serve("/api/query", answer)
    report = run.run(engine, source_settings, spec, client(FakeTime()), day=DAY)
    assert report.status == "failed" and message in report.error, report.error
    assert counts(engine) == (0, 0, 0)
    # The next run tries again, and a good answer then lands.
    server.serve("/api/daily_papers", Canned(hf_json()))
    server.serve("/api/query", Canned(arxiv_feed([arxiv_entry("2403.00001", "P")]), "application/atom+xml"))
    assert run.run(engine, source_settings, spec, client(FakeTime()), day=DAY).status == "ingested"


def test_an_empty_page_in_the_middle_refuses_the_whole_fetch(engine, server, source_settings):
    server.paged["/api/query"] = {
        "0": Canned(arxiv_feed([arxiv_entry("2403.00001", "P1")], total=3), "application/atom+xml"),
        "1": Canned(arxiv_feed([], total=3, start=1), "application/atom+xml"),
    }
    fake = FakeTime()
    with pytest.raises(SourceError, match="empty page at start=1 of 3"):
        arxiv.fetch(client(fake), source_settings.arxiv_api_url, ("cs.LG",), page_size=1)
    report = run.run(engine, source_settings, ARXIV, client(fake))
    assert report.status == "failed" and counts(engine) == (0, 0, 0)


def test_5xx_then_success_retries_with_backoff(server, source_settings):
    server.serve("/api/daily_papers", Canned(b"oops", "text/html", 502), Canned(b"oops", "text/html", 500),
                 Canned(hf_json()))
    fake = FakeTime()
    assert len(hf.fetch(client(fake), source_settings.hf_api_url, DAY)) == 2
    assert fake.sleeps == [1.5, 3.0] and len(server.requests) == 3


def test_429_waits_as_long_as_retry_after_says(server, source_settings):
    server.serve("/api/daily_papers", Canned(b"", "text/plain", 429, {"Retry-After": "7"}),
                 Canned(b"", "text/plain", 503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), Canned(hf_json()))
    fake = FakeTime()
    assert len(hf.fetch(client(fake), source_settings.hf_api_url, DAY)) == 2
    assert fake.sleeps == [7.0, 0.0]  # a date in the past: no wait


def test_a_timeout_is_retried_then_refused(source_settings):
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    fake = FakeTime()
    slow = Client(timeout=0.2, retries=1, backoff=0.5, sleep=fake.sleep, clock=fake.clock)
    try:
        with pytest.raises(SourceError, match="failed 2 times, last with ReadTimeout"):
            hf.fetch(slow, url, DAY)
    finally:
        listener.close()
    assert fake.sleeps == [0.5]
    assert threading.active_count() >= 1


def test_a_paper_from_a_dump_and_from_a_source_is_one_paper(engine, server, source_settings, tmp_path):
    dump = tmp_path / "dump.txt"
    dump.write_text("Daily papers\nMar 5\nDIFFUSION models for video editing!\nWe edit videos.\n"
                    "Sparse Things (arXiv:2403.05678v2)\nSparse things, in detail.\n", encoding="utf-8")
    assert ingest_file(engine, dump, date(2024, 3, 6)).new == 2
    with Session(engine) as session:
        before = {p.key: (p.id, p.arxiv_id) for p in session.scalars(select(Paper))}
        before["sparse things"] = before.pop("sparse things arxiv 2403 05678v2")
    assert before["sparse things"][1] == "2403.05678"  # the id the dump's title names
    server.serve("/api/daily_papers", Canned(hf_json()))
    report = run.run(engine, source_settings, HF, client(FakeTime()), day=DAY)
    assert (report.new, report.known) == (0, 2)
    with Session(engine) as session:
        papers = {p.id: p for p in session.scalars(select(Paper))}
        assert session.scalar(select(func.count()).select_from(Listing)) == 4
    assert set(papers) == {pid for pid, _ in before.values()}
    by_title = papers[before["diffusion models for video editing"][0]]  # matched on the title
    assert by_title.arxiv_id == "2403.01234" and by_title.authors.startswith("Ada Lovelace")
    assert by_title.code_url == "https://github.com/example/vidiff"
    by_id = papers[before["sparse things"][0]]  # matched on the arXiv id despite another title
    assert by_id.title == "Sparse Things (arXiv:2403.05678v2)" and by_id.authors == "Kurt Gödel"
    with Session(engine) as session:
        from feedbot.store.papers import search_papers

        assert [p.id for p in search_papers(session, "gödel")] == [by_id.id]  # authors are searchable


@pytest.mark.parametrize("dump_first", [True, False])
def test_an_abstract_citing_a_fetched_paper_does_not_merge_the_two(engine, server, source_settings, tmp_path,
                                                                   dump_first):
    dump = tmp_path / "dump.txt"
    dump.write_text("Daily papers\nMar 5\nBetter Sparse Things\nWe extend arXiv:2403.05678v2 to video.\n"
                    "Other Things\nBuilding on https://huggingface.co/papers/2403.01234, we go further.\n",
                    encoding="utf-8")
    server.serve("/api/daily_papers", Canned(hf_json()))
    steps = [lambda: ingest_file(engine, dump, date(2024, 3, 6)),
             lambda: run.run(engine, source_settings, HF, client(FakeTime()), day=DAY)]
    for step in steps if dump_first else steps[::-1]:
        assert step().new == 2
    with Session(engine) as session:
        papers = {p.title: p for p in session.scalars(select(Paper))}
    assert len(papers) == 4
    assert papers["Über Sparse Attention & Long Contexts"].arxiv_id == "2403.05678"
    assert papers["Diffusion Models for Video Editing"].arxiv_id == "2403.01234"
    citing = papers["Better Sparse Things"]
    assert citing.arxiv_id is None and citing.authors is None  # nothing of the cited paper attached
    assert citing.url is None  # the one id it names is a cited paper's: not its link
    assert papers["Other Things"].arxiv_id is None


def test_the_same_paper_twice_in_one_batch_is_listed_once(engine, server, source_settings):
    twice = HF_ITEMS + [dict(HF_ITEMS[0], paper=dict(HF_ITEMS[0]["paper"], title="Renamed"))]
    server.serve("/api/daily_papers", Canned(hf_json(twice)))
    report = run.run(engine, source_settings, HF, client(FakeTime()), day=DAY)
    assert (report.entries, report.new, report.known) == (3, 2, 0)
    assert counts(engine) == (2, 1, 2)


def test_a_fetched_paper_walks_into_a_digest_that_links_to_arxiv(engine, server, source_settings):
    from datetime import UTC, datetime

    server.serve("/api/daily_papers", Canned(hf_json()))
    assert run.run(engine, source_settings, HF, client(FakeTime()), day=DAY).new == 2
    with Session(engine) as session:
        textmodel.ensure(session, source_settings.model_dir)
    now = [datetime(2024, 3, 5, 9, 0, tzinfo=UTC)]
    chat = Chat(engine, source_settings, clock=lambda: now[0])
    user = User(7, 7, "Ada")
    chat.command(user, "start")
    starter = chat.text(user, "video diffusion")
    assert any("https://arxiv.org/abs/2403.05678" in parse_html_links(r.text)[1] for r in starter)
    chat.command(user, "skip")
    # The next day's page brings a new paper; the digest links it to its arXiv page.
    item = dict(HF_ITEMS[0], paper=dict(HF_ITEMS[0]["paper"], id="2403.07777v2", title="Video diffusion, faster",
                                        summary="Faster video diffusion. https://gitlab.com/ex/fast"))
    server.serve("/api/daily_papers", Canned(hf_json([item])))
    assert run.run(engine, source_settings, HF, client(FakeTime()), day=date(2024, 3, 6)).new == 1
    with Session(engine) as session:
        textmodel.ensure(session, source_settings.model_dir)
    now[0] = datetime(2024, 3, 6, 9, 0, tzinfo=UTC)
    [digest] = chat.command(user, "digest")
    shown, hrefs = parse_html_links(digest.text)
    assert hrefs == ["https://arxiv.org/abs/2403.07777", "https://gitlab.com/ex/fast"]
    assert "Ada Lovelace, Émile Borel et al. · code" in shown


def test_feedbot_fetch_commands(engine, server, source_settings, env, monkeypatch, capsys):
    from feedbot import cli

    for name, value in {**env, "FEEDBOT_HF_API_URL": server.base_url,
                        "FEEDBOT_ARXIV_API_URL": server.base_url + "/api/query"}.items():
        monkeypatch.setenv(name, value)
    server.serve("/api/daily_papers", Canned(hf_json()))
    assert cli.main(["fetch", "hf", "--date", "2024-03-05"]) == 0
    out = capsys.readouterr().out
    assert "2 new papers" in out and "text model fitted" in out
    server.serve("/api/query", Canned(arxiv_feed([arxiv_entry("2403.09999", "New one")]), "application/atom+xml"))
    assert cli.main(["fetch", "arxiv", "--category", "cs.LG", "--category", "cs.CL", "--max", "5"]) == 0
    assert server.requests[-1].query["max_results"] == "5"
    server.serve("/api/query", Canned(b"<html>down</html>", "text/html"))
    assert cli.main(["fetch", "arxiv", "--category", "cs.LG"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert cli.main(["fetch", "arxiv", "--category", "not a category"]) == 2


def test_sources_setting_is_parsed_and_checked():
    assert parse_sources("hf, arxiv:cs.LG+cs.CL,hf") == [HF, ARXIV]
    assert parse_sources("") == [] and parse_sources(" , ") == []
    assert parse_sources("arxiv:hep-th+math.AG")[0].categories == ("hep-th", "math.AG")
    for bad in ("rss", "arxiv", "arxiv:", "hf:cs.LG", "arxiv:cs LG", "arxiv:cs.LG;drop"):
        with pytest.raises(SourceSpecError):
            parse_sources(bad)


def test_the_worker_job_runs_every_configured_source(engine, server, source_settings):
    import asyncio

    from feedbot.worker import Worker

    server.serve("/api/daily_papers", Canned(hf_json()))
    server.serve("/api/query", Canned(b"<html>maintenance</html>", "text/html"))
    configured = dataclasses.replace(source_settings, sources=("hf", "arxiv:cs.LG"))
    worker = Worker(configured, engine)
    reports = asyncio.run(worker.sweep_sources())
    assert [r.status for r in reports] == ["ingested", "failed"]
    assert worker.models.get(Session(engine)) is not None  # refitted after new papers
    from feedbot.store.models import Sweep

    with Session(engine) as session:
        summary = session.get(Sweep, "sources").summary
    assert "2 new papers" in summary and "FAILED" in summary


def test_concurrent_batches_filling_one_paper_keep_every_field(engine):
    """A fetch (id, authors) and a dump (code) fill the same stored paper at once: neither undoes the other."""
    import threading

    from feedbot.sources.ingest import store_records
    from feedbot.sources.records import PaperRecord

    rounds = 6
    base = [PaperRecord(f"paper {n}", f"Paper {n}", "abstract", DAY) for n in range(rounds)]
    store_records(engine, "seed", "s" * 64, base)
    for n in range(rounds):
        fetched = dataclasses.replace(base[n], arxiv_id=f"2403.{n:05d}", url=f"https://arxiv.org/abs/2403.{n:05d}",
                                      authors="Kurt Gödel")
        dumped = dataclasses.replace(base[n], code_url=f"https://github.com/o/r{n}")
        barrier, errors = threading.Barrier(2), []

        def land(record: PaperRecord, tag: str, barrier=barrier, errors=errors, n=n) -> None:
            try:
                barrier.wait()
                store_records(engine, tag, f"{tag}{n}".ljust(64, "0"), [record])
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=land, args=(r, t)) for r, t in ((fetched, "f"), (dumped, "d"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
    with Session(engine) as session:
        papers = list(session.scalars(select(Paper).order_by(Paper.id)))
    assert [(p.arxiv_id, p.authors, p.code_url) for p in papers] == [
        (f"2403.{n:05d}", "Kurt Gödel", f"https://github.com/o/r{n}") for n in range(rounds)]
    assert all(p.search_text.endswith("kurt godel") for p in papers)  # authors searchable


def test_two_arxiv_sources_are_paced_three_seconds_apart(engine, server, source_settings):
    server.serve("/api/query", Canned(arxiv_feed([arxiv_entry("2403.00001", "P", categories=("cs.LG", "math.AG"))]),
                                      "application/atom+xml"))
    fake = FakeTime()
    configured = dataclasses.replace(source_settings, sources=("arxiv:cs.LG", "arxiv:math.AG"))
    reports = run.run_configured(engine, configured, lambda spec: client(fake, arxiv.MIN_INTERVAL))
    assert [r.status for r in reports] == ["ingested", "ingested"] and len(server.requests) == 2
    assert fake.sleeps == [arxiv.MIN_INTERVAL]


def _paged_feed(server, categories_per_page: list[tuple[str, ...]], per_page: int = 2) -> list[str]:
    """Serve pages of `per_page` entries, each page's entries in that page's categories; their ids."""
    total = per_page * len(categories_per_page)
    ids = [f"2403.{n:05d}" for n in range(total)]
    server.paged["/api/query"] = {
        str(start): Canned(arxiv_feed([arxiv_entry(ids[start + i], f"Paper number {start + i}",
                                                   published=f"2024-03-{20 - start - i:02d}T10:00:00Z",
                                                   categories=categories)
                                       for i in range(per_page)], total=total, start=start), "application/atom+xml")
        for start, categories in zip(range(0, total, per_page), categories_per_page, strict=True)}
    return ids


KEPT, OTHER = ("math.AG",), ("math.CO",)


@pytest.mark.parametrize(("pages", "kept"), [
    ([KEPT, KEPT, KEPT], [0, 1, 2, 3, 4, 5]),  # none filtered
    ([OTHER, KEPT, KEPT], [2, 3, 4, 5]),  # the first page filtered
    ([KEPT, OTHER, KEPT], [0, 1, 4, 5]),  # a middle page
    ([KEPT, KEPT, OTHER], [0, 1, 2, 3]),  # the last page
    ([OTHER, OTHER, OTHER], []),  # every entry filtered
    ([OTHER], []),  # a single page, filtered
], ids=["none", "first page", "middle page", "last page", "all", "one page all"])
def test_entries_outside_the_categories_are_dropped_wherever_they_are(engine, server, source_settings, pages, kept):
    ids = _paged_feed(server, pages)
    spec = SourceSpec("arxiv", KEPT)
    report = run.run(engine, source_settings, spec, Client(retries=0), limit=50)
    assert [s.query["start"] for s in server.requests] == [str(2 * n) for n in range(len(pages))]  # every page read
    if not kept:
        assert report.status == "failed" and "holds no paper in math.AG" in report.error
        assert f"({2 * len(pages)} entries, all in other categories" in report.error and counts(engine) == (0, 0, 0)
        return
    assert (report.status, report.new) == ("ingested", len(kept))
    with Session(engine) as session:
        assert sorted(session.scalars(select(Paper.arxiv_id))) == [ids[n] for n in kept]


def test_a_source_with_nothing_in_its_categories_does_not_stop_the_sweep(engine, server, source_settings):
    """`arxiv:math` matches no `math.AG` entry: that source fails, those before and after it still run."""
    entry = arxiv_entry("2403.00001", "Algebraic things", categories=("math.AG",))
    server.serve("/api/query", Canned(arxiv_feed([entry]), "application/atom+xml"))
    server.serve("/api/daily_papers", Canned(hf_json()))
    configured = dataclasses.replace(source_settings, sources=("arxiv:math", "hf", "arxiv:math.AG"))
    reports = run.run_configured(engine, configured, lambda spec: Client(retries=0))
    assert [(r.name.split()[0], r.status) for r in reports] == [("arxiv:math", "failed"), ("hf", "ingested"),
                                                                 ("arxiv:math.AG", "ingested")]
    assert "holds no paper in math" in reports[0].error and counts(engine)[0] == 3


RETRY_AFTER_VALUES = {  # header value: the wait it is read as (None: malformed, the default backoff)
    "7": 7.0, " 12 ": 12.0, "0": 0.0, "²": None, "٣": None, "１": None, "-5": None, "1.5": None, "+3": None,
    "9" * 5000: -1, "": None, "soon": None, "0x10": None, "1e3": None, "NaN": None,
    "Wed, 21 Oct 2015 07:28:00 GMT": 0.0, "Wednesday, 21-Oct-15 07:28:00 GMT": 0.0,
    "Wed Oct 21 07:28:00 2015": 0.0, "Fri, 31 Dec 9999 23:59:59 GMT": -1, "Mon, 32 Jan 2020 00:00:00 GMT": None,
    "Mon, 01 Jan 2020 25:00:00 GMT": None, "Fri, 31 Dec 99999 23:59:59 GMT": None,
    "Mon, 01 Jan 0001 00:00:00 +2359": 0.0, "Mon, 01 Jan 2020 00:00:00 +9999": None,
}  # -1: longer than the client waits, so the run ends with a clear error


@pytest.mark.parametrize("value", list(RETRY_AFTER_VALUES))
def test_any_retry_after_is_a_bounded_wait_or_the_default_backoff(server, value):
    server.serve("/api/daily_papers", Canned(b"busy", "text/plain", 503, {"Retry-After": value}), Canned(hf_json()))
    fake = FakeTime()
    expected = RETRY_AFTER_VALUES[value]
    if expected == -1:
        with pytest.raises(SourceError, match="asked to wait"):
            hf.fetch(client(fake), server.base_url, DAY)
        assert fake.sleeps == []
        return
    assert len(hf.fetch(client(fake), server.base_url, DAY)) == 2
    assert fake.sleeps == [1.5 if expected is None else expected]  # 1.5: the client's first backoff


@FAST_PROPERTIES
@given(value=st.one_of(
    st.text(max_size=40),
    st.from_regex(r"\A\s*[0-9]{1,400}\s*\Z"),
    st.from_regex(r"\A(Mon|Tue|Sun), [0-9]{1,3} (Jan|Feb|Dec) [0-9]{1,6} [0-9]{2}:[0-9]{2}:[0-9]{2} "
                  r"(GMT|[+-][0-9]{4})\Z"),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT"))),
       now=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_retry_after_parsing_never_raises_and_stays_bounded(value, now):
    seconds = parse_retry_after(value, now)
    assert seconds is None or 0.0 <= seconds <= LONGEST_WAIT


def test_any_retry_after_header_ends_in_an_answer_or_a_source_error():
    """Over real HTTP: whatever the header says, the client sleeps within its bound, then answers or
    refuses with SourceError (never another exception)."""
    server = SourceServer().start()

    @FAST_PROPERTIES
    @given(value=st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30))
    def check(value):
        server.serve("/api/daily_papers", Canned(b"busy", "text/plain", 429, {"Retry-After": value}),
                     Canned(hf_json()))
        fake = FakeTime()
        try:
            assert len(hf.fetch(client(fake), server.base_url, DAY)) == 2
        except SourceError as exc:
            assert str(exc)
        assert all(0 <= s <= 300.0 for s in fake.sleeps)

    try:
        check()
    finally:
        server.stop()


def small(deadline: float = 0.5, max_body: int = 64 * 1024, retries: int = 0) -> Client:
    """A client with a short deadline and a small body cap, its per-read timeout far longer than both
    (so only the total deadline can end a trickle)."""
    return Client(timeout=30, retries=retries, deadline=deadline, max_body=max_body, sleep=FakeTime().sleep)


MISBEHAVING = {
    "body trickled a byte at a time": (Canned(hf_json(), trickle=0.02), "0.5 s deadline"),
    "head trickled a byte at a time": (Canned(hf_json(), trickle=0.02, trickle_head=True), "0.5 s deadline"),
    "endless body trickled": (Canned(b"[ ", trickle=0.01, endless=True, length=None), "0.5 s deadline"),
    "endless body, no Content-Length": (Canned(b"[" * 4096, endless=True, length=None), "65,536-byte cap"),
    "endless body, Content-Length over the cap": (Canned(b"[" * 4096, endless=True, length=str(10**12)),
                                                  "65,536-byte cap (Content-Length 1000000000000)"),
    "Content-Length one byte over the cap": (Canned(b" " * 65_536 + b"[]", length=str(65_538)), "65,536-byte cap"),
    "body over the cap, Content-Length lies small": (Canned(b"[" + b" " * 100_000 + b"]", length="3"), "JSON"),
    "gzip bomb": (Canned(gzip.compress(b"[" + b" " * 10_000_000 + b"]"), headers={"Content-Encoding": "gzip"}),
                  "65,536-byte cap"),
}


@pytest.mark.parametrize("case", list(MISBEHAVING))
def test_a_slow_or_endless_answer_is_cut_off_and_stores_nothing(engine, server, source_settings, case):
    answer, message = MISBEHAVING[case]
    server.serve("/api/daily_papers", answer)
    report = run.run(engine, source_settings, HF, small(), day=DAY)
    assert report.status == "failed" and message in report.error, report.error
    assert counts(engine) == (0, 0, 0)


@pytest.mark.parametrize("case", ["body trickled a byte at a time", "endless body, no Content-Length"])
def test_the_bounds_hold_behind_a_redirect_and_on_every_retry(engine, server, source_settings, case):
    answer, message = MISBEHAVING[case]
    server.serve("/api/daily_papers", Canned(b"", "text/plain", 302, {"Location": "/elsewhere?date=2024-03-05"}))
    server.serve("/elsewhere", answer)
    report = run.run(engine, source_settings, HF, small(retries=1), day=DAY)
    assert report.status == "failed" and message in report.error, report.error
    assert [s.path for s in server.requests] == ["/api/daily_papers", "/elsewhere"] * (2 if "deadline" in message
                                                                                      else 1)
    assert counts(engine) == (0, 0, 0)


@pytest.mark.parametrize("length", ["auto", None])
def test_a_body_exactly_at_the_cap_is_read(server, length):
    body = hf_json()
    server.serve("/api/daily_papers", Canned(body, length=length))
    assert len(hf.fetch(small(max_body=len(body)), server.base_url, DAY)) == 2
    with pytest.raises(SourceError, match=f"{len(body) - 1:,}-byte cap"):
        hf.fetch(small(max_body=len(body) - 1), server.base_url, DAY)
