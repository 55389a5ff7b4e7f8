"""Store parsed dumps: one dump is one transaction, papers deduplicated by their normalised title.

Safe beside another ingest (the CLI while the worker sweeps): unique constraints plus
`ON CONFLICT DO NOTHING` mean a race ends in one paper row and two sightings, never a crash.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError

from feedbot.clock import utcnow
from feedbot.db import insert_for, transaction
from feedbot.dumps import DumpError, ParsedDump, parse_dump
from feedbot.models import Dump, Listing, Paper, Sweep

log = logging.getLogger(__name__)

CHUNK = 2000


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
        return self._line() + (f" (NOT MOVED: {self.stuck})" if self.stuck else "")

    def _line(self) -> str:
        if self.status == "ingested":
            return f"{self.name}: {self.entries} entries, {self.new} new papers, {self.known} already known"
        if self.status == "duplicate":
            return f"{self.name}: already ingested (same content), nothing to do"
        if self.status == "retry":
            return f"{self.name}: left for the next sweep: {self.error}"
        return f"{self.name}: FAILED: {self.error}"


def is_partial(path: Path) -> bool:
    """Files a scraper is still writing: hidden names and .tmp/.part endings are left alone."""
    return path.name.startswith(".") or path.suffix in (".tmp", ".part") or path.name.endswith(
        ".error.txt"
    )


def expand(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly, and the complete files directly inside named folders, sorted."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.is_file() and not is_partial(p))
        else:
            yield path


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def store(engine: Engine, parsed: ParsedDump, sha256: str) -> IngestReport:
    """Land every paper of one parsed dump, or none of them."""
    report = IngestReport(parsed.name, "ingested", entries=len(parsed.entries))
    first: dict[str, tuple[int, object]] = {}
    for position, entry in enumerate(parsed.entries):
        first.setdefault(entry.key, (position, entry))
    keys = sorted(first)  # a fixed order, so two concurrent ingests cannot deadlock
    now = utcnow()
    try:
        with transaction(engine) as session:
            previous = session.scalar(select(Dump).where(Dump.sha256 == sha256))
            if previous is not None and previous.status == "ingested":
                return IngestReport(parsed.name, "duplicate", entries=len(parsed.entries))
            if previous is not None:
                session.execute(delete(Dump).where(Dump.id == previous.id))
            dump = Dump(
                file_name=parsed.name[:255], sha256=sha256, listed_on=parsed.dates[0],
                status="ingested", entries=len(parsed.entries), started_at=now,
            )
            session.add(dump)
            session.flush()

            insert = insert_for(session)
            connection = session.connection()
            for chunk in _chunks(keys):
                rows = [
                    {"key": k, "title": first[k][1].title, "abstract": first[k][1].abstract,
                     "first_listed": first[k][1].listed_on, "created_at": now}
                    for k in chunk
                ]
                statement = insert(Paper).on_conflict_do_nothing(index_elements=["key"])
                report.new += len(connection.execute(statement.returning(Paper.id), rows).all())

            ids: dict[str, tuple[int, date]] = {}
            for chunk in _chunks(keys):
                query = select(Paper.key, Paper.id, Paper.first_listed).where(Paper.key.in_(chunk))
                ids.update({k: (i, d) for k, i, d in connection.execute(query)})
            report.known = len(keys) - report.new

            earlier = [
                {"pid": ids[k][0], "day": first[k][1].listed_on}
                for k in keys if first[k][1].listed_on < ids[k][1]
            ]
            if earlier:  # a dump ingested out of order can move a paper's first listing back
                connection.execute(
                    update(Paper.__table__).where(Paper.id == bindparam("pid")).values(
                        first_listed=bindparam("day")
                    ),
                    earlier,
                )
            listings = [
                {"dump_id": dump.id, "paper_id": ids[k][0], "listed_on": first[k][1].listed_on,
                 "position": first[k][0]}
                for k in keys
            ]
            for chunk in _chunks(listings):
                connection.execute(insert(Listing), chunk)
            dump.new_papers, dump.known_papers, dump.finished_at = report.new, report.known, utcnow()
    except IntegrityError:
        # Another process landed the same bytes between our check and our insert.
        with transaction(engine) as session:
            if session.scalar(select(Dump.status).where(Dump.sha256 == sha256)) == "ingested":
                return IngestReport(parsed.name, "duplicate", entries=len(parsed.entries))
        raise
    return report


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


def ingest_file(engine: Engine, path: Path, stamp: date | None = None) -> IngestReport:
    """Parse and store one dump file; a bad dump is reported (and remembered), never half-stored."""
    try:
        raw = path.read_bytes()
        modified = datetime.fromtimestamp(path.stat().st_mtime, UTC).date()
    except FileNotFoundError:
        return IngestReport(path.name, "retry", error="file vanished (taken by another sweep?)")
    except OSError as exc:
        return IngestReport(path.name, "failed", error=f"cannot read: {exc.strerror or exc}")
    sha256 = hashlib.sha256(raw).hexdigest()
    try:
        parsed = parse_dump(raw, path.name, stamp or modified)
    except DumpError as exc:
        record_failure(engine, path.name, sha256, str(exc))
        return IngestReport(path.name, "failed", error=str(exc))
    report = store(engine, parsed, sha256)
    log.info("ingest dump=%s status=%s new=%d known=%d", path.name, report.status, report.new,
             report.known)
    return report


def ingest_paths(
    engine: Engine,
    paths: Iterable[Path],
    stamp: date | None = None,
    progress: Callable[[int, int, Path], None] | None = None,
) -> list[IngestReport]:
    """Ingest files and folders in place (the admin CLI's `feedbot ingest PATH…`)."""
    files = list(expand(paths))
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
    inbox.mkdir(parents=True, exist_ok=True)
    files = list(expand([inbox]))
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
    folder = inbox / ("failed" if report.status == "failed" else "done")
    folder.mkdir(exist_ok=True)
    destination = _free_name(folder / path.name)
    try:
        shutil.move(path, destination)
    except FileNotFoundError:
        if path.exists():  # the folder vanished, not the file
            raise
        return
    if report.status == "failed":
        destination.with_name(destination.name + ".error.txt").write_text(report.error + "\n", encoding="utf-8")


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
