"""Library imports against a real database (SQLite and PostgreSQL) and loopback API servers: each
entry resolved (own text, arXiv, OpenAlex, title-only, skipped with why), stored in one
transaction or not at all, round trips with feedbot's own export, undo and /delete, Zotero read
politely with its key kept out of URLs, one import at a time per subscriber."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import rispy
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from feedbot.chat.bibtex import export
from feedbot.library import jobs
from feedbot.library.fetch import ZoteroError, zotero_library
from feedbot.library.parse import parse_bytes, parse_text
from feedbot.library.resolve import UNREACHABLE, Apis
from feedbot.ranking.recommend import candidates
from feedbot.sources.http import Client
from feedbot.sources.ingest import store_records
from feedbot.sources.records import from_dump
from feedbot.store import subscribers
from feedbot.store.db import transaction
from feedbot.store.models import Import, Paper, Vote
from feedbot.store.papers import search_papers
from tests.source_fixtures import arxiv_entry, arxiv_feed
from tests.source_server import Canned, SourceServer

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def apis_for(server: SourceServer, sleeps: Sleeps | None = None) -> Apis:
    sleep = sleeps if sleeps is not None else Sleeps()
    return Apis(f"{server.base_url}/api/query", server.base_url,
                Client(retries=1, backoff=0.0, sleep=sleep), Client(retries=1, backoff=0.0, sleep=sleep))


def subscribe(engine, telegram_id: int) -> int:
    with transaction(engine) as session:
        subscriber, _ = subscribers.subscribe(session, telegram_id, telegram_id)
        return subscriber.id


def run(engine, server, telegram_id: int, raw: bytes, name: str = "lib.bib", progress=None) -> jobs.ImportReport:
    apis = apis_for(server)
    try:
        return jobs.run(engine, telegram_id, name, lambda _: parse_bytes(raw), apis, progress, NOW)
    finally:
        apis.close()


def votes_of(engine, subscriber_id: int) -> list[Vote]:
    with Session(engine) as session:
        return list(session.scalars(select(Vote).where(Vote.subscriber_id == subscriber_id).order_by(Vote.paper_id)))


def openalex_work(doi: str, title: str, abstract: str) -> dict:
    index: dict[str, list[int]] = {}
    for position, word in enumerate(abstract.split()):
        index.setdefault(word, []).append(position)
    return {"doi": f"https://doi.org/{doi}", "title": title, "abstract_inverted_index": index,
            "authorships": [{"author": {"display_name": "Ada Lovelace"}}], "ids": {"doi": f"https://doi.org/{doi}"}}


LIBRARY = rb"""
@article{own, title = {Own Text Paper}, abstract = {Sparse attention for very long contexts.},
  timestamp = {2021-05-03T10:00:00Z}}
