"""Store parsed dumps: one dump is one transaction, papers deduplicated by their normalised title.

Safe beside another ingest (the CLI while the worker sweeps): unique constraints plus
`ON CONFLICT DO NOTHING` mean a race ends in one paper row and two sightings, never a crash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine, bindparam, case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from feedbot.clock import utcnow
from feedbot.config import private_dir, private_file
from feedbot.sources.dumps import MAX_FILE_BYTES, DumpError, parse_dump
from feedbot.sources.records import PaperRecord
from feedbot.store.db import chunks, insert_for, transaction
from feedbot.store.models import Dump, Listing, Paper, Sweep
from feedbot.store.papers import search_text

log = logging.getLogger(__name__)

CHUNK = 2000
READ_CHUNK = 1024 * 1024  # a file that grows while read is read on in pieces of this size


@dataclass
class IngestReport:
    """What happened to one dump: ingested, duplicate (same bytes seen before), failed or retry."""

    name: str
    status: str
    entries: int = 0
    new: int = 0
    known: int = 0
    error: str = ""
    stuck: str = ""  # why a swept file could not be moved out of the inbox

    def line(self) -> str:
        if self.status == "ingested":
            text = f"{self.name}: {self.entries} entries, {self.new} new papers, {self.known} already known"
        elif self.status == "duplicate":
            text = f"{self.name}: already ingested (same content), nothing to do"
        elif self.status == "retry":
            text = f"{self.name}: left for the next sweep: {self.error}"
        else:
            text = f"{self.name}: FAILED: {self.error}"
        return text + (f" (NOT MOVED: {self.stuck})" if self.stuck else "")


def dump_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly, and the complete dumps directly inside named folders, sorted.

    In a folder, files a scraper is still writing (hidden names, .tmp/.part endings) and the
    notes beside failed dumps (.error.txt) are left alone.
    """
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.is_file() and not (
                p.name.startswith(".") or p.suffix in (".tmp", ".part") or p.name.endswith(".error.txt")))
        else:
            yield path


_META = ("arxiv_id", "url", "authors", "code_url", "doi")


def group_records(records: list[PaperRecord]) -> list[tuple[int, PaperRecord]]:
    """One (first position, record) per paper in the batch: same arXiv id, else same DOI, else
    same title key.

    Later sightings fill fields the first one lacked, so a batch never lists one paper twice.
    """
    groups: list[list] = []
    by_id: dict[str, int] = {}
    by_doi: dict[str, int] = {}
    by_key: dict[str, int] = {}
    for position, record in enumerate(records):
        index = by_id.get(record.arxiv_id) if record.arxiv_id else None
        if index is None and record.doi:
            index = by_doi.get(record.doi)
        if index is None:
            index = by_key.get(record.key)  # the same title is the same paper, whatever ids say
        if index is None:
            groups.append([position, record])
            index = len(groups) - 1
        else:
            kept = groups[index][1]
            fill = {f: getattr(record, f) for f in _META if getattr(kept, f) is None and getattr(record, f)}
            if fill:
                groups[index][1] = dataclasses.replace(kept, **fill)
        merged = groups[index][1]
        by_key.setdefault(record.key, index)
        by_key.setdefault(merged.key, index)
        if merged.arxiv_id:
            by_id.setdefault(merged.arxiv_id, index)
        if merged.doi:
            by_doi.setdefault(merged.doi, index)
    return [(position, record) for position, record in groups]


