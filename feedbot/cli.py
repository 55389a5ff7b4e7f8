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

from feedbot.clock import utcnow
from feedbot.config import ConfigError, Settings, load_settings, make_data_dir, setup_logging
from feedbot.numbers import user_id, whole_number
from feedbot.store import db

QUIET_EXEMPT = ("worker",)
Command = Callable[[argparse.Namespace, Settings], int]


class CommandError(RuntimeError):
    """A command cannot do what was asked; the message says why."""


def _engine(settings: Settings, migrated: bool = True) -> Engine:
    try:
        make_data_dir(settings)
        engine = db.make_engine(settings.database_url)
    except OSError as exc:  # the SQLite file's folder cannot be made
        raise CommandError(f"cannot use the database {settings.safe_database_url}: {exc}") from None
    if migrated:
        db.require_schema(engine)
    return engine


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    """Migrate the database to the newest schema (safe to run again)."""
    engine = _engine(settings, migrated=False)  # a database that cannot be used says so clearly
    db.upgrade(settings.database_url, args.revision)
    print(f"database {settings.safe_database_url} at revision {db.current_revision(engine)}")
    return 0


def cmd_db_downgrade(args: argparse.Namespace, settings: Settings) -> int:
    """Undo migrations down to REVISION (`base` removes every table)."""
    _engine(settings, migrated=False)  # a database that cannot be used says so clearly
    db.downgrade(settings.database_url, args.revision)
    print(f"database {settings.safe_database_url} downgraded to {args.revision}")
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest dump files or folders; with no PATH, sweep the inbox (moving files to done/ or failed/)."""
    from feedbot.progress import bar
    from feedbot.sources import ingest

    if args.date and not args.paths:
        raise CommandError("--date needs a PATH: the inbox sweep dates each file by when it was saved")
    engine = _engine(settings)
    if args.paths:
        reports = ingest.ingest_paths(engine, args.paths, stamp=args.date, progress=bar())
    else:
        print(f"sweeping inbox {settings.inbox}")
        reports = ingest.sweep_inbox(engine, settings.inbox, progress=bar())
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
    print(f"text model {'fitted' if fitted else 'up to date'}: {len(model.paper_ids)} papers, "
          f"{model.vocabulary_size} terms" + (f", {model.fit_seconds:.1f} s" if fitted else ""))


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
    from feedbot.delivery.preview import ranked

    now = utcnow()
    with Session(_engine(settings)) as session:  # read-only: ranking takes no lock
        subscriber = _subscriber(session, args.user)
        day, size = args.date or now.date(), args.limit or subscriber.digest_size
        digest = ranked(session, settings, subscriber, day, now, size)
    if not digest.picks:
        print(f"no picks for {args.user} on {digest.local_date.isoformat()}: {digest.empty_reason}")
        return 0
    print(f"picks for {args.user} from papers listed up to {digest.listed_on.isoformat()}:")
    for n, pick in enumerate(digest.picks, 1):
        print(f"{n:>2}. [{pick.score:+.3f}] #{pick.paper_id} {pick.paper.title}\n     {pick.why}")
    return 0


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    """Chat with feedbot in this terminal as one local subscriber (same database as the bot)."""
    import getpass

    from feedbot.chat.console import Console
    from feedbot.chat.conversation import Chat, User

    Console(Chat(_engine(settings), settings), User(args.user, args.user, getpass.getuser())).run()
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
    from feedbot.delivery import send_one, status

    engine, now = _engine(settings), utcnow()
    if args.send and args.user is None:
        raise CommandError("--send needs --user ID")
    with Session(engine, expire_on_commit=False) as session:  # read-only: a dry run writes nothing
        only = _subscriber(session, args.user) if args.user is not None else None
        if args.dry_run:
            print(*status.dry_run(session, settings, now, only), sep="\n")
            return 0
    if not settings.telegram_token:
        raise CommandError("TELEGRAM_BOT_TOKEN is not set: cannot send")
    from feedbot.chat import telegram
    from feedbot.chat.conversation import Chat

    bot = telegram.build_application(settings, Chat(engine, settings)).bot
    try:
        delivery_id, result = send_one.send_today(engine, settings, only, now, bot)
    except send_one.NotSent as exc:
        raise CommandError(str(exc)) from None
    print(f"delivery {delivery_id} to {args.user}: {result}")
    return 0 if result in ("sent", "empty") else 1


def cmd_subscribers(args: argparse.Namespace, settings: Settings) -> int:
    """List subscribers with their zone, time, size, frequency, state, last delivery and next digest."""
    from feedbot.delivery import status

    with Session(_engine(settings)) as session:
        print(*status.subscriber_table(session, utcnow()), sep="\n")
    return 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    """Engagement per UTC day: digests, picks, 👍/👎 rates, active, new and stopped subscribers."""
    from feedbot import stats

    try:
        print("\n".join(stats.report(_engine(settings), args.days, args.plot)))
    except stats.PlotUnavailable as exc:
        raise CommandError(str(exc)) from None
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


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Show the database, papers, dumps, the model, whether a worker is alive, stuck and uncertain
    deliveries, and why each subscriber has no digest today. --check: exit 1 when something is wrong."""
    from feedbot.delivery import inventory, recaps, status
    from feedbot.library import jobs

    engine = _engine(settings, migrated=False)
    try:
        db.require_schema(engine)  # an older (or newer) schema: the queries below would not match it
    except db.SchemaError as exc:
        print(f"problem: {exc}" if args.check else f"database: {settings.safe_database_url}\nschema:   {exc}")
        return 1
    with Session(engine) as session:  # read-only: takes no lock, so the worker never waits on it
        if args.check:
            problems = status.health(session, utcnow())
            print("problem: " + "; ".join(problems) if problems else "ok: a worker is alive and no delivery is stuck")
            return 1 if problems else 0
        print(f"database: {settings.safe_database_url}\nschema:   {db.current_revision(engine)}\n"
              f"inbox:    {settings.inbox}")
        now = utcnow()
        print(*inventory.papers_report(session), *status.worker_report(session, now),
              *status.delivery_report(session, now), *recaps.status_lines(session, now), *jobs.status_lines(session),
              inventory.model_report(settings.model_dir), sep="\n")
    return 0


