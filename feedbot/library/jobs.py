"""One import of a subscriber's library, as a job: claimed (one at a time per subscriber), read,
resolved, then stored in one transaction — the papers, and a 👍 with origin `import` for each —
or nothing at all. `/import undo` takes back the last import's 👍.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from feedbot.clock import utcnow
from feedbot.delivery.ownership import as_utc, owner_alive, this_process
from feedbot.library.fetch import zotero_library
from feedbot.library.parse import MAX_BYTES, Entry, LibraryError, Parsed, Skipped, parse_bytes, parse_text, too_big
from feedbot.library.resolve import Apis, Progress, Resolved, resolve
from feedbot.sources.http import Client, SourceError
from feedbot.sources.ingest import group_records, upsert_papers
from feedbot.store import subscribers
from feedbot.store.db import chunks, insert_for, transaction
from feedbot.store.models import Import, Subscriber, Vote

log = logging.getLogger(__name__)

SKIPPED_SHOWN = 40


class ImportBusy(LibraryError):
    """Another import of this subscriber's library is running."""


@dataclass
class ImportReport:
    source: str
    format: str = ""
    read: int = 0
    known: int = 0  # papers that were already known to feedbot
    fetched: int = 0
    title_only: int = 0
    added: int = 0  # 👍 stored
    already: int = 0  # papers the subscriber had voted on (👍 or 👎): their vote is kept
    skipped: list[Skipped] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def lines(self, shown: int | None = SKIPPED_SHOWN) -> list[str]:
        """What the subscriber and the admin read: the counts, then each skipped entry and why (the
        first `shown` of them; None: all, as `skipped_file` holds them)."""
        if self.error:
            return [f"Import of {self.source} failed: {self.error}. Nothing was stored."]
        head = (f"Imported {self.source} ({self.format}): {self.read:,} read, {self.known:,} matched to known papers, "
                f"{self.fetched:,} fetched, {self.title_only:,} title-only, {len(self.skipped):,} skipped; "
                f"{self.added:,} added to your library"
                + (f", {self.already:,} you had voted on already (votes kept)" if self.already else "") + ".")
        out = [head]
        shown = len(self.skipped) if shown is None else shown
        for item in self.skipped[:shown]:
            out.append(f"skipped {item.where}: {item.why}")
        if len(self.skipped) > shown:
            out.append(f"…and {len(self.skipped) - shown:,} more skipped (every one in the attached file)")
        return out

    def skipped_file(self) -> tuple[str, bytes] | None:
        """Every skipped entry and why, one a line, when the answer shows only the first of them."""
        if len(self.skipped) <= SKIPPED_SHOWN:
            return None
        return "skipped.txt", "\n".join(f"{item.where}: {item.why}" for item in self.skipped).encode() + b"\n"


def claim(engine: Engine, telegram_id: int, source: str, now: datetime | None = None) -> int:
    """A `running` import row for the subscriber, or ImportBusy when one runs already (two claims at
    once are ordered by the subscriber's row lock, so one of them is refused)."""
    now = now or utcnow()
    with transaction(engine) as session:
        subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.telegram_id == telegram_id)
                                       .with_for_update())
        if subscriber_id is None:
            raise LibraryError(f"{telegram_id} is no subscriber (they must /start first)")
        for running in session.scalars(select(Import).where(Import.subscriber_id == subscriber_id,
                                                            Import.status == "running")):
            if owner_alive(running.owner, running.started_at, now):
                raise ImportBusy("an import of your library is already running; wait for its answer")
            running.status, running.error, running.finished_at = "failed", "its process stopped", now
        row = Import(subscriber_id=subscriber_id, source=source[:255], status="running", owner=this_process(),
                     entries=0, added=0, started_at=now)
        session.add(row)
        session.flush()
        return row.id


def _fail(engine: Engine, import_id: int, error: str) -> None:
    with transaction(engine) as session:
        session.execute(update(Import).where(Import.id == import_id).values(
            status="failed", error=error[:2000], finished_at=utcnow()))