def store_records(engine: Engine, name: str, sha256: str, records: list[PaperRecord]) -> IngestReport:
    """Land one batch (a dump, or one fetch from a source) in one transaction, or nothing of it.

    A paper already stored is matched on its arXiv id first, then on its normalised title; a match
    gains the id, URL, authors, code URL and DOI it lacked, and gets a new sighting, not a new row.
    """
    report = IngestReport(name, "ingested", entries=len(records))
    grouped = sorted(group_records(records), key=lambda g: g[1].key)  # a fixed order: no deadlocks between ingests
    now = utcnow()
    try:
        with transaction(engine) as session:
            previous = session.scalar(select(Dump).where(Dump.sha256 == sha256))
            if previous is not None and previous.status == "ingested":
                return IngestReport(name, "duplicate", entries=len(records))
            if previous is not None:
                session.execute(delete(Dump).where(Dump.id == previous.id))
            dump = Dump(
                file_name=name[:255], sha256=sha256, listed_on=min(r.listed_on for r in records),
                status="ingested", entries=len(records), started_at=now,
            )
            session.add(dump)
            session.flush()
            connection = session.connection()
            ids, report.new = upsert_papers(session, [r for _, r in grouped], now)
            report.known = len(grouped) - report.new

            earlier = [
                {"pid": ids[n][0], "day": record.listed_on}
                for n, (_, record) in enumerate(grouped) if ids[n][1] is None or record.listed_on < ids[n][1]
            ]
            # A dump ingested out of order can move a paper's first listing back; a paper known
            # only from an imported library is listed for the first time.
            if earlier:
                connection.execute(
                    update(Paper.__table__).where(Paper.id == bindparam("pid")).values(
                        first_listed=bindparam("day")
                    ),
                    earlier,
                )
            listings: dict[int, dict] = {}
            for n, (position, record) in enumerate(grouped):
                listing = {"dump_id": dump.id, "paper_id": ids[n][0], "listed_on": record.listed_on,
                           "position": position}
                if ids[n][0] not in listings or position < listings[ids[n][0]]["position"]:
                    listings[ids[n][0]] = listing
            insert = insert_for(session)
            for chunk in chunks(list(listings.values()), CHUNK):
                connection.execute(insert(Listing), chunk)
            dump.new_papers, dump.known_papers, dump.finished_at = report.new, report.known, utcnow()
    except IntegrityError:
        # Another process landed the same bytes between our check and our insert.
        with transaction(engine) as session:
            if session.scalar(select(Dump.status).where(Dump.sha256 == sha256)) == "ingested":
                return IngestReport(name, "duplicate", entries=len(records))
        raise
    return report


def upsert_papers(session: Session, records: list[PaperRecord],
                  now: datetime) -> tuple[list[tuple[int, date | None]], int]:
    """(paper id, first listed) for each record, inserting the new ones; and how many were new.

    A record matches a stored paper by arXiv id, then DOI, then normalised title; the match gains
    the fields it lacked (and the abstract, when it had none)."""
    connection, insert = session.connection(), insert_for(session)
    columns = (Paper.id, Paper.key, Paper.first_listed, Paper.arxiv_id, Paper.url, Paper.authors,
               Paper.code_url, Paper.doi, Paper.title, Paper.abstract)

    def lookup(column, values: set[str]) -> dict[str, tuple]:
        found: dict[str, tuple] = {}
        for chunk in chunks(sorted(values), CHUNK):
            found.update({getattr(row, column.key): row for row in connection.execute(
                select(*columns).where(column.in_(chunk)))})
        return found

    wanted_ids = {r.arxiv_id for r in records if r.arxiv_id}
    wanted_dois = {r.doi for r in records if r.doi}
    found_id, found_doi = lookup(Paper.arxiv_id, wanted_ids), lookup(Paper.doi, wanted_dois)
    fresh = [r for r in records if not (r.arxiv_id and r.arxiv_id in found_id) and not (r.doi and r.doi in found_doi)]
    new = 0
    inserted: set[str] = set()
    for chunk in chunks(fresh, CHUNK):
        rows = [
            {"key": r.key, "title": r.title, "abstract": r.abstract, "first_listed": r.listed_on,
             "created_at": now, "arxiv_id": r.arxiv_id, "url": r.url, "authors": r.authors,
             "code_url": r.code_url, "doi": r.doi, "search_text": search_text(r.title, r.abstract, r.authors)}
            for r in chunk
        ]
        # No conflict target: a clash on the title key, the arXiv id or the DOI all mean "already stored".
        statement = insert(Paper).on_conflict_do_nothing()
        inserted.update(key for (key,) in connection.execute(statement.returning(Paper.key), rows).all())
        new = len(inserted)
    found_id, found_doi = lookup(Paper.arxiv_id, wanted_ids), lookup(Paper.doi, wanted_dois)
    found_key = lookup(Paper.key, {r.key for r in records})

    out: list[tuple[int, date | None]] = []
    fills = []
    taken_ids, taken_dois = set(found_id), set(found_doi)
    for record in records:
        row = found_id.get(record.arxiv_id) if record.arxiv_id else None
        row = row or (found_doi.get(record.doi) if record.doi else None)
        row = row or found_key.get(record.key)
        if row is None:
            raise RuntimeError(f"paper {record.key!r} was neither inserted nor found")
        out.append((row.id, row.first_listed))
        if record.key in inserted and row.key == record.key:
            continue
        fill = {f: getattr(record, f) for f in _META if getattr(row, f) is None and getattr(record, f)}
        if fill.get("arxiv_id") and fill["arxiv_id"] in taken_ids:
            fill.pop("arxiv_id")  # that id already belongs to another row: keep each id on one paper
            fill.pop("url", None)
        if fill.get("doi") and fill["doi"] in taken_dois:
            fill.pop("doi")  # the same for a DOI, stored or given to another row just now
        taken_ids.add(fill.get("arxiv_id") or "")
        taken_dois.add(fill.get("doi") or "")
        abstract = record.abstract if not row.abstract and record.abstract else None
        if fill or abstract:
            merged = {f: fill.get(f, getattr(row, f)) for f in _META}
            fills.append({"pid": row.id, **{f"n_{f}": v for f, v in merged.items()}, "n_abstract": abstract or "",
                          "n_search": search_text(row.title, abstract or row.abstract, merged["authors"])})
    if fills:
        # Only empty fields are filled, judged by the row as it is when updated (not as read above):
        # a batch landing at the same time may have filled some, and what it wrote is kept.
        table = Paper.__table__
        empty = table.c.abstract == ""
        connection.execute(
            update(table).where(table.c.id == bindparam("pid")).values(
                search_text=case((table.c.authors.is_(None) | empty, bindparam("n_search")),
                                 else_=table.c.search_text),
                abstract=case((empty, bindparam("n_abstract")), else_=table.c.abstract),
                **{f: func.coalesce(table.c[f], bindparam(f"n_{f}")) for f in _META}),
            fills,
        )
    return out, new


