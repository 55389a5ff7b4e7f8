"""Every /command, declared once: its name, its line in /help and Telegram's menu, and the function
that answers it. The conversation dispatches from this table, the Telegram adapter registers its
handlers from it, the worker sets the menu from `menu()`, and /help lists it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from feedbot.chat import interests, library, onboarding, settings
from feedbot.delivery.messages import Reply, escape

if TYPE_CHECKING:
    from feedbot.chat.conversation import Turn

Handler = Callable[["Turn", str], list[Reply]]


@dataclass(frozen=True)
class Command:
    name: str
    help: str  # the line in /help and the menu; "" keeps the command out of both
    handler: Handler | None  # (turn, stripped args), in one write transaction; None: /digest and /import (jobs)
    anyone: bool = False  # answers before /start too


def help_text(turn: Turn, args: str) -> list[Reply]:
    lines = "\n".join(f"/{name} — {escape(text)}" for name, text in menu())
    return [Reply("<b>feedbot</b> sends you the new papers you're most likely to want, and learns "
                  f"from your 👍/👎.\n\n{lines}")]


COMMANDS: list[Command] = [
    Command("start", "subscribe and set up", onboarding.start, anyone=True),
    Command("help", "what I can do", help_text, anyone=True),
    Command("digest", "today's picks now", None),  # ranks before it writes, so Chat.digest runs it
    Command("interests", "show or change your interests", interests.interests),
    Command("settings", "delivery time, size and frequency", settings.show),
    Command("time", "delivery time, e.g. /time 07:30", settings.time),
    Command("timezone", "your time zone, e.g. /timezone Europe/Berlin", settings.timezone),
    Command("size", "picks per digest, 1 to 20", settings.size),
    Command("frequency", "daily, weekdays or weekly", settings.frequency),
    Command("history", "past digests and your votes", library.history),
    Command("liked", "papers you liked", library.liked),
    Command("search", "find papers, e.g. /search diffusion", library.search),
    Command("export", "your liked papers as BibTeX", library.export),
    Command("import", "your library (.bib, .ris, ids, Zotero) as your profile", None),  # a job: Chat.command
    Command("mute", "never show papers with a word", interests.mute),
    Command("unmute", "show them again", interests.unmute),
    Command("pause", "pause digests, e.g. /pause 14", settings.pause),
    Command("resume", "restart paused digests", settings.resume),
    Command("status", "when your next digest comes", settings.status),
    Command("stop", "unsubscribe (your data is kept)", settings.stop),
    Command("delete", "erase all your data", settings.delete),
    Command("skip", "", onboarding.skip),  # answers the onboarding questions; not in the menu
]
_BY_NAME = {c.name: c for c in COMMANDS}


def find(name: str) -> Command | None:
    return _BY_NAME.get(name)


def menu() -> list[tuple[str, str]]:
    """(name, help) of the commands shown in /help and Telegram's command menu, in order."""
    return [(c.name, c.help) for c in COMMANDS if c.help]


def names() -> list[str]:
    """Every command name, hidden ones too: what the Telegram adapter routes to the conversation."""
    return [c.name for c in COMMANDS]


def split(text: str) -> tuple[str, str]:
    """A typed command line, `/name args`, as (name, args)."""
    name, _, args = text[1:].partition(" ")
    return name, args