def run(engine: Engine, telegram_id: int, source: str, load: Callable[[Progress | None], Parsed], apis: Apis,
        progress: Progress | None = None, now: datetime | None = None) -> ImportReport:
    """Claim, read (`load`), resolve and store one import; every failure is a report that says
    nothing was stored. ImportBusy and an unknown subscriber raise before anything runs."""
    import_id = claim(engine, telegram_id, source, now)
    report = ImportReport(source)
    try:
        parsed = load(progress)
        report.format, report.read = parsed.format, len(parsed.entries) + len(parsed.skipped)
        resolved = resolve(parsed.entries, apis, progress)
        report.skipped = parsed.skipped + resolved.skipped
        report.fetched, report.title_only = resolved.fetched, resolved.title_only
        store_retrying(engine, import_id, resolved, report, now or utcnow())
    except (LibraryError, SourceError) as exc:
        report.error = str(exc)
    except Exception as exc:
        log.exception("library import %s of subscriber telegram_id=%s failed", import_id, telegram_id)
        report.error = f"it stopped half-way ({type(exc).__name__})"
    if report.error:
        _fail(engine, import_id, report.error)
    log.info("library import %s: %s", import_id, report.lines()[0])
    return report


def import_bytes(engine: Engine, settings, telegram_id: int, name: str, content: bytes,
                 progress: Progress | None = None, now: datetime | None = None) -> ImportReport:
    """A library file: read first (a file that is no library is refused before anything starts)."""
    try:
        parsed = parse_bytes(content)
    except LibraryError as exc:
        return ImportReport(name, error=str(exc))
    return run_with(engine, settings, telegram_id, name, lambda _: parsed, progress, now)