def record_failure(engine: Engine, name: str, sha256: str, error: str) -> None:
    """Remember a failed dump (for `feedbot status`) without touching papers or listings."""
    with transaction(engine) as session:
        previous = session.scalar(select(Dump).where(Dump.sha256 == sha256))
        if previous is not None and previous.status == "ingested":
            return
        if previous is None:
            previous = Dump(file_name=name[:255], sha256=sha256, status="failed")
            session.add(previous)
        previous.status, previous.error, previous.finished_at = "failed", error, utcnow()


def read_dump(path: Path) -> tuple[bytes, date]:
    """A dump's bytes and modification date (UTC), never holding more than the cap (and a byte).

    The size is checked before reading, and a file still growing is read only up to the cap, so a
    runaway scraper's file is refused (DumpError) without being loaded. Only regular files are read:
    a FIFO or a device named on the command line would block or never end.
    """
    if not stat.S_ISREG(path.stat().st_mode):
        raise DumpError(path.name, "not a regular file")
    with path.open("rb") as handle:
        info = os.fstat(handle.fileno())
        modified = datetime.fromtimestamp(info.st_mtime, UTC).date()
        if info.st_size > MAX_FILE_BYTES:
            raise DumpError(path.name, f"file is {info.st_size:,} bytes, over the {MAX_FILE_BYTES:,}-byte cap")
        raw = handle.read(info.st_size + 1)  # a byte more than its size shows a file that grew since
        if len(raw) > info.st_size:  # still being written: read on, never past the cap
            grown = bytearray(raw)
            while len(grown) <= MAX_FILE_BYTES:
                chunk = handle.read(min(READ_CHUNK, MAX_FILE_BYTES + 1 - len(grown)))
                if not chunk:
                    break
                grown += chunk
            if len(grown) > MAX_FILE_BYTES:
                raise DumpError(path.name, f"file grew past the {MAX_FILE_BYTES:,}-byte cap while being read "
                                "(is a scraper still writing it?)")
            raw = bytes(grown)
    return raw, modified


def ingest_file(engine: Engine, path: Path, stamp: date | None = None) -> IngestReport:
    """Parse and store one dump file; a bad dump is reported (and remembered), never half-stored."""
    try:
        raw, modified = read_dump(path)
    except FileNotFoundError:
        return IngestReport(path.name, "retry", error="file vanished (taken by another sweep?)")
    except OSError as exc:
        return IngestReport(path.name, "failed", error=f"cannot read: {exc.strerror or exc}")
    except DumpError as exc:  # refused unread: remembered by what identifies the file, not its bytes
        record_failure(engine, path.name, _unread_id(path), str(exc))
        return IngestReport(path.name, "failed", error=str(exc))
    sha256 = hashlib.sha256(raw).hexdigest()
    try:
        parsed = parse_dump(raw, path.name, stamp or modified)
    except DumpError as exc:
        record_failure(engine, path.name, sha256, str(exc))
        return IngestReport(path.name, "failed", error=str(exc))
    report = store_records(engine, parsed.name, sha256, parsed.entries)
    log.info("ingest dump=%s status=%s new=%d known=%d", path.name, report.status, report.new,
             report.known)
    return report


