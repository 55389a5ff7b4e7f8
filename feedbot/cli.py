"""The `feedbot` admin command: thin glue over the library modules.

Example:
    feedbot db upgrade
    feedbot ingest examples/dumps
    feedbot status
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from feedbot.config import ConfigError, Settings, load_settings, make_data_dir, setup_logging
from feedbot.numbers import whole_number
from feedbot.store import db

QUIET_EXEMPT = ("worker",)
Command = Callable[[argparse.Namespace, Settings], int]


def _engine(settings: Settings, migrated: bool = True) -> Engine:
    make_data_dir(settings)
    engine = db.make_engine(settings.database_url)
    if migrated:
        db.require_schema(engine)
    return engine


def _progress(stream=sys.stderr) -> Callable[[int, int, Path], None] | None:
    """A one-line progress bar on a terminal, nothing when output is piped."""
    if not stream.isatty():
        return None

    def show(index: int, total: int, path: Path) -> None:
        if total < 3:
            return
        filled = int(30 * (index + 1) / total)
        stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {index + 1}/{total} {path.name[:40]:40}")
        if index + 1 == total:
            stream.write("\r" + " " * 80 + "\r")
        stream.flush()

    return show


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    """Migrate the database to the newest schema (safe to run again)."""
    db.upgrade(settings.database_url, args.revision)
    engine = _engine(settings, migrated=False)
    print(f"database {settings.safe_database_url} at revision {db.current_revision(engine)}")
    return 0


def cmd_db_downgrade(args: argparse.Namespace, settings: Settings) -> int:
    """Undo migrations down to REVISION (`base` removes every table)."""
    db.downgrade(settings.database_url, args.revision)
    print(f"database {settings.safe_database_url} downgraded to {args.revision}")
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest dump files or folders; with no PATH, sweep the inbox (moving files to done/ or failed/)."""
    from feedbot.sources import ingest

    engine = _engine(settings)
    if args.paths:
        reports = ingest.ingest_paths(engine, args.paths, stamp=args.date, progress=_progress())
    else:
        print(f"sweeping inbox {settings.inbox}")
        reports = ingest.sweep_inbox(engine, settings.inbox, progress=_progress())
    for report in reports:
        print(report.line())
    failed = sum(r.status in ("failed", "retry") for r in reports)
    new = sum(r.new for r in reports)
    known = sum(r.known for r in reports)
    print(f"total: {len(reports)} dumps, {new} new papers, {known} already known, {failed} failed")
    if new:
        _refit(engine, settings)
    return 1 if failed else 0


def cmd_fetch(args: argparse.Namespace, settings: Settings) -> int:
    """Fetch papers from a built-in source and store them like a dump (then refit when papers were added)."""
    from feedbot.sources import run
    from feedbot.sources.spec import SourceSpec, SourceSpecError, check_category

    engine = _engine(settings)
    if args.source == "hf":
        spec = SourceSpec("hf")
    else:
        try:
            spec = SourceSpec("arxiv", tuple(dict.fromkeys(check_category(c) for c in args.category)))
        except SourceSpecError as exc:
            raise CommandError(str(exc)) from None
    report = run.run(engine, settings, spec, day=getattr(args, "date", None), limit=getattr(args, "max", 0) or 0)
    print(report.line())
    if report.new:
        _refit(engine, settings)
    return 1 if report.status == "failed" else 0


def _refit(engine: Engine, settings: Settings, force: bool = False) -> None:
    from feedbot.ranking import textmodel

    with Session(engine) as session:
        try:
            model, fitted = textmodel.ensure(session, settings.model_dir, force=force)
        except textmodel.NoPapersError as exc:
            raise CommandError(str(exc)) from None
    if fitted:
        print(f"text model fitted: {len(model.paper_ids)} papers, {model.vocabulary_size} terms, "
              f"{model.fit_seconds:.1f} s")
    else:
        print(f"text model up to date: {len(model.paper_ids)} papers, {model.vocabulary_size} terms")


def cmd_model_refit(args: argparse.Namespace, settings: Settings) -> int:
    """Refit the TF-IDF model on every paper now (normally done after each ingest that adds papers)."""
    _refit(_engine(settings), settings, force=True)
    return 0


def _subscriber(session: Session, telegram_id: int):
    from feedbot.store import subscribers

    subscriber = subscribers.get(session, telegram_id)
    if subscriber is None:
        raise CommandError(f"no subscriber with Telegram user id {telegram_id}")
    return subscriber