def cmd_papers(args: argparse.Namespace, settings: Settings) -> int:
    """List papers: those listed on --date (in the page's order), or all, newest first; --search
    keeps those whose title, abstract or authors contain every word."""
    from feedbot.store import papers

    with Session(_engine(settings)) as session:
        if args.date:
            rows = papers.papers_listed_on(session, args.date, args.limit, args.search or "")
        else:
            rows = papers.search_papers(session, args.search or "", args.limit)
        for paper in rows:
            print(f"{paper.id:>6}  {paper.first_listed.isoformat()}  {paper.title}")
    print(f"({len(rows)} papers)")
    return 0


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2026-03-11, got {text!r}") from None


def _positive(text: str) -> int:
    if (value := whole_number(text, 1)) is None:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _stats_days(text: str) -> int:
    value = whole_number(text, 1, 366)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a number of days from 1 to 366, got {text!r}")
    return value


def _user_id(text: str) -> int:
    if (value := user_id(text)) is None:
        raise argparse.ArgumentTypeError(f"expected a Telegram user id (a positive whole number), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Every command, its arguments and help; each handler's docstring is its help text."""
    parser = argparse.ArgumentParser(
        prog="feedbot", description="feedbot: daily research-paper digests on Telegram that learn from 👍/👎.",
        epilog="Configuration comes from environment variables; see README.md.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def group(name: str, doc: str, dest: str) -> argparse._SubParsersAction:
        return commands.add_parser(name, help=doc, description=doc).add_subparsers(
            dest=dest, required=True, metavar=dest.split("_")[-1].upper())

    def add(name: str, handler: Command, parent=commands) -> argparse.ArgumentParser:
        doc = (handler.__doc__ or "").strip()
        sub = parent.add_parser(name, help=" ".join(doc.split()), description=doc)
        sub.set_defaults(handler=handler)
        return sub

    database = group("db", "Database migrations.", "db_action")
    add("upgrade", cmd_db_upgrade, database).add_argument(
        "revision", nargs="?", default="head", metavar="REV", help="target revision (default: head)")
    add("downgrade", cmd_db_downgrade, database).add_argument(
        "revision", metavar="REV", help="target revision, or `base` to drop everything")
    ingest = add("ingest", cmd_ingest)
    ingest.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="dump files or folders")
    ingest.add_argument("--date", type=_date, help="the dumps' timestamp, to infer the year "
                        "(default: each file's modification date)")
    sources = group("fetch", "Fetch papers from a built-in source and store them like a dump.", "source")
    add("hf", cmd_fetch, sources).add_argument(
        "--date", type=_date, help="the daily papers of this date (default: the latest page)")
    arxiv = add("arxiv", cmd_fetch, sources)
    arxiv.add_argument("--category", action="append", required=True, metavar="CAT",
                       help="an arXiv category such as cs.LG (repeat for more)")
    arxiv.add_argument("--max", type=_positive, default=200, help="at most N newest papers (default 200)")
    add("status", cmd_status).add_argument(
        "--check", action="store_true",
        help="print one line and exit 1 when no worker was seen for 3 minutes or deliveries are stuck")
    papers = add("papers", cmd_papers)
    papers.add_argument("--date", type=_date, help="papers listed on this date (YYYY-MM-DD)")
    papers.add_argument("--search", metavar="WORDS", help="words the title, abstract or authors must all contain")
    papers.add_argument("--limit", type=_positive, default=20, help="at most N papers (default 20)")
    add("refit", cmd_model_refit, group("model", "The TF-IDF text model.", "model_action"))
    rank = add("rank", cmd_rank)
    rank.add_argument("--user", type=_user_id, required=True, metavar="ID", help="the subscriber's Telegram user id")
    rank.add_argument("--date", type=_date, help="rank as on this date (default: today)")
    rank.add_argument("--limit", type=_positive, help="number of picks (default: the subscriber's digest size)")
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
    library = add("import", cmd_import)
    library.add_argument("files", nargs="*", type=Path, metavar="FILE", help=".bib, .ris, CSL-JSON or a list of ids")
    library.add_argument("--user", type=_user_id, required=True, metavar="ID", help="the subscriber's Telegram user id")
    library.add_argument("--zotero", metavar="ZOTERO_USER_ID", help="read this Zotero user library instead")
    add("chat", cmd_chat).add_argument(
        "--user", type=_user_id, default=1, metavar="ID", help="the local subscriber's id (default 1)")
    add("worker", cmd_worker)
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
    from alembic.util import CommandError as MigrationError
    from sqlalchemy.exc import OperationalError

    try:
        return args.handler(args, settings)
    except (db.SchemaError, CommandError, MigrationError) as exc:
        print(f"feedbot: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:  # unreachable server, unopenable file, wrong password: no traceback
        reason = str(exc.orig or exc).strip().splitlines()[0]
        print(f"feedbot: cannot use the database {settings.safe_database_url}: {reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`feedbot papers | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so exiting does not fail flushing
        return 1
    except OSError as exc:  # a folder or file feedbot needs cannot be read or written
        print(f"feedbot: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