def _unread_id(path: Path) -> str:
    """A stand-in for the content hash of a file refused without reading it: its name, size and time."""
    try:
        info = path.stat()
        seen = f"{info.st_size} {info.st_mtime_ns}"
    except OSError:
        seen = "gone"
    return hashlib.sha256(f"unread {path.name} {seen}".encode()).hexdigest()


def ingest_paths(
    engine: Engine,
    paths: Iterable[Path],
    stamp: date | None = None,
    progress: Callable[[int, int, Path], None] | None = None,
) -> list[IngestReport]:
    """Ingest files and folders in place (the admin CLI's `feedbot ingest PATH…`)."""
    files = list(dump_files(paths))
    reports = []
    for index, path in enumerate(files):
        if progress:
            progress(index, len(files), path)
        if not path.exists():
            reports.append(IngestReport(path.name, "failed", error=f"no such file: {path}"))
            continue
        reports.append(ingest_file(engine, path, stamp))
    return reports


def _free_name(target: Path) -> Path:
    """`target`, or `target` with a counter when a file of that name was already set aside."""
    candidate, counter = target, 1
    while candidate.exists():
        candidate = target.with_name(f"{target.stem}.{counter}{target.suffix}")
        counter += 1
    return candidate


def sweep_inbox(
    engine: Engine,
    inbox: Path,
    progress: Callable[[int, int, Path], None] | None = None,
) -> list[IngestReport]:
    """Ingest every complete dump in the inbox; move it to done/ or, intact, to failed/."""
    private_dir(inbox)
    files = list(dump_files([inbox]))
    reports = []
    for index, path in enumerate(files):
        if progress:
            progress(index, len(files), path)
        try:
            report = ingest_file(engine, path)
        except Exception as exc:  # database trouble: the file is fine, keep it for the next sweep
            log.exception("ingest of %s failed; left in the inbox", path.name)
            report = IngestReport(path.name, "retry", error=f"{type(exc).__name__}: {exc}")
        reports.append(report)
        if report.status == "retry":
            continue
        try:
            _set_aside(inbox, path, report)
        except OSError as exc:  # e.g. a done/ folder the service user may not write: carry on
            report.stuck = f"cannot move it to {'failed' if report.status == 'failed' else 'done'}/: " \
                           f"{type(exc).__name__}: {exc.strerror or exc}"
            log.error("inbox %s: %s", path.name, report.stuck)
    try:
        record_stuck(engine, reports)
    except Exception:  # database trouble: the log line above still says which files are stuck
        log.exception("could not record the inbox's stuck files")
    return reports


def _set_aside(inbox: Path, path: Path, report: IngestReport) -> None:
    """Move a swept dump to done/, or intact to failed/ next to a note saying why."""
    folder = private_dir(inbox / ("failed" if report.status == "failed" else "done"))
    destination = _free_name(folder / path.name)
    try:
        shutil.move(path, destination)
    except FileNotFoundError:
        if path.exists():  # the folder vanished, not the file
            raise
        return
    except OSError:  # copied, then the original could not be removed: keep one file, in the inbox
        if path.exists() and destination.exists():
            destination.unlink()
        raise
    if report.status == "failed":
        note = destination.with_name(destination.name + ".error.txt")
        private_file(note)
        note.write_text(report.error + "\n", encoding="utf-8")


STUCK_SWEEP = "inbox files"


def record_stuck(engine: Engine, reports: list[IngestReport]) -> None:
    """Keep what could not be moved out of the inbox where `feedbot status` shows it."""
    stuck = [r for r in reports if r.stuck]
    if stuck:
        summary = (f"{len(stuck)} of {len(reports)} swept files could not be moved and stay in the inbox: "
                   + "; ".join(f"{r.name}: {r.stuck}" for r in stuck[:5]) + (" …" if len(stuck) > 5 else ""))
    elif reports:
        summary = f"all {len(reports)} swept files moved out of the inbox"
    else:
        return
    now = utcnow()
    with transaction(engine) as session:
        insert = insert_for(session)
        session.execute(insert(Sweep).values(name=STUCK_SWEEP, ran_at=now, summary=summary).on_conflict_do_update(
            index_elements=["name"], set_={"ran_at": now, "summary": summary}))