def import_path(engine: Engine, settings, telegram_id: int, path, progress: Progress | None = None,
                now: datetime | None = None) -> ImportReport:
    """A library file on disk (console, CLI): only a regular file, never read past the cap (a FIFO
    or a device would block or never end; a file still growing is cut off)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # before opening: opening a FIFO blocks
            return ImportReport(path.name, error="it is not a regular file")
        with path.open("rb") as handle:
            problem = too_big(os.fstat(handle.fileno()).st_size)
            content = b"" if problem else handle.read(MAX_BYTES + 1)
    except OSError as exc:
        return ImportReport(path.name, error=f"cannot read it: {exc.strerror or exc}")
    problem = problem or too_big(len(content))
    if problem:
        return ImportReport(path.name, error=problem)
    return import_bytes(engine, settings, telegram_id, path.name, content, progress, now)


def import_text(engine: Engine, settings, telegram_id: int, text: str, progress: Progress | None = None,
                now: datetime | None = None) -> ImportReport:
    """Pasted arXiv ids, arXiv or DOI URLs and DOIs."""
    return run_with(engine, settings, telegram_id, "the ids you sent", lambda _: parse_text(text), progress, now)


def import_zotero(engine: Engine, settings, telegram_id: int, user_id: str, key: str,
                  progress: Progress | None = None, now: datetime | None = None) -> ImportReport:
    """A whole Zotero user library, read once with `key` (used for this import only)."""
    def load(meter: Progress | None) -> Parsed:
        client = Client()
        try:
            entries, skipped = zotero_library(client, settings.zotero_api_url, user_id, key, meter)
        finally:
            client.http.close()
        return Parsed("Zotero library", entries, skipped)

    return run_with(engine, settings, telegram_id, "your Zotero library", load, progress, now)


def run_with(engine: Engine, settings, telegram_id: int, source: str, load: Callable[[Progress | None], Parsed],
             progress: Progress | None, now: datetime | None) -> ImportReport:
    apis = Apis.from_settings(settings)
    try:
        return run(engine, telegram_id, source, load, apis, progress, now)
    finally:
        apis.close()


# PostgreSQL's deadlock, serialisation failure and unique violation (a concurrent import gave a
# paper the DOI this one fills): the transaction was rolled back whole, and a second look sees why.
RETRYABLE = {"40P01", "40001", "23505"}
STORE_ATTEMPTS = 3


def store_retrying(engine: Engine, import_id: int, resolved: Resolved, report: ImportReport, now: datetime) -> None:
    """`store`, again when PostgreSQL rolled it back for a deadlock: two imports (or an import and
    an ingest) inserting papers that clash on different unique columns (title key, arXiv id, DOI)
    can meet them in opposite orders, and no one order of the rows avoids that for all three."""
    for attempt in range(1, STORE_ATTEMPTS + 1):
        try:
            return store(engine, import_id, resolved, report, now)
        except DBAPIError as exc:
            if attempt == STORE_ATTEMPTS or getattr(exc.orig, "sqlstate", None) not in RETRYABLE:
                raise
            log.info("library import %s: storing again after %s", import_id, type(exc.orig).__name__)


def store(engine: Engine, import_id: int, resolved: Resolved, report: ImportReport, now: datetime) -> None:
    """The resolved papers and their 👍, and the import marked done: one transaction."""
    with transaction(engine) as session:
        # The subscriber's row lock first, as /delete takes it: an import whose subscriber was
        # deleted meanwhile finds its claim gone and stores nothing.
        subscriber_id = session.scalar(select(Import.subscriber_id).where(Import.id == import_id))
        locked = subscriber_id is not None and session.scalar(
            select(Subscriber.id).where(Subscriber.id == subscriber_id).with_for_update())
        row = session.get(Import, import_id, populate_existing=True) if locked else None
        if row is None:
            raise LibraryError("your data was deleted while it ran")
        records = [record for _, record in resolved.papers]
        grouped = sorted((r for _, r in group_records(records)), key=lambda r: r.key)
        ids, new = upsert_papers(session, grouped, now) if grouped else ([], 0)
        report.known = len(grouped) - new
        by_id, by_doi, by_key = {}, {}, {}
        for record, (pid, _) in zip(grouped, ids, strict=True):
            if record.arxiv_id:
                by_id[record.arxiv_id] = pid
            if record.doi:
                by_doi[record.doi] = pid
            by_key[record.key] = pid
        votes: dict[int, dict] = {}
        for entry, record in resolved.papers:
            pid = by_id.get(record.arxiv_id or "") or by_doi.get(record.doi or "") or by_key[record.key]
            when = _when(entry, now)
            if pid not in votes or when < votes[pid]["voted_at"]:
                votes[pid] = {"subscriber_id": row.subscriber_id, "paper_id": pid, "value": 1, "voted_at": when,
                              "origin": "import", "import_id": import_id}
        insert = insert_for(session)
        added = 0
        for chunk in chunks(sorted(votes.values(), key=lambda v: v["paper_id"]), 1000):
            statement = insert(Vote).on_conflict_do_nothing(index_elements=["subscriber_id", "paper_id"])
            added += len(session.execute(statement.returning(Vote.paper_id), chunk).all())
        report.added, report.already = added, len(votes) - added
        row.status, row.entries, row.added, row.finished_at = "done", report.read, added, utcnow()
        if added:
            subscribers.votes_changed(session, row.subscriber_id)  # cached community tables see the new 👍


def _when(entry: Entry, now: datetime) -> datetime:
    """The entry's date added (never in the future), else the import's time."""
    return min(as_utc(entry.added), now) if entry.added else now


def undo_last(session: Session, subscriber_id: int) -> tuple[Import | None, int]:
    """Take back the 👍 the subscriber's last import that added any; (that import, 👍 removed)."""
    last = session.scalar(select(Import).where(Import.subscriber_id == subscriber_id, Import.status == "done",
                                               Import.added > 0)
                          .order_by(Import.id.desc()).limit(1))
    if last is None:
        return None, 0
    removed = session.execute(delete(Vote).where(Vote.subscriber_id == subscriber_id, Vote.import_id == last.id,
                                                 Vote.origin == "import")).rowcount
    last.status = "undone"
    if removed:
        subscribers.votes_changed(session, subscriber_id)
    return last, removed


def status_lines(session: Session) -> list[str]:
    """`feedbot status`: imports by outcome, and the last failure's why (none shows nothing)."""
    counts = dict(session.execute(select(Import.status, func.count()).group_by(Import.status)).all())
    if not counts:
        return []
    lines = ["imports:  " + ", ".join(f"{counts[s]} {s}" for s in ("done", "running", "failed", "undone")
                                      if counts.get(s))]
    failed = session.scalar(select(Import).where(Import.status == "failed").order_by(Import.id.desc()).limit(1))
    if failed is not None:
        when = as_utc(failed.finished_at or failed.started_at)
        lines.append(f"  last failed: {failed.source} at {when:%Y-%m-%d %H:%M} UTC: {failed.error}")
    return lines
