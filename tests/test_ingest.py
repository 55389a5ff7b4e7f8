"""Ingest into a real database: dedupe, idempotence, quarantine of bad dumps, concurrency."""

import os
import shutil
import threading
import tracemalloc
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from feedbot.sources import ingest
from feedbot.sources.dumps import MAX_FILE_BYTES
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


OVER_THE_CAP = [MAX_FILE_BYTES + 1, 64 << 30]  # a byte over, and 64 GiB (sparse: no disk used)


def sparse(path: Path, size: int) -> Path:
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


def unread(call):
    """Run `call`; assert it never held anything near a dump's size in memory (the file was not read)."""
    tracemalloc.start()
    try:
        result = call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_FILE_BYTES // 16, peak
    return result


@pytest.mark.parametrize("size", OVER_THE_CAP)
@pytest.mark.parametrize("where", ["file named", "in a folder named", "in the inbox"])
def test_an_oversize_dump_is_refused_unread_wherever_it_comes_from(engine, tmp_path, example_dumps, size, where):
    folder = tmp_path / ("inbox" if where == "in the inbox" else "scraped")
    folder.mkdir()
    big = sparse(folder / "runaway.txt", size)
    shutil.copy(example_dumps / "000_648e4c2a7562aa40.txt", folder / "good.txt")
    if where == "in the inbox":
        reports = unread(lambda: sweep_inbox(engine, folder))
    else:
        paths = [big, folder / "good.txt"] if where == "file named" else [folder]
        reports = unread(lambda: ingest_paths(engine, paths, stamp=date(2026, 3, 20)))
    by_name = {r.name: r for r in reports}
    assert by_name["good.txt"].status == "ingested" and counts(engine)[0] == 80
    refused = by_name["runaway.txt"]
    assert refused.status == "failed"
    assert refused.error == f"runaway.txt: file is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte cap"
    with Session(engine) as session:
        assert session.scalar(select(Dump.error).where(Dump.file_name == "runaway.txt")) == refused.error
    if where == "in the inbox":  # set aside like any bad dump, so the next sweep (at the next start) is calm
        assert (folder / "failed" / "runaway.txt").stat().st_size == size and not big.exists()
        assert (folder / "failed" / "runaway.txt.error.txt").read_text().strip() == refused.error
        assert sweep_inbox(engine, folder) == []
    else:
        assert big.stat().st_size == size  # left where it was named


def test_the_worker_sweep_sets_an_oversize_dump_aside(engine, settings):
    import asyncio

    from feedbot.worker import Worker

    settings.inbox.mkdir(parents=True)
    sparse(settings.inbox / "runaway.txt", 64 << 30)
    reports = asyncio.run(Worker(settings, engine).sweep_inbox())  # 64 GiB: read whole, it would exhaust memory
    assert [(r.name, r.status) for r in reports] == [("runaway.txt", "failed")]
    assert (settings.inbox / "failed" / "runaway.txt").exists()
    assert sweep_inbox(engine, settings.inbox) == []  # the next start's sweep finds nothing to choke on


def test_feedbot_ingest_refuses_an_oversize_dump(env, tmp_path):
    from tests.test_cli import feedbot

    big = sparse(tmp_path / "runaway.txt", 64 << 30)
    feedbot(env, "db", "upgrade")
    result = feedbot(env, "ingest", str(big), check=False)
    assert result.returncode == 1
    assert f"runaway.txt: FAILED: runaway.txt: file is {64 << 30:,} bytes, over the" in result.stdout
    inbox = tmp_path / "data" / "inbox"
    inbox.mkdir(parents=True)
    big.rename(inbox / big.name)
    assert feedbot(env, "ingest", check=False).returncode == 1
    assert (inbox / "failed" / "runaway.txt").exists() and (inbox / "failed" / "runaway.txt.error.txt").exists()


def test_a_dump_that_grows_while_read_is_read_only_up_to_the_cap(engine, monkeypatch):
    """/proc/self/status is a regular file that reports 0 bytes and holds more: a file that grew
    between its size check and its reading. Under the cap it is read whole; over it, refused."""
    status = Path("/proc/self/status")
    assert status.stat().st_size == 0 and len(status.read_bytes()) > 200
    [report] = ingest_paths(engine, [status])
    assert report.status == "failed" and "no date line" in report.error  # read whole, then parsed
    monkeypatch.setattr(ingest, "MAX_FILE_BYTES", 100)
    [report] = ingest_paths(engine, [status])
    assert report.status == "failed" and "file grew past the 100-byte cap while being read" in report.error


def test_a_fifo_or_device_named_is_refused_without_blocking(engine, tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    reports = ingest_paths(engine, [fifo, Path("/dev/zero")])
    assert [(r.status, r.error) for r in reports] == [("failed", "pipe.txt: not a regular file"),
                                                      ("failed", "zero: not a regular file")]