@misc{pre, title = {}, eprint = {2301.00001}}
@misc{gone, eprint = {2301.99999}}
@article{doi, doi = {10.1000/ABC}}
@book{bare, title = {Only a Title}}
@misc{broken, title = {Unbalanced {braces}
"""


def test_each_entry_resolved_and_stored_as_a_dated_import_vote(engine, server):
    server.serve("/api/query", Canned(arxiv_feed([arxiv_entry("2301.00001", "Fetched From arXiv",
                                                              "An abstract from arXiv.")]),
                                      "application/atom+xml"))
    server.serve("/works", Canned(json.dumps({"results": [
        openalex_work("10.1000/abc", "Found By DOI", "rebuilt from the inverted index index")]}).encode()))
    sid = subscribe(engine, 5)
    shown = []
    report = run(engine, server, 5, LIBRARY, progress=lambda done, total: shown.append((done, total)))
    assert report.ok, report.error
    assert (report.read, report.fetched, report.title_only, report.added) == (6, 2, 1, 4)
    assert (report.skipped[-1].where, report.skipped[-1].why) == ("line 5 (gone)", "arXiv has no paper 2301.99999")
    assert any("broken BibTeX" in s.why for s in report.skipped)
    assert shown[-1] == (5, 5)
    [arxiv_request] = [r for r in server.requests if r.path == "/api/query"]
    assert arxiv_request.query["id_list"] == "2301.00001,2301.99999"  # one batch
    [openalex_request] = [r for r in server.requests if r.path == "/works"]
    assert openalex_request.query["filter"] == "doi:10.1000/abc"
    with Session(engine) as session:
        papers = {p.title: p for p in session.scalars(select(Paper))}
        assert papers["Found By DOI"].abstract == "rebuilt from the inverted index index"
        assert papers["Found By DOI"].doi == "10.1000/abc"
        assert papers["Fetched From arXiv"].arxiv_id == "2301.00001"
        assert papers["Only a Title"].abstract == ""
        assert all(p.first_listed is None for p in papers.values())  # known, never listed
        own_id = papers["Own Text Paper"].id
        imports = session.scalars(select(Import)).all()
        assert [(i.status, i.added) for i in imports] == [("done", 4)]
    votes = votes_of(engine, sid)
    assert {(v.value, v.origin, v.import_id) for v in votes} == {(1, "import", imports[0].id)}
    dated = {v.paper_id: v.voted_at.replace(tzinfo=UTC) for v in votes}
    assert dated[own_id] == datetime(2021, 5, 3, 10, tzinfo=UTC)
    assert sorted(dated.values())[-1] == NOW


def test_round_trip_with_feedbots_own_export_in_every_format(seeded, server):
    """A subscriber's liked papers exported (BibTeX, and RIS / CSL-JSON of the same papers) import
    back as exactly those papers for someone else: all matched, nothing new, nothing fetched."""
    owner = subscribe(seeded, 1)
    with transaction(seeded) as session:
        liked = list(session.scalars(select(Paper).order_by(Paper.id).limit(25)))
        session.add_all(Vote(subscriber_id=owner, paper_id=p.id, value=1, voted_at=NOW) for p in liked)
    with Session(seeded) as session:
        papers = list(session.scalars(select(Paper).where(Paper.id.in_([p.id for p in liked]))))
        total = session.scalar(select(func.count()).select_from(Paper))
    files = {
        "liked.bib": export(papers).encode(),
        "liked.ris": rispy.dumps([{"type_of_reference": "GEN", "title": p.title, "abstract": p.abstract,
                                   "urls": [p.url] if p.url else []} for p in papers]).encode(),
        "liked.json": json.dumps([{"id": f"p{p.id}", "type": "article", "title": p.title, "abstract": p.abstract}
                                  for p in papers]).encode(),
    }
    for number, (name, raw) in enumerate(files.items(), 2):
        sid = subscribe(seeded, number)
        report = run(seeded, server, number, raw, name)
        assert report.ok and not report.skipped, (name, report.lines())
        assert (report.read, report.known, report.added, report.fetched) == (25, 25, 25, 0), name
        assert {v.paper_id for v in votes_of(seeded, sid)} == {p.id for p in liked}, name
    with Session(seeded) as session:
        assert session.scalar(select(func.count()).select_from(Paper)) == total
    assert not server.requests


def test_same_file_again_adds_nothing_undo_takes_back_the_last_and_delete_erases_imports(engine, server):
    sid = subscribe(engine, 5)
    first = b"@misc{a, title={Alpha Paper}, abstract={About alpha.}}"
    both = first + b"\n@misc{b, title={Beta Paper}, abstract={About beta.}}"
    assert run(engine, server, 5, first).added == 1
    again = run(engine, server, 5, both)
    assert (again.added, again.already) == (1, 1)
    assert again.lines()[0].endswith("1 added to your library, 1 you had voted on already (votes kept).")
    assert run(engine, server, 5, both).added == 0
    with transaction(engine) as session:
        last, removed = jobs.undo_last(session, sid)
    assert removed == 1 and last.added == 1
    with Session(engine) as session:
        assert [p.title for p in session.scalars(select(Paper).join(Vote, Vote.paper_id == Paper.id))] == [
            "Alpha Paper"]
    with transaction(engine) as session:
        subscribers.delete_everything(session, session.get(subscribers.Subscriber, sid))
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Import)) == 0
        assert session.scalar(select(func.count()).select_from(Vote)) == 0


def test_an_imported_paper_is_never_a_pick_until_a_listing_names_it(engine, server):
    subscribe(engine, 5)
    run(engine, server, 5, b"@misc{a, title={Title Only Then Listed}}\n@misc{b, title={Never Listed}, abstract={x.}}")
    with Session(engine) as session:
        assert candidates(session, date(2030, 1, 1), 100000) == []
        assert search_papers(session, "listed") == []
    record = from_dump("Title Only Then Listed", "Now with an abstract.", date(2026, 3, 21), 1)
    store_records(engine, "dump", "sha", [record])
    with Session(engine) as session:
        [paper] = candidates(session, date(2026, 3, 21), 2)
        assert (paper.title, paper.abstract, paper.first_listed) == (
            "Title Only Then Listed", "Now with an abstract.", date(2026, 3, 21))
        assert [p.title for p in search_papers(session, "listed")] == ["Title Only Then Listed"]


def test_a_failure_half_way_stores_nothing_and_says_so(engine, server, monkeypatch):
    subscribe(engine, 5)
    real = jobs.upsert_papers

    def upsert_then_fail(*args, **kwargs):
        real(*args, **kwargs)  # the papers are written, then the votes never come
        raise RuntimeError("disk full")

    monkeypatch.setattr(jobs, "upsert_papers", upsert_then_fail)
    report = run(engine, server, 5, b"@misc{a, title={Alpha Paper}, abstract={About alpha.}}")
    assert not report.ok and "Nothing was stored" in report.lines()[0]
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Paper)) == 0
        assert session.scalar(select(func.count()).select_from(Vote)) == 0
        assert session.scalar(select(Import.status)) == "failed"
    monkeypatch.undo()
    assert run(engine, server, 5, b"@misc{a, title={Alpha Paper}, abstract={About alpha.}}").added == 1


@pytest.mark.parametrize("down", ["arxiv", "openalex"])
def test_an_api_down_keeps_entries_with_their_own_text_and_lists_the_rest(engine, server, down):
    server.serve("/api/query", Canned(arxiv_feed([arxiv_entry("2301.00001", "From arXiv")]), "application/atom+xml"))
    server.serve("/works", Canned(json.dumps({"results": [openalex_work("10.1000/abc", "By DOI", "a b")]}).encode()))
    server.serve("/api/query" if down == "arxiv" else "/works", Canned(b"busy", "text/plain", 503))
    subscribe(engine, 5)
    report = run(engine, server, 5, b"@misc{own, title={Own}, abstract={Text.}, eprint={2301.00002}}\n"
                                    b"@misc{pre, eprint={2301.00001}}\n@misc{doi, doi={10.1000/abc}}")
    assert report.ok and report.added == 2
    assert [(s.where, s.why) for s in report.skipped] == [
        ("line 2 (pre)" if down == "arxiv" else "line 3 (doi)", UNREACHABLE)]


def test_ids_that_do_not_exist_are_listed(engine, server):
    server.serve("/api/query", Canned(arxiv_feed([]), "application/atom+xml"))
    server.serve("/works", Canned(b'{"results": []}'))
    subscribe(engine, 5)
    apis = apis_for(server)
    report = jobs.run(engine, 5, "ids", lambda _: parse_text("2301.99998 10.9999/nothing"), apis, None, NOW)
    apis.close()
    assert report.ok and report.added == 0
    assert [s.why for s in report.skipped] == ["arXiv has no paper 2301.99998",
                                               "OpenAlex knows no paper with DOI 10.9999/nothing"]


def test_unknown_subscriber_is_refused_before_anything_runs(engine, server):
    with pytest.raises(jobs.LibraryError, match="no subscriber"):
        run(engine, server, 404, b"@misc{a, title={A}}")
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Import)) == 0


def test_two_imports_at_once_for_one_subscriber_one_is_refused(engine, server):
    subscribe(engine, 5)
    barrier, release = threading.Barrier(2), threading.Event()
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait()
        try:
            jobs.claim(engine, 5, "lib.bib")
        except jobs.ImportBusy:
            outcomes.append("refused")
            release.set()
            return
        outcomes.append("claimed")
        release.wait(30)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["claimed", "refused"]
    with Session(engine) as session:
        assert session.scalars(select(Import.status)).all() == ["running"]
    # While it runs, a whole import is refused too; once it finished, the next one goes.
    with pytest.raises(jobs.ImportBusy):
        run(engine, server, 5, b"@misc{a, title={A}, abstract={B.}}")
    with transaction(engine) as session:
        session.execute(Import.__table__.update().values(status="done"))
    assert run(engine, server, 5, b"@misc{a, title={A}, abstract={B.}}").added == 1


def zotero_item(key: str, title: str, **data) -> dict:
    return {"key": key, "data": {"key": key, "itemType": "journalArticle", "title": title,
                                 "abstractNote": f"Abstract of {title}.", "dateAdded": "2022-02-02T02:02:02Z",
                                 **data}}


def test_zotero_library_read_page_by_page_with_backoff_and_the_key_in_a_header_only(server):
    server.serve("/keys/current", Canned(b"slow down", "text/plain", 429, {"Retry-After": "7"}),
                 Canned(json.dumps({"userID": 7, "access": {"user": {"library": True}}}).encode()))
    server.paged["/users/7/items/top"] = {
        "0": Canned(json.dumps([zotero_item("A", "First"), {"key": "N", "data": {"itemType": "note"}}]).encode(),
                    headers={"Total-Results": "3", "Backoff": "5"}),
        "2": Canned(json.dumps([zotero_item("B", "Second", extra="arXiv: 2301.00001")]).encode(),
                    headers={"Total-Results": "3"}),
    }
    sleeps = Sleeps()
    client = Client(sleep=sleeps)
    entries, skipped = zotero_library(client, server.base_url, "7", "SECRETKEY24CHARSLONG0000")
    assert [e.title for e in entries] == ["First", "Second"] and not skipped
    assert entries[1].arxiv_id == "2301.00001" and entries[0].added == datetime(2022, 2, 2, 2, 2, 2, tzinfo=UTC)
    assert sleeps[:1] == [7.0] and 5.0 in sleeps  # Retry-After on a 429, Backoff before the next page
    assert all(r.headers.get("zotero-api-key") == "SECRETKEY24CHARSLONG0000" for r in server.requests)
    assert all("SECRET" not in r.path + json.dumps(r.query) for r in server.requests)
    assert [r.query.get("start") for r in server.requests[2:]] == ["0", "2"]
    assert "zotero-api-key" not in {k.lower() for k in client.http.headers}  # used for that import only


@pytest.mark.parametrize(("keys", "items", "why"), [
    (Canned(b"Forbidden", "text/plain", 403), None, "refused to check the key \\(403\\)"),
    (Canned(json.dumps({"userID": 7, "access": {"user": {"library": False}}}).encode()), None,
     "may not read your library"),
    (Canned(json.dumps({"userID": 8, "access": {}}).encode()), Canned(b"Forbidden", "text/plain", 403),
     "a private library needs its owner's key"),
    (Canned(json.dumps({"userID": 7, "access": {"user": {"library": True}}}).encode()),
     Canned(b"Not found", "text/plain", 404), "no such user library"),
])
def test_zotero_refusals_are_clear(server, keys, items, why):
    server.serve("/keys/current", keys)
    if items is not None:
        server.serve("/users/7/items/top", items)
    with pytest.raises(ZoteroError, match=why):
        zotero_library(Client(sleep=Sleeps()), server.base_url, "7", "KEY")


def test_admin_cli_imports_files_and_refuses_bad_input_clearly(env, tmp_path):
    from feedbot.store.db import make_engine
    from tests.test_cli import feedbot

    feedbot(env, "db", "upgrade")
    engine = make_engine(env["DATABASE_URL"])
    subscribe(engine, 42)
    files = {"lib.bib": b"@misc{a, title={Alpha Paper}, abstract={About alpha.}}", "empty.ris": b""}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    with open(tmp_path / "huge.bib", "wb") as huge:
        huge.truncate(50 * 1024 * 1024)
    nobody = feedbot(env, "import", "--user", "404", str(tmp_path / "lib.bib"), check=False)
    assert nobody.returncode == 2 and "404 is no subscriber" in nobody.stderr
    result = feedbot(env, "import", "--user", "42", *(str(tmp_path / n) for n in ("lib.bib", "empty.ris", "huge.bib")),
                     str(tmp_path / "missing.bib"), check=False)
    lines = result.stdout.splitlines()
    assert result.returncode == 1
    assert lines[0].startswith("Imported lib.bib (BibTeX file): 1 read") and "1 added" in lines[0]
    assert lines[1:] == ["Import of empty.ris failed: the file is empty. Nothing was stored.",
                         "Import of huge.bib failed: the file is 50.0 MB; at most 10 MB can be imported at once "
                         "(split the library). Nothing was stored.",
                         "Import of missing.bib failed: cannot read it: No such file or directory. Nothing was stored."]
    with transaction(engine) as session:  # an import that failed after it started (an API down, a crash)
        session.add(Import(subscriber_id=session.scalar(select(subscribers.Subscriber.id)), source="zotero lib",
                           status="failed", error="Zotero is not reachable now", entries=0, added=0, started_at=NOW))
    status = feedbot(env, "status").stdout
    assert "imports:  1 done, 1 failed" in status
    assert "last failed: zotero lib at 2026-03-20 12:00 UTC: Zotero is not reachable now" in status
    no_key = feedbot({k: v for k, v in env.items() if k != "ZOTERO_API_KEY"}, "import", "--user", "42", "--zotero", "7",
                     check=False)
    assert no_key.returncode == 2 and "ZOTERO_API_KEY" in no_key.stderr
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Vote)) == 1
    engine.dispose()


def test_any_text_after_import_gets_a_reply_and_leaves_the_database_consistent(seeded, settings, server):
    """Whatever follows /import in the chat (ids that exist or not, junk, LaTeX, NUL): one answer,
    no exception, no import left running, and every imported 👍 points at a stored paper."""
    import dataclasses

    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st

    from feedbot.chat.conversation import Chat, User

    server.serve("/api/query", Canned(arxiv_feed([arxiv_entry("2301.00001", "Known Preprint")]),
                                      "application/atom+xml"))
    server.serve("/works", Canned(json.dumps({"results": [openalex_work("10.1000/abc", "By DOI", "a b")]}).encode()))
    chat = Chat(seeded, dataclasses.replace(settings, arxiv_api_url=f"{server.base_url}/api/query",
                                            openalex_api_url=server.base_url, zotero_api_url=server.base_url))
    user = User(77, 77)
    chat.command(user, "start")
    words = st.sampled_from(["2301.00001", "arXiv:2301.00002v3", "10.1000/abc", "https://doi.org/10.1000/ABC",
                             "undo", "zotero", "hello", "\x00", "{\\\"u}", "@misc{", "TY  - JOUR", "\n", " ", "é",
                             "x" * 300, "~no-such-user/lib.bib", "/", "/dev/null", "missing file.bib", "lib.ris"])

    # The console's /import also takes a path (`paths`): what names no file still gets an answer.
    @hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.text(max_size=80), st.lists(words, max_size=8).map(" ".join)), st.booleans())
    def check(text, paths):
        replies = chat.command(user, "import", text, paths=paths)
        assert replies and all(r.text.strip() for r in replies)
        with Session(seeded) as session:
            assert session.scalar(select(func.count()).select_from(Import).where(Import.status == "running")) == 0
            orphans = session.scalar(select(func.count()).select_from(Vote).outerjoin(Paper, Paper.id == Vote.paper_id)
                                     .where(Paper.id.is_(None)))
            assert orphans == 0

    check()


def test_console_imports_a_file_by_its_path_with_progress(chat, tmp_path):
    import io

    from feedbot.chat.console import Console
    from feedbot.chat.conversation import User

    library = tmp_path / "my library" / "mine.bib"  # a path with a space
    library.parent.mkdir()
    library.write_bytes(b"@misc{a, title={Alpha Paper}, abstract={About alpha.}}\n"
                        b"@misc{b, title={Beta Paper}, abstract={About beta.}}")
    out = io.StringIO()
    console = Console(chat, User(1, 1), out)
    for line in ("/start", f"/import {library}", "/liked", "/import undo", "/import undo",
                 f"/import {tmp_path / 'no such.bib'}"):
        console.handle(line)
    text = out.getvalue()
    assert "(Reading your library… 2 / 2)" in text
    assert "Imported mine.bib (BibTeX file): 2 read, 0 matched to known papers" in text and "2 added" in text
    assert "From your library: 2" in text
    assert "Took back the import of mine.bib: 2 papers left your library." in text
    assert "There is no import to undo." in text
    assert text.rstrip().endswith("Import of no such.bib failed: cannot read it: No such file or directory. "
                                  "Nothing was stored.")


def test_an_import_whose_process_died_is_released_and_imported_likes_are_community_likes(engine, server):
    import socket

    sid = subscribe(engine, 5)
    with transaction(engine) as session:
        session.add(Import(subscriber_id=sid, source="crashed.bib", status="running", entries=0, added=0,
                           owner=f"{socket.gethostname()}:999999999", started_at=NOW))
    report = run(engine, server, 5, b"@misc{a, title={Alpha Paper}, abstract={About alpha.}}")
    assert report.ok and report.added == 1
    with Session(engine) as session:
        assert [(i.source, i.status) for i in session.scalars(select(Import).order_by(Import.id))] == [
            ("crashed.bib", "failed"), ("lib.bib", "done")]
        [paper_id] = session.scalars(select(Paper.id)).all()
        # the community tables read every vote row (recommend.build_community): an import is one
        assert session.execute(select(Vote.subscriber_id, Vote.paper_id, Vote.value)).all() == [(sid, paper_id, 1)]


@pytest.mark.parametrize("tap", [1, -1])
def test_a_tap_on_an_imported_paper_is_the_subscribers_own_and_undo_leaves_it(engine, server, tap):
    sid = subscribe(engine, 5)
    run(engine, server, 5, b"@misc{a, title={Alpha Paper}, abstract={About alpha.}}\n"
                           b"@misc{b, title={Beta Paper}, abstract={About beta.}}")
    store_records(engine, "dump", "sha", [from_dump("Alpha Paper", "About alpha.", date(2026, 3, 21), 1)])
    with transaction(engine) as session:
        subscriber = session.get(subscribers.Subscriber, sid)
        alpha = session.scalar(select(Paper.id).where(Paper.title == "Alpha Paper"))
        subscribers.record_shown(session, subscriber, [(alpha, 0.0, "search")], "search", now=NOW)
        if tap == 1:  # a 👍 on a paper liked already clears it; a second 👍 makes it the subscriber's own
            subscribers.vote(session, subscriber, alpha, 1, now=NOW)
        subscribers.vote(session, subscriber, alpha, tap, now=NOW)
    with transaction(engine) as session:
        last, removed = jobs.undo_last(session, sid)
        assert removed == 1  # only Beta, which the subscriber never touched
        assert subscribers.imported_count(session, session.get(subscribers.Subscriber, sid)) == 0
    assert [(v.paper_id, v.value, v.origin, v.import_id) for v in votes_of(engine, sid)] == [
        (alpha, tap, "tap", None)]


def test_a_subscriber_deleted_while_their_import_runs_gets_a_clear_answer_and_nothing_is_stored(engine, server):
    sid = subscribe(engine, 5)

    def load_then_delete(_progress):
        with transaction(engine) as session:  # /delete pressed while the file is being read
            subscribers.delete_everything(session, session.get(subscribers.Subscriber, sid))
        return parse_bytes(b"@misc{a, title={Alpha Paper}, abstract={About alpha.}}")

    apis = apis_for(server)
    try:
        report = jobs.run(engine, 5, "lib.bib", load_then_delete, apis, None, NOW)
    finally:
        apis.close()
    assert not report.ok and "deleted" in report.error and "Nothing was stored" in report.lines()[0]
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Vote)) == 0
        assert session.scalar(select(func.count()).select_from(Import)) == 0


def test_two_imports_of_one_library_under_other_titles_at_once_both_land_on_the_same_papers(engine, server):
    """The same DOIs under other titles, so the two inserts meet the DOIs in opposite orders."""
    size = 1500
    files = {telegram_id: "\n".join(
        f"@misc{{k{n}, title={{{prefix} paper {n:04d}}}, abstract={{Text {n}.}}, doi={{10.1000/{order(n)}}}}}"
        for n in range(size)).encode() for telegram_id, prefix, order in (
            (5, "first", lambda n: n), (6, "second", lambda n: size - 1 - n))}
    for telegram_id in files:
        subscribe(engine, telegram_id)
    barrier, reports = threading.Barrier(2), {}

    def attempt(telegram_id: int) -> None:
        parsed = parse_bytes(files[telegram_id])
        barrier.wait()
        apis = apis_for(server)
        try:
            reports[telegram_id] = jobs.run(engine, telegram_id, "lib.bib", lambda _: parsed, apis, None, NOW)
        finally:
            apis.close()

    threads = [threading.Thread(target=attempt, args=(telegram_id,)) for telegram_id in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert {t: (r.error, r.added) for t, r in reports.items()} == {5: ("", size), 6: ("", size)}
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Paper)) == size
        assert session.scalar(select(func.count(func.distinct(Vote.paper_id)))) == size


def test_a_path_that_is_no_regular_file_is_refused_without_being_read(engine, settings, tmp_path):
    """The console's and the CLI's path: a FIFO would block the open, a device never ends."""
    import os

    subscribe(engine, 5)
    os.mkfifo(tmp_path / "pipe.bib")
    (tmp_path / "folder.bib").mkdir()
    reports = []

    def attempt() -> None:
        for path in (tmp_path / "pipe.bib", tmp_path / "folder.bib", Path("/dev/zero")):
            reports.append(jobs.import_path(engine, settings, 5, path).lines()[0])

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(60)
    assert reports == [f"Import of {name} failed: it is not a regular file. Nothing was stored."
                       for name in ("pipe.bib", "folder.bib", "zero")]
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Import)) == 0


def test_progress_moves_with_each_batch_of_each_api(engine, server):
    """Entries known only by DOI move the meter as OpenAlex answers, as arXiv ids do with arXiv."""
    server.serve("/api/query", Canned(arxiv_feed([]), "application/atom+xml"))
    server.serve("/works", Canned(b'{"results": []}'))
    subscribe(engine, 5)
    ids = " ".join([f"2301.{n:05d}" for n in range(1, 151)] + [f"10.1000/n{n}" for n in range(120)])
    seen: list[tuple[int, int]] = []
    apis = apis_for(server)
    try:
        jobs.run(engine, 5, "ids", lambda _: parse_text(ids), apis, lambda d, t: seen.append((d, t)), NOW)
    finally:
        apis.close()
    assert seen == [(0, 270), (100, 270), (150, 270), (200, 270), (250, 270), (270, 270), (270, 270)]


def test_every_skipped_entry_is_given_with_why_however_many(chat, tmp_path):
    """The answer lists the first ones and attaches them all; the admin CLI prints them all."""
    from feedbot.chat.conversation import User

    library = tmp_path / "many.bib"
    library.write_bytes(b"@misc{ok, title={Alpha Paper}, abstract={About alpha.}}\n"
                        + b"".join(b"@misc{e%d, note={no title}}\n" % n for n in range(45)))
    user = User(1, 1)
    chat.command(user, "start")
    replies = chat.command(user, "import", str(library), paths=True)
    text = "\n".join(r.text for r in replies)
    assert text.count("skipped line") == jobs.SKIPPED_SHOWN and "…and 5 more skipped" in text
    name, content = replies[-1].document
    lines = content.decode().splitlines()
    assert name == "skipped.txt" and len(lines) == 45
    assert lines[-1] == "line 46 (e44): no title, arXiv id or DOI"
    report = jobs.ImportReport("many.bib", "BibTeX file", skipped=[jobs.Skipped(f"line {n}", "why") for n in range(45)])
    assert len(report.lines(shown=None)) == 46 and report.skipped_file() is not None
    assert jobs.ImportReport("few.bib", skipped=[jobs.Skipped("line 1", "why")]).skipped_file() is None


@pytest.mark.parametrize(("fault", "why"), [
    ("keys", "refused to check the key"), ("page 0", "malformed JSON"), ("page 2", "refused to read the library"),
    ("page 2 not a list", "not a list of items"), ("page 4 missing", "no such user library")])
def test_zotero_failing_at_any_page_stores_nothing_and_never_shows_the_key(engine, settings, server, caplog,
                                                                           fault, why):
    import dataclasses
    import logging

    caplog.set_level(logging.DEBUG)
    forbidden = Canned(b"Forbidden", "text/plain", 403)
    server.serve("/keys/current", forbidden if fault == "keys" else
                 Canned(json.dumps({"userID": 7, "access": {"user": {"library": True}}}).encode()))
    pages = {"0": Canned(b"{not json" if fault == "page 0" else json.dumps(
                 [zotero_item("A", "First"), zotero_item("B", "Second")]).encode(), headers={"Total-Results": "6"}),
             "2": forbidden if fault == "page 2" else Canned(b'{"items": []}' if fault == "page 2 not a list" else
                                                             json.dumps([zotero_item("C", "Third"),
                                                                         zotero_item("D", "Fourth")]).encode(),
                                                             headers={"Total-Results": "6"})}
    server.paged["/users/7/items/top"] = pages  # start=4 is never served: a page that vanished
    sid = subscribe(engine, 5)
    report = jobs.import_zotero(engine, dataclasses.replace(settings, zotero_api_url=server.base_url), 5, "7",
                                "TOPSECRETKEY", now=NOW)
    assert not report.ok and why in report.error and "Nothing was stored" in report.lines()[0]
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Paper)) == 0
        assert votes_of(engine, sid) == []
        [(status, error)] = session.execute(select(Import.status, Import.error)).all()
    assert status == "failed" and "TOPSECRETKEY" not in error + report.error + caplog.text


@pytest.mark.parametrize("api", ["arxiv", "openalex"])
@pytest.mark.parametrize("failing", [0, 1, 2])
def test_an_api_failing_at_any_batch_keeps_the_batches_before_and_lists_every_entry_after(engine, server, api,
                                                                                          failing):
    size = 250 if api == "arxiv" else 120
    ids = [f"2301.{n:05d}" for n in range(1, size + 1)] if api == "arxiv" else [f"10.1000/n{n}" for n in range(size)]
    batch = 100 if api == "arxiv" else 50

    def answer(part: list[str]) -> Canned:  # each batch answered with its own papers, in order
        if api == "arxiv":
            return Canned(arxiv_feed([arxiv_entry(i, f"Paper {i}") for i in part]), "application/atom+xml")
        return Canned(json.dumps({"results": [openalex_work(d, f"Paper {d}", "some words") for d in part]}).encode())

    server.serve("/api/query" if api == "arxiv" else "/works",
                 *[answer(ids[n * batch:(n + 1) * batch]) for n in range(failing)], Canned(b"busy", "text/plain", 503))
    sid = subscribe(engine, 5)
    apis = apis_for(server)
    try:
        report = jobs.run(engine, 5, "ids", lambda _: parse_text("\n".join(ids)), apis, None, NOW)
    finally:
        apis.close()
    kept = min(failing * batch, size)
    assert report.ok and (report.added, report.fetched) == (kept, kept)
    assert [s.why for s in report.skipped] == [UNREACHABLE] * (size - kept)
    assert [s.where.split(" (")[1].rstrip(")") for s in report.skipped] == ids[kept:]
    assert len(votes_of(engine, sid)) == kept


@pytest.mark.parametrize("key", ["ключ", "a\x00b", "k" * 500, "key;evil", "", "ｋｅｙ"])
def test_a_zotero_key_that_is_no_key_is_refused_unsent_and_unshown(server, key):
    with pytest.raises(ZoteroError, match="letters and digits") as refused:
        zotero_library(Client(sleep=Sleeps()), server.base_url, "7", key)
    assert not server.requests and (not key or key not in str(refused.value))


def test_one_doi_reaching_two_stored_papers_in_one_import_fills_one_of_them(engine, server):
    """Entries that tie a DOI to a paper by arXiv id and to another by title: the DOI column is
    unique, so only one paper may gain it, and the import still lands."""
    import dataclasses

    alpha = dataclasses.replace(from_dump("Alpha Paper", "About alpha.", date(2026, 3, 1), 1), arxiv_id="2301.00001")
    store_records(engine, "dump", "sha", [alpha, from_dump("Beta Paper", "About beta.", date(2026, 3, 1), 2)])
    sid = subscribe(engine, 5)
    report = run(engine, server, 5, b"@misc{b, title={Beta Paper}, abstract={About beta.}, doi={10.1000/d}}\n"
                                    b"@misc{a, title={Alpha Paper}, abstract={About alpha.}, eprint={2301.00001}}\n"
                                    b"@misc{c, title={Gamma}, abstract={About gamma.}, eprint={2301.00001}, "
                                    b"doi={10.1000/d}}")
    assert report.ok, report.error
    assert report.added == 2 and len(votes_of(engine, sid)) == 2
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Paper).where(Paper.doi == "10.1000/d")) == 1
