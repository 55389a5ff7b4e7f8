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

from feedbot import db
from feedbot.config import ConfigError, Settings, load_settings, setup_logging

QUIET_EXEMPT = ("worker",)
Command = Callable[[argparse.Namespace, Settings], int]


def _engine(settings: Settings, migrated: bool = True) -> Engine:
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
    from feedbot import ingest

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


def _refit(engine: Engine, settings: Settings, force: bool = False) -> None:
    from feedbot import textmodel

    with Session(engine) as session:
        model, fitted = textmodel.ensure(session, settings.model_dir, force=force)
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
    from feedbot import subscribers

    subscriber = subscribers.get(session, telegram_id)
    if subscriber is None:
        raise CommandError(f"no subscriber with Telegram user id {telegram_id}")
    return subscriber


def cmd_rank(args: argparse.Namespace, settings: Settings) -> int:
    """Print a subscriber's picks with scores and reasons; sends and records nothing."""
    from feedbot import recommend, textmodel
    from feedbot.clock import utcnow

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

    from feedbot.chat import Chat, User
    from feedbot.console import Console

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


class CommandError(RuntimeError):
    """A command cannot do what was asked; the message says why."""


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Show papers per listing date, dumps by status, the database and its schema revision."""
    from feedbot import papers

    engine = _engine(settings, migrated=False)
    revision = db.current_revision(engine)
    print(f"database: {settings.safe_database_url}")
    print(f"schema:   {revision or 'not migrated'} (code expects {db.head_revision()})")
    if revision is None:
        print("run `feedbot db upgrade` to create the tables")
        return 1
    print(f"inbox:    {settings.inbox}")
    with Session(engine) as session:
        print(f"papers:   {papers.count_papers(session)}")
        for day, listed, first in papers.papers_per_date(session):
            print(f"  {day.isoformat()}: {listed} listed, {first} new")
        summaries = papers.dump_summaries(session)
        print(f"dumps:    {sum(s.count for s in summaries)}")
        for summary in summaries:
            print(f"  {summary.status}: {summary.count} (last: {summary.last_name})")
            if summary.status == "failed" and summary.last_error:
                print(f"    last error: {summary.last_error}")
    from feedbot import textmodel

    model = textmodel.load_latest(settings.model_dir)
    if model is None:
        print("model:    not fitted yet (fitted after the first ingest, or `feedbot model refit`)")
    else:
        print(f"model:    {len(model.paper_ids)} papers, {model.vocabulary_size} terms, "
              f"fitted {model.fitted_at:%Y-%m-%d %H:%M} UTC in {model.fit_seconds:.1f} s")
    return 0


def cmd_papers(args: argparse.Namespace, settings: Settings) -> int:
    """List papers: those listed on --date, or matching --search, newest first."""
    from feedbot import papers

    engine = _engine(settings)
    with Session(engine) as session:
        if args.date:
            rows = papers.papers_listed_on(session, args.date, args.limit)
            if args.search:
                words = args.search.casefold().split()
                rows = [p for p in rows if all(w in (p.title + " " + p.abstract).casefold() for w in words)]
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
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


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

    add("status", cmd_status)

    model = commands.add_parser("model", help="The TF-IDF text model.", description="The TF-IDF text model.")
    model_commands = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    add("refit", cmd_model_refit, model_commands)

    chat = add("chat", cmd_chat)
    chat.add_argument("--user", type=int, default=1, metavar="ID", help="the local subscriber's id (default 1)")

    add("worker", cmd_worker)

    rank = add("rank", cmd_rank)
    rank.add_argument("--user", type=int, required=True, metavar="ID", help="the subscriber's Telegram user id")
    rank.add_argument("--date", type=_date, help="rank as on this date (default: today)")
    rank.add_argument("--limit", type=_positive, help="number of picks (default: the subscriber's digest size)")

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
