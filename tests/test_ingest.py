"""Ingest into a real database: dedupe, idempotence, quarantine of bad dumps, concurrency."""

import shutil
import threading
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from feedbot.sources.ingest import ingest_paths, sweep_inbox
from feedbot.store.models import Dump, Listing, Paper

HEADER = b"new\n\nSubscribe\n\n"
BAD_DUMPS = {
    "empty.txt": b"",
    "header_only.txt": HEADER + b"Mar 11\n",
    "no_date.txt": HEADER + b"A title\n\nAn abstract\n",
    "odd_count.txt": HEADER + b"Mar 11\n\nT1\n\nA1\n\nT2\n",
    "garbage.bin": bytes(range(256)) * 64,
    "latin1.txt": HEADER + "Mar 11\n\nCaf\u00e9\n\nabstract\n".encode("latin-1"),
    "nul.txt": HEADER + b"Mar 11\n\nT\x00\n\nA\n",
    "huge_line.txt": HEADER + b"Mar 11\n\n" + b"x" * 20_000_000 + b"\n",
}
GOOD_ODD_DUMPS = {
    "utf16.txt": "new\n\nMar 11\n\nÜber-title one\n\nabstract one\n".encode("utf-16"),
    "bom.txt": b"\xef\xbb\xbfnew\n\nMar 11\n\nTitle two\n\nabstract two\n",
    "crlf.txt": b"new\r\n\r\nMar 11\r\n\r\nTitle three\r\n\r\nabstract three\r\n",
    "html.txt": b"new\n\nMar 11\n\n<script>alert('x')</script> & <b>Bold</b>\n\nabs <obj>\n",
}


def counts(engine) -> tuple[int, int]:
    with Session(engine) as session:
        return (session.scalar(select(func.count()).select_from(Paper)),
                session.scalar(select(func.count()).select_from(Listing)))


def test_seeds_land_once_and_second_ingest_adds_nothing(engine, example_dumps):
    first = ingest_paths(engine, [example_dumps], stamp=date(2026, 3, 20))
    assert [r.status for r in first] == ["ingested"] * 5
    assert sum(r.new for r in first) == 354
    assert sum(r.entries for r in first) == 409
    assert counts(engine) == (354, 409 - sum(r.entries - r.new - r.known for r in first))
    second = ingest_paths(engine, [example_dumps], stamp=date(2026, 3, 20))
    assert [r.status for r in second] == ["duplicate"] * 5
    assert sum(r.new for r in second) == 0
    assert counts(engine)[0] == 354


def test_paper_seen_in_several_dumps_is_one_row_with_sightings(engine, example_dumps):
    ingest_paths(engine, [example_dumps], stamp=date(2026, 3, 20))
    with Session(engine) as session:
        seen = session.execute(
            select(Listing.paper_id, func.count()).group_by(Listing.paper_id)
            .having(func.count() >= 3)
        ).all()
        assert seen, "some seed papers are listed by three or more dumps"
        first = session.scalar(select(Paper).where(Paper.key == "transformers can do bayesian inference"))
        assert first.first_listed == date(2026, 3, 11)


def test_same_paper_in_a_renamed_file_with_other_bytes_is_known(engine, tmp_path):
    (tmp_path / "a.txt").write_bytes(HEADER + b"Mar 11\n\nA Paper: Title\n\nabs\n")
    (tmp_path / "b.txt").write_bytes(HEADER + b"Mar 12\n\na paper -- title\n\nabs\n\nOther\n\nabs2\n")
    reports = ingest_paths(engine, [tmp_path / "a.txt", tmp_path / "b.txt"], stamp=date(2026, 3, 20))
    assert [(r.new, r.known) for r in reports] == [(1, 0), (1, 1)]
    assert counts(engine) == (2, 3)


def test_bad_dumps_quarantined_intact_good_ones_land(engine, tmp_path, example_dumps):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(example_dumps / "000_648e4c2a7562aa40.txt", inbox)
    for name, raw in {**BAD_DUMPS, **GOOD_ODD_DUMPS}.items():
        (inbox / name).write_bytes(raw)
    (inbox / ".partial.txt").write_bytes(b"still being written")
    (inbox / "next.txt.part").write_bytes(b"still being written")

    reports = {r.name: r for r in sweep_inbox(engine, inbox)}

    assert {n for n, r in reports.items() if r.status == "failed"} == set(BAD_DUMPS)
    assert {n for n, r in reports.items() if r.status == "ingested"} == (
        set(GOOD_ODD_DUMPS) | {"000_648e4c2a7562aa40.txt"})
    for name, raw in BAD_DUMPS.items():
        assert (inbox / "failed" / name).read_bytes() == raw
        reason = (inbox / "failed" / f"{name}.error.txt").read_text()
        assert reason.startswith(name) and reason.strip() == reports[name].error
    assert "not valid UTF-8" in reports["latin1.txt"].error
    assert "NUL byte" in reports["nul.txt"].error
    assert "over the 65,536 cap" in reports["huge_line.txt"].error
    assert "no date line" in reports["no_date.txt"].error
    assert "has no abstract" in reports["odd_count.txt"].error
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == [".partial.txt", "next.txt.part"]
    assert counts(engine)[0] == 80 + len(GOOD_ODD_DUMPS)
    with Session(engine) as session:
        html = session.scalar(select(Paper).where(Paper.title.startswith("<script>")))
        assert html.title == "<script>alert('x')</script> & <b>Bold</b>"
        assert session.scalar(select(Paper.title).where(Paper.abstract == "abstract one")) == "Über-title one"
        failed = session.scalars(select(Dump).where(Dump.status == "failed")).all()
        assert {d.file_name for d in failed} == set(BAD_DUMPS)


def test_failed_dump_leaves_database_unchanged(engine, tmp_path):
    (tmp_path / "bad.txt").write_bytes(HEADER + b"Mar 11\n\nGood\n\nabs\n\nBad title\n")
    [report] = ingest_paths(engine, [tmp_path / "bad.txt"])
    assert report.status == "failed"
    assert counts(engine) == (0, 0)


def test_concurrent_overlapping_ingests_make_no_duplicates(engine, example_dumps, tmp_path):
    # Two copies of the same dumps with one changed byte each, so every file is "new" to the other.
    other = tmp_path / "other"
    other.mkdir()
    for path in example_dumps.iterdir():
        (other / path.name).write_bytes(path.read_bytes() + b"\n")
    results, errors = [], []

    def run(folder):
        try:
            results.extend(ingest_paths(engine, [folder], stamp=date(2026, 3, 20)))
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in (example_dumps, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(r.new for r in results) == 354
    assert counts(engine) == (354, 2 * (409 - 0) - sum(r.entries - r.new - r.known for r in results))
