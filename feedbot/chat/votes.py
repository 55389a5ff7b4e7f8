"""👍/👎 buttons, under digests, starters and /search results: each press is stored before it is
acknowledged, and the keyboard is redrawn with every pick's current vote. A vote needs the paper
to have been put in front of the subscriber: recorded as shown, or on the very message pressed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from feedbot.delivery.messages import Answer, Button, numbered_papers, vote_keyboard
from feedbot.numbers import whole_number
from feedbot.store import subscribers
from feedbot.store.models import Paper
from feedbot.store.subscribers import UserError

if TYPE_CHECKING:
    from feedbot.chat.conversation import Turn

MAX_ROW_ID = 2**31 - 1  # the integer primary keys' range on PostgreSQL


def pressed(turn: Turn, data: str, numbered: list[tuple[int, int]]) -> tuple[int, int]:
    """(paper id, +1 or -1) of `PAPER_ID:+` or `PAPER_ID:-` pressed on a message numbering
    `numbered`; a paper that message shows is recorded as shown (a /search result)."""
    paper, _, sign = data.partition(":")
    paper_id = whole_number(paper, 1, MAX_ROW_ID)  # ids past the column's range were never shown
    if paper_id is None:
        raise UserError("That paper was not shown to you, so I can't record a vote for it.")
    on_message = any(pid == paper_id for _, pid in numbered) and turn.session.get(Paper, paper_id) is not None
    if on_message and not subscribers.was_shown(turn.session, turn.subscriber, paper_id):
        # A /search result: the pressed message shows it (Telegram hands back our own message), but
        # /search records nothing. Rated, it is seen: no digest picks it for them later.
        subscribers.record_shown(turn.session, turn.subscriber, [(paper_id, 0.0, "search")], "search",
                                 now=turn.chat.clock())
    return paper_id, 1 if sign == "+" else -1


def vote_press(turn: Turn, data: str, keyboard: list[list[Button]]) -> Answer:
    """`PAPER_ID:+` or `PAPER_ID:-` pressed on a message showing `keyboard`."""
    numbered = numbered_papers(keyboard)
    paper_id, value = pressed(turn, data, numbered)
    result = subscribers.vote(turn.session, turn.subscriber, paper_id, value, turn.chat.clock())
    turn.session.flush()
    numbered = numbered or [(1, result.paper_id)]
    votes = subscribers.votes_on(turn.session, turn.subscriber, [pid for _, pid in numbered])
    notice = {1: "Saved 👍", -1: "Saved 👎", 0: "Vote cleared"}[result.value]
    return Answer(notice, keyboard=vote_keyboard(numbered, votes))