def cmd_rank(args: argparse.Namespace, settings: Settings) -> int:
    """Print a subscriber's picks with scores and reasons; sends and records nothing."""
    from feedbot.clock import utcnow
    from feedbot.ranking import recommend, textmodel

    engine = _engine(settings)
    now = utcnow()
    with Session(engine) as session:
        subscriber = _subscriber(session, args.user)
        day = args.date or now.date()
        model = textmodel.load(session, settings.model_dir)
        picks = recommend.recommend(
            session, model, [subscriber], day, now, settings.candidate_days, settings.vote_half_life_days,
            sizes={subscriber.id: args.limit or subscriber.digest_size},
        )[subscriber.id]
        anchor = recommend.latest_listing(session, day)
    if not picks:
        print(f"no picks for {args.user}: no unseen papers listed up to {day.isoformat()}")
        return 0
    print(f"picks for {args.user} from papers listed up to {anchor.isoformat()}:")
    for n, pick in enumerate(picks, 1):
        print(f"{n:>2}. [{pick.score:+.3f}] #{pick.paper_id} {pick.title}")
        print(f"     {pick.why}")
    return 0


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    """Chat with feedbot in this terminal as one local subscriber (same database as the bot)."""
    import getpass

    from feedbot.chat.console import Console
    from feedbot.chat.conversation import Chat, User

    engine = _engine(settings)
    Console(Chat(engine, settings), User(args.user, args.user, getpass.getuser())).run()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run the Telegram bot (long polling) and the schedules in one process."""
    from feedbot import worker

    if not settings.telegram_token:
        raise CommandError("TELEGRAM_BOT_TOKEN is not set: the worker needs a bot token "
                           "(try `feedbot chat` to use feedbot without Telegram)")
    return worker.run(settings, _engine(settings))


def cmd_digest(args: argparse.Namespace, settings: Settings) -> int:
    """Show who is due now and what they would get (--dry-run), or send one subscriber's digest now (--send)."""
    from feedbot.clock import utcnow
    from feedbot.delivery import status

    engine = _engine(settings)
    now = utcnow()
    if args.send:
        if args.user is None:
            raise CommandError("--send needs --user ID")
        return _send_now(engine, settings, args.user, now)
    with Session(engine) as session:  # a read-only session: a dry run writes nothing and locks nothing
        only = _subscriber(session, args.user) if args.user is not None else None
        for line in status.dry_run(session, settings, now, only):
            print(line)
    return 0


def _send_now(engine: Engine, settings: Settings, telegram_id: int, now) -> int:
    """Claim, record and send through the same delivery code as the worker and /digest."""
    import asyncio

    from feedbot.chat import telegram
    from feedbot.chat.conversation import Chat
    from feedbot.delivery import deliveries, schedule, telegram_send
    from feedbot.ranking.textmodel import ModelCache

    if not settings.telegram_token:
        raise CommandError("TELEGRAM_BOT_TOKEN is not set: cannot send")
    with Session(engine, expire_on_commit=False) as session:
        subscriber = _subscriber(session, telegram_id)
        if subscriber.state != "active":
            raise CommandError(f"subscriber {telegram_id} is {subscriber.state}")
        try:
            model = ModelCache(settings.model_dir).get(session)
        except ValueError:  # nothing to fit yet: the digest says so
            model = None
        day = schedule.local_date(subscriber, now)
    outgoing = deliveries.prepare(engine, model, [(subscriber, day)], now, settings, source="admin")
    if not outgoing:
        raise CommandError(f"{telegram_id} already has a digest for {day}")

    async def send() -> str:
        async with telegram.build_application(settings, Chat(engine, settings)).bot as bot:
            return await deliveries.send_now(engine, outgoing[0], telegram_send.telegram_transport(bot))

    result = asyncio.run(send())
    print(f"delivery {outgoing[0].delivery_id} to {telegram_id}: {result}")
    return 0 if result in ("sent", "empty") else 1


def cmd_subscribers(args: argparse.Namespace, settings: Settings) -> int:
    """List subscribers with their zone, time, size, frequency, state, last delivery and next digest."""
    from feedbot.clock import utcnow
    from feedbot.delivery import status

    with Session(_engine(settings)) as session:
        for line in status.subscriber_table(session, utcnow()):
            print(line)
    return 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    """Engagement per UTC day: digests, picks, 👍/👎 rates, active, new and stopped subscribers."""
    from feedbot import stats

    try:
        print("\n".join(stats.report(_engine(settings), args.days, args.plot)))
    except stats.PlotUnavailable as exc:
        raise CommandError(str(exc)) from None
    return 0


