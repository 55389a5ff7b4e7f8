"""`feedbot chat`: the Telegram conversation in a terminal, for one local subscriber.

Type commands as in Telegram (/start, /digest, …); buttons appear as numbered choices
[1] [2] … and you press one by typing its number. Numbers always mean the newest buttons on
screen (the last answer's, numbered on across all its messages), so `1` after /digest is 👍 on
pick 1 even when the digest fills several messages; each answer's buttons also have a letter, and
`b3` still presses button 3 of answer b after newer ones appeared. Works with piped
stdin, so a session can be scripted: each input line is echoed after a `> ` so a transcript
reads like the chat.
"""

from __future__ import annotations

import re
import string
import sys
from collections.abc import Iterable
from typing import TextIO

from feedbot.chat import commands
from feedbot.chat.conversation import Chat, User
from feedbot.delivery.messages import Button, Reply, plain

NAME = "feedbot"  # the console's bot name: `/help@feedbot` is for it, `/stop@OtherBot` is not
EXIT_WORDS = {"quit", "exit", "/quit", "/exit"}
CHOICE = re.compile(r"^([a-z]{0,3})([0-9]{1,4})$")


def tag_name(index: int) -> str:
    """a, b, …, z, aa, ab, …: short names for keyboards in the order they appeared."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = string.ascii_lowercase[rest] + name
    return name


class Console:
    def __init__(self, chat: Chat, user: User, out: TextIO = sys.stdout) -> None:
        self.chat, self.user, self.out = chat, user, out
        self.keyboards: dict[str, list[list[list[Button]]]] = {}  # by tag: one answer's keyboards; last is newest
        self.shown = 0

    def show(self, replies: Iterable[Reply]) -> None:
        """Print one answer's messages; all their buttons are numbered on from 1 as one keyboard,
        so `1` after a digest split over several messages is 👍 on the first pick."""
        tag = None
        replies = list(replies)
        for reply in replies:
            self.out.write(plain(reply.text).strip() + "\n")
            if reply.document is not None:
                name, content = reply.document
                self.out.write(f"--- attached file {name} ({len(content)} bytes) ---\n")
                self.out.write(content.decode(errors="replace").rstrip() + "\n---\n")
            if any(reply.keyboard):
                if tag is None:
                    tag = tag_name(self.shown)
                    self.shown += 1
                    self.keyboards[tag] = []
                self.keyboards[tag].append(reply.keyboard)
                self.show_keyboard(tag, len(self.keyboards[tag]) - 1)
            self.out.write("\n")
        if replies and replies[0].delivery is not None:  # a claimed digest, now in front of the user
            from feedbot.delivery.deliveries import shown_in_console

            shown_in_console(self.chat.engine, replies[0].delivery, len(replies), self.chat.clock())

    def progress(self, text: str) -> None:
        """A long job's progress (/import), one line each."""
        self.out.write(f"({text})\n")
        self.out.flush()

    def show_keyboard(self, tag: str, part: int) -> None:
        """Print one message's buttons, numbered on from the earlier messages of the same answer,
        and make that answer's buttons the newest (an edited keyboard keeps its tag and numbers)."""
        self.keyboards[tag] = self.keyboards.pop(tag)
        number = sum(len(b) for rows in self.keyboards[tag][:part] for b in rows)
        first = number + 1
        for row in self.keyboards[tag][part]:
            labels = []
            for button in row:
                number += 1
                labels.append(f"[{number}] {button.label}")
            self.out.write("  " + "   ".join(labels) + "\n")
        self.out.write(f"  (type {first}–{number}; later {tag}{first}–{tag}{number} still press these)\n")

    def _find(self, line: str) -> tuple[str, int, Button] | None | str:
        """The keyboard tag, message part and button a choice names, None when it names none, or
        the line itself when it is not a choice at all (text to send)."""
        match = CHOICE.match(line.casefold())
        if not match:
            return line
        tag, number = match.group(1), int(match.group(2))
        if tag and tag not in self.keyboards:
            return line
        if not self.keyboards:
            return None
        tag = tag or next(reversed(self.keyboards))
        for part, rows in enumerate(self.keyboards[tag]):
            buttons = [b for row in rows for b in row]
            if 1 <= number <= len(buttons):
                return tag, part, buttons[number - 1]
            number -= len(buttons)
        return None

    def handle(self, line: str) -> bool:
        """One input line; False when the user wants to leave."""
        line = line.strip()
        if not line:
            return True
        if line.casefold() in EXIT_WORDS:
            return False
        found = self._find(line)
        if found is None:
            self.out.write(f"There is no choice [{line}].\n\n")
            return True
        if isinstance(found, tuple):
            tag, part, button = found
            answer = self.chat.button(self.user, button.data, self.keyboards[tag][part])
            if answer.notice:
                self.out.write(f"({answer.notice})\n")
            if answer.text is not None:
                self.out.write(plain(answer.text).strip() + "\n")
            if answer.keyboard:
                self.keyboards[tag][part] = answer.keyboard
                self.show_keyboard(tag, part)
            elif answer.keyboard == []:
                self.keyboards[tag][part] = []  # later parts keep their numbers
                if not any(self.keyboards[tag]):
                    self.keyboards.pop(tag)
            self.out.write("\n")
            self.show(answer.replies)
            return True
        if line.startswith("/"):
            typed = commands.parse(line)
            if not typed.for_bot(NAME):
                self.out.write(f"(that command is for @{typed.bot}, not for me)\n\n")
                return True
            self.show(self.chat.command(self.user, typed.name, typed.args, show=self.progress, paths=True))
        else:
            self.show(self.chat.text(self.user, line))
        return True

    def run(self, lines: TextIO = sys.stdin) -> None:
        interactive = lines.isatty()
        self.out.write("feedbot console chat: type /start to begin, /help for commands, "
                       "a number to press a button, quit to leave.\n\n")
        while True:
            if interactive:
                self.out.write("> ")
                self.out.flush()
            line = lines.readline()
            if not line:
                break
            if not interactive:
                self.out.write(f"> {line.rstrip()}\n")
            if not self.handle(line):
                break
            self.out.flush()
        self.out.write("bye\n")
