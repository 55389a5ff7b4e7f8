"""`feedbot chat`: the Telegram conversation in a terminal, for one local subscriber.

Type commands as in Telegram (/start, /digest, …); buttons appear as numbered choices
[1] [2] … and you press one by typing its number. Works with piped stdin, so a session can be
scripted: each input line is echoed after a `> ` so a transcript reads like the chat.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from feedbot.chat import Chat, User
from feedbot.messages import Button, Reply, plain

EXIT_WORDS = {"quit", "exit", "/quit", "/exit"}


class _Keyboard:
    """A message's buttons and the numbers they answer to; an edited keyboard keeps its numbers."""

    def __init__(self, rows: list[list[Button]], numbers: list[list[int]]) -> None:
        self.rows, self.numbers = rows, numbers


class Console:
    def __init__(self, chat: Chat, user: User, out: TextIO = sys.stdout) -> None:
        self.chat, self.user, self.out = chat, user, out
        self.choices: dict[int, tuple[_Keyboard, int, int]] = {}
        self.next_choice = 1

    def show(self, replies: Iterable[Reply]) -> None:
        replies = list(replies)
        for reply in replies:
            self.out.write(plain(reply.text).strip() + "\n")
            if reply.document is not None:
                name, content = reply.document
                self.out.write(f"--- attached file {name} ({len(content)} bytes) ---\n")
                self.out.write(content.decode(errors="replace").rstrip() + "\n---\n")
            self.show_keyboard(reply.keyboard)
            self.out.write("\n")
        if replies and replies[0].delivery is not None:  # a claimed digest, now in front of the user
            from feedbot.deliveries import shown_in_console

            shown_in_console(self.chat.engine, replies[0].delivery, len(replies), self.chat.clock())

    def show_keyboard(self, rows: list[list[Button]], keyboard: _Keyboard | None = None) -> None:
        shape = [len(row) for row in rows]
        if keyboard is None or shape != [len(row) for row in keyboard.numbers]:
            numbers = []
            for row in rows:
                numbers.append(list(range(self.next_choice, self.next_choice + len(row))))
                self.next_choice += len(row)
            keyboard = _Keyboard(rows, numbers) if keyboard is None else keyboard
            keyboard.numbers = numbers
        keyboard.rows = rows
        for r, (row, numbers) in enumerate(zip(rows, keyboard.numbers, strict=True)):
            for c, number in enumerate(numbers):
                self.choices[number] = (keyboard, r, c)
            self.out.write("  " + "   ".join(f"[{n}] {b.label}" for n, b in zip(numbers, row, strict=True)) + "\n")

    def handle(self, line: str) -> bool:
        """One input line; False when the user wants to leave."""
        line = line.strip()
        if not line:
            return True
        if line.casefold() in EXIT_WORDS:
            return False
        if line.isdigit():
            choice = self.choices.get(int(line))
            if choice is None:
                self.out.write(f"There is no choice [{line}].\n\n")
                return True
            keyboard, row, column = choice
            answer = self.chat.button(self.user, keyboard.rows[row][column].data, keyboard.rows)
            if answer.notice:
                self.out.write(f"({answer.notice})\n")
            if answer.text is not None:
                self.out.write(plain(answer.text).strip() + "\n")
            if answer.keyboard:
                self.show_keyboard(answer.keyboard, keyboard)
            elif answer.keyboard == []:
                for number in [n for numbers in keyboard.numbers for n in numbers]:
                    self.choices.pop(number, None)
            self.out.write("\n")
            self.show(answer.replies)
            return True
        if line.startswith("/"):
            name, _, args = line[1:].partition(" ")
            self.show(self.chat.command(self.user, name, args))
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