class CommandError(RuntimeError):
    """A command cannot do what was asked; the message says why."""


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Show the database, papers, dumps, the model, whether a worker is alive, stuck and uncertain
    deliveries, and why each subscriber has no digest today. --check: exit 1 when something is wrong."""
    from feedbot.clock import utcnow
    from feedbot.delivery import status
    from feedbot.store import papers

    engine = _engine(settings, migrated=False)
    revision = db.current_revision(engine)
    if args.check:
        if revision != db.head_revision():
            print(f"problem: schema at {revision or 'nothing'}, code expects {db.head_revision()}")
            return 1
        with Session(engine) as session:
            problems = status.health(session, utcnow())
        print("problem: " + "; ".join(problems) if problems else "ok: a worker is alive and no delivery is stuck")
        return 1 if problems else 0
    print(f"database: {settings.safe_database_url}")
    print(f"schema:   {revision or 'not migrated'} (code expects {db.head_revision()})")
    if revision is None:
        print("run `feedbot db upgrade` to create the tables")
        return 1
    print(f"inbox:    {settings.inbox}")
    with Session(engine) as session:  # read-only: takes no lock, so the worker never waits on it
        print(f"papers:   {papers.count_papers(session)}")
        for day, listed, first in papers.papers_per_date(session):
            print(f"  {day.isoformat()}: {listed} listed, {first} new")
        summaries = papers.dump_summaries(session)
        print(f"dumps:    {sum(s.count for s in summaries)}")
        for summary in summaries:
            print(f"  {summary.status}: {summary.count} (last: {summary.last_name})")
            if summary.status == "failed" and summary.last_error:
                print(f"    last error: {summary.last_error}")
        now = utcnow()
        from feedbot.library import jobs

        for line in [*status.worker_report(session, now), *status.delivery_report(session, now),
                     *jobs.status_lines(session)]:
            print(line)
    from feedbot.ranking import textmodel

    model = textmodel.load_latest(settings.model_dir)
    if model is None:
        print("model:    not fitted yet (fitted after the first ingest, or `feedbot model refit`)")
    else:
        print(f"model:    {len(model.paper_ids)} papers, {model.vocabulary_size} terms, "
              f"fitted {model.fitted_at:%Y-%m-%d %H:%M} UTC in {model.fit_seconds:.1f} s")
    return 0


def cmd_papers(args: argparse.Namespace, settings: Settings) -> int:
    """List papers: those listed on --date, or matching --search, newest first."""
    from feedbot.store import papers

    engine = _engine(settings)
    with Session(engine) as session:
        if args.date:
            rows = papers.papers_listed_on(session, args.date, args.limit)
            if args.search:
                rows = [p for p in rows if papers.matches(args.search, f"{p.title}\n{p.abstract}\n{p.authors or ''}")]
        else:
            rows = papers.search_papers(session, args.search or "", args.limit)
        for paper in rows:
            print(f"{paper.id:>6}  {paper.first_listed.isoformat()}  {paper.title}")
        print(f"({len(rows)} papers)")
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import a subscriber's library (BibTeX, RIS, CSL-JSON or ids; or Zotero with ZOTERO_API_KEY) as their 👍."""
    from feedbot.library import jobs

    engine, key = _engine(settings), os.environ.get("ZOTERO_API_KEY", "").strip()
    if args.zotero and not key:
        raise CommandError("--zotero needs the library's key in ZOTERO_API_KEY")
    if bool(args.zotero) == bool(args.files):
        raise CommandError("name library FILEs or --zotero ZOTERO_USER_ID (one of them)")
    try:
        reports = [jobs.import_zotero(engine, settings, args.user, args.zotero, key)] if args.zotero else \
            [jobs.import_path(engine, settings, args.user, path) for path in args.files]
    except jobs.LibraryError as exc:  # no such subscriber, or an import of theirs is running
        raise CommandError(str(exc)) from None
    print("\n".join(line for report in reports for line in report.lines(shown=None)))
    return 1 if any(not report.ok for report in reports) else 0


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2026-03-11, got {text!r}") from None


def _positive(text: str) -> int:
    value = whole_number(text, 1)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _stats_days(text: str) -> int:
    value = whole_number(text, 1, 366)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a number of days from 1 to 366, got {text!r}")
    return value


MAX_USER_ID = 2**63 - 1  # the telegram_id column's range: larger ids would overflow the database


