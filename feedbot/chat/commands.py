"""Every /command, declared once: its name, its line in /help and Telegram's menu, the function
that answers it and whether it writes. The conversation dispatches from this table, the worker sets
the menu from `menu()`, /help lists it, and both adapters read a typed line with `parse`.
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


def always(args: str) -> bool:
    return True


def never(args: str) -> bool:
    return False


def with_args(args: str) -> bool:
    """Writes only when given arguments (`/interests` lists, `/interests add …` adds)."""
    return bool(args)


@dataclass(frozen=True)
class Command:
    name: str
    help: str  # the line in /help and the menu; "" keeps the command out of both
    handler: Handler | None  # (turn, stripped args), in one transaction; None: /digest and /import (jobs)
    writes: Callable[[str], bool] = always  # False: a read-only transaction, which never waits for writers
    anyone: bool = False  # answers before /start too


def help_text(turn: Turn, args: str) -> list[Reply]:
    lines = "\n".join(f"/{name} — {escape(text)}" for name, text in menu())
    return [Reply("<b>feedbot</b> sends you the new papers you're most likely to want, and learns "
                  f"from your 👍/👎.\n\n{lines}")]


COMMANDS: list[Command] = [
    Command("start", "subscribe and set up", onboarding.start, anyone=True),
    Command("help", "what I can do", help_text, never, anyone=True),
    Command("digest", "today's picks now", None),  # ranks before it writes, so Chat.digest runs it
    Command("interests", "show or change your interests", interests.interests, with_args),
    Command("settings", "delivery time, size and frequency", settings.show, never),
    Command("time", "delivery time, e.g. /time 07:30", settings.time, with_args),
    Command("timezone", "your time zone, e.g. /timezone Europe/Berlin", settings.timezone, with_args),
    Command("size", "picks per digest, 1 to 20", settings.size, with_args),
    Command("frequency", "daily, weekdays or weekly", settings.frequency, with_args),
    Command("history", "past digests and your votes", library.history, never),
    Command("liked", "papers you liked", library.liked, never),
    Command("search", "find papers, e.g. /search diffusion", library.search, never),
    Command("export", "your liked papers as BibTeX", library.export, never),
    Command("import", "your library (.bib, .ris, ids, Zotero) as your profile", None),  # a job: Chat.command
    Command("mute", "never show papers with a word", interests.mute, with_args),
    Command("unmute", "show them again", interests.unmute, with_args),
    Command("recap", "the Sunday recap of your week: /recap on or off", settings.recap, with_args),
    Command("pause", "pause digests, e.g. /pause 14", settings.pause),
    Command("resume", "restart paused digests", settings.resume),
    Command("status", "when your next digest comes", settings.status, never),
    Command("stop", "unsubscribe (your data is kept)", settings.stop),
    Command("delete", "erase all your data", settings.delete, never),  # the button deletes
    Command("skip", "", onboarding.skip),  # answers the onboarding questions; not in the menu
]
_BY_NAME = {c.name: c for c in COMMANDS}


def find(name: str) -> Command | None:
    return _BY_NAME.get(name)


def menu() -> list[tuple[str, str]]:
    """(name, help) of the commands shown in /help and Telegram's command menu, in order."""
    return [(c.name, c.help) for c in COMMANDS if c.help]


def names() -> list[str]:
    """Every command name, hidden ones too."""
    return [c.name for c in COMMANDS]


@dataclass(frozen=True)
class Typed:
    """A typed command line: `/name@bot args`."""

    name: str
    bot: str  # the bot it is addressed to, "" when none (`/stop@OtherBot` in a group is not ours)
    args: str

    def for_bot(self, username: str) -> bool:
        """Whether feedbot, called `username`, should answer: unaddressed, or addressed to it."""
        return not self.bot or self.bot.casefold() == username.casefold()


def parse(text: str) -> Typed:
    """`/name args` as Telegram reads it: the arguments start after the first whitespace of any
    kind (a space, newline, tab or no-break space), so `/time\n07:30` is `/time 07:30`."""
    head, *rest = text[1:].split(maxsplit=1) or [""]
    name, _, bot = head.partition("@")
    return Typed(name, bot, rest[0].strip() if rest else "")
