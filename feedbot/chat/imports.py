"""/import and library files sent to the bot: a subscriber's papers become their profile.

An import is a job (feedbot.library.jobs), not a write transaction around a chat turn: it runs in
the adapter's worker thread while the chat keeps answering, shows its progress through `show`
(Telegram edits one message in place; the console prints lines), and answers with the counts
and every skipped entry. Telegram's adapter deletes a message that held a Zotero key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from feedbot.delivery.messages import Reply, escape, split_items
from feedbot.library import jobs
from feedbot.library.parse import LibraryError
from feedbot.store import subscribers
from feedbot.store.db import transaction

if TYPE_CHECKING:
    from feedbot.chat.conversation import Chat, User

Show = Callable[[str], None]
USAGE = ("<b>Import your library</b>: your papers become your profile at once.\n"
         "• send me a file: BibTeX (.bib), RIS (.ris) or CSL-JSON, as Zotero, Mendeley or JabRef export it\n"
         "• /import 2403.01234 10.1145/3292500.3330701 — arXiv ids, arXiv or DOI links, DOIs\n"
         "• /import zotero USER_ID API_KEY — your whole Zotero library, read once; the key is not kept "
         "and I delete that message\n"
         "• /import undo — take back the last import")
PROGRESS_EVERY = 1.0  # seconds between progress edits


class Meter:
    """Progress for `show`: the first and the last figure always, and at most one a second between."""

    def __init__(self, show: Show, every: float = PROGRESS_EVERY, clock: Callable[[], float] = time.monotonic):
        self.show, self.every, self.clock = show, every, clock
        self.last: float | None = None
        self.shown: tuple[int, int] | None = None

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if (done, total) == self.shown or (self.last is not None and done < total and now - self.last < self.every):
            return
        self.last, self.shown = now, (done, total)
        self.show(f"Reading your library… {done:,} / {total:,}")


def is_job(args: str) -> bool:
    """`/import …` that reads a library (minutes), not the usage or `/import undo` (at once)."""
    words = args.split()
    return bool(words) and not (len(words) == 1 and words[0].casefold() == "undo")


def holds_secret(args: str) -> bool:
    """`/import zotero ID KEY`: the message carries a key, so the bot deletes it."""
    words = args.split()
    return len(words) >= 2 and words[0].casefold() == "zotero"


def command(chat: Chat, user: User, args: str, show: Show | None = None, paths: bool = False) -> list[Reply]:
    """/import …; `paths` lets the console import a file by its path (never Telegram)."""
    words = args.split()
    if not words:
        return [Reply(USAGE)]
    kind = words[0].casefold()
    if kind == "undo" and len(words) == 1:
        return undo(chat, user)
    if kind == "zotero":
        if len(words) != 3:
            return [Reply("Send /import zotero USER_ID API_KEY: the user id and a read-only key from "
                          "zotero.org/settings/keys.")]
        return _run(chat, user, show, jobs.import_zotero, words[1], words[2])
    path = local_file(args) if paths else None
    if path is not None:
        return _run(chat, user, show, jobs.import_path, path)
    return _run(chat, user, show, jobs.import_text, args)


LIBRARY_SUFFIXES = (".bib", ".bibtex", ".ris", ".json", ".txt")


def local_file(args: str) -> Path | None:
    """The console's `/import PATH` (spaces allowed): a path that exists, or one named like a
    library file (so a missing one is answered as missing); None for ids and anything else."""
    try:
        path = Path(args).expanduser()
        exists = path.exists()
    except (OSError, ValueError, RuntimeError):  # a name too long, a NUL, `~nobody`: not a path
        return None
    return path if exists or path.suffix.casefold() in LIBRARY_SUFFIXES else None


def document(chat: Chat, user: User, name: str, content: bytes, show: Show | None = None) -> list[Reply]:
    """A library file sent (Telegram)."""
    return _run(chat, user, show, jobs.import_bytes, (name or "your file")[:120], content)


def _run(chat: Chat, user: User, show: Show | None, job: Callable[..., jobs.ImportReport], *args) -> list[Reply]:
    from feedbot.chat.conversation import NOT_SUBSCRIBED

    with transaction(chat.engine) as session:
        if subscribers.get(session, user.telegram_id) is None:
            return [Reply(NOT_SUBSCRIBED)]
    try:
        report = job(chat.engine, chat.settings, user.telegram_id, *args, progress=Meter(show) if show else None,
                     now=chat.clock())
    except LibraryError as exc:  # another import is running
        return [Reply(escape(str(exc)))]
    head, *rest = report.lines()
    if report.ok and report.added:
        head += " Your next digest follows it; /import undo takes it back."
    replies = split_items(escape(head), [(escape(line), []) for line in rest], separator="\n")
    replies[-1].document = report.skipped_file()
    return replies


def undo(chat: Chat, user: User) -> list[Reply]:
    from feedbot.chat.conversation import NOT_SUBSCRIBED

    with transaction(chat.engine) as session:
        subscriber = subscribers.get(session, user.telegram_id)
        if subscriber is None:
            return [Reply(NOT_SUBSCRIBED)]
        last, removed = jobs.undo_last(session, subscriber.id)
    if last is None:
        return [Reply("There is no import to undo.")]
    return [Reply(escape(f"Took back the import of {last.source}: {removed:,} papers left your library."))]