def _user_id(text: str) -> int:
    digits = text.strip()  # Telegram ids reach 2**52, past whole_number's cap for typed counts
    value = int(digits) if digits.isdecimal() and len(digits) <= 19 else 0
    if not 1 <= value <= MAX_USER_ID:
        raise argparse.ArgumentTypeError(f"expected a Telegram user id (a positive whole number), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedbot",
        description="feedbot: daily research-paper digests on Telegram that learn from 👍/👎.",
        epilog="Configuration comes from environment variables; see README.md.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Command, parent=commands, **kwargs) -> argparse.ArgumentParser:
        doc = (handler.__doc__ or "").strip()
        sub = parent.add_parser(name, help=doc, description=doc, **kwargs)
        sub.set_defaults(handler=handler)
        return sub

    database = commands.add_parser("db", help="Database migrations.", description="Database migrations.")
    db_commands = database.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    add("upgrade", cmd_db_upgrade, db_commands).add_argument(
        "revision", nargs="?", default="head", help="target revision (default: head)")
    add("downgrade", cmd_db_downgrade, db_commands).add_argument(
        "revision", help="target revision, or `base` to drop everything")

    ingest = add("ingest", cmd_ingest)
    ingest.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="dump files or folders")
    ingest.add_argument("--date", type=_date, help="the dumps' timestamp, to infer the year "
                        "(default: each file's modification date)")

    fetch = commands.add_parser("fetch", help="Fetch papers from a built-in source (see README, Sources).",
                                description="Fetch papers from a built-in source and store them like a dump.")
    sources = fetch.add_subparsers(dest="source", required=True, metavar="SOURCE")
    hf = add("hf", cmd_fetch, sources)
    hf.add_argument("--date", type=_date, help="the daily papers of this date (default: the latest page)")
    arxiv = add("arxiv", cmd_fetch, sources)
    arxiv.add_argument("--category", action="append", required=True, metavar="CAT",
                       help="an arXiv category such as cs.LG (repeat for more)")
    arxiv.add_argument("--max", type=_positive, default=200, help="at most N newest papers (default 200)")

    status = add("status", cmd_status)
    status.add_argument("--check", action="store_true",
                        help="print one line and exit 1 when no worker was seen for 3 minutes or deliveries are stuck")

    model = commands.add_parser("model", help="The TF-IDF text model.", description="The TF-IDF text model.")
    model_commands = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    add("refit", cmd_model_refit, model_commands)

    chat = add("chat", cmd_chat)
    chat.add_argument("--user", type=_user_id, default=1, metavar="ID", help="the local subscriber's id (default 1)")

    add("worker", cmd_worker)

    digest = add("digest", cmd_digest)
    mode = digest.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="show who is due and their picks; write nothing")
    mode.add_argument("--send", action="store_true", help="send now, recorded like a scheduled digest")
    digest.add_argument("--user", type=_user_id, metavar="ID", help="only this subscriber (Telegram user id)")

    add("subscribers", cmd_subscribers)

    stats = add("stats", cmd_stats)
    stats.add_argument("--days", type=_stats_days, default=30, help="the last N UTC days, up to 366 (default 30)")
    stats.add_argument("--plot", type=Path, metavar="FILE.png", help="also draw the 👍 rate and active subscribers "
                       "(needs the plot extra: matplotlib)")

    rank = add("rank", cmd_rank)
    rank.add_argument("--user", type=_user_id, required=True, metavar="ID", help="the subscriber's Telegram user id")
    rank.add_argument("--date", type=_date, help="rank as on this date (default: today)")
    rank.add_argument("--limit", type=_positive, help="number of picks (default: the subscriber's digest size)")

    library = add("import", cmd_import)
    library.add_argument("files", nargs="*", type=Path, metavar="FILE", help=".bib, .ris, CSL-JSON or a list of ids")
    library.add_argument("--user", type=_user_id, required=True, metavar="ID", help="the subscriber's Telegram user id")
    library.add_argument("--zotero", metavar="ZOTERO_USER_ID", help="read this Zotero user library instead")

    papers = add("papers", cmd_papers)
    papers.add_argument("--date", type=_date, help="papers listed on this date (YYYY-MM-DD)")
    papers.add_argument("--search", help="words that must all appear in title or abstract")
    papers.add_argument("--limit", type=_positive, default=20, help="at most N papers (default 20)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"feedbot: configuration error: {exc}", file=sys.stderr)
        return 2
    if "FEEDBOT_LOG_LEVEL" not in os.environ and args.command not in QUIET_EXEMPT:
        settings = dataclasses.replace(settings, log_level="WARNING")  # admin output stays readable
    setup_logging(settings)
    try:
        return args.handler(args, settings)
    except (db.SchemaError, CommandError) as exc:
        print(f"feedbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
