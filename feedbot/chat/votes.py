"""👍/👎 buttons, under digests, starters and /search results: each press is stored before it is
acknowledged, and the keyboard is redrawn with every pick's current vote."""

from __future__ import annotations

from typing import TYPE_CHECKING

from feedbot.delivery.messages import Answer, Button, numbered_papers, vote_keyboard
from feedbot.numbers import whole_number
from feedbot.store import subscribers
from feedbot.store.subscribers import UserError

if TYPE_CHECKING:
    from feedbot.chat.conversation import Turn

MAX_ROW_ID = 2**31 - 1  # the integer primary keys' range on PostgreSQL


def vote_press(turn: Turn, data: str, keyboard: list[list[Button]]) -> Answer:
    """`PAPER_ID:+` or `PAPER_ID:-` pressed on a message showing `keyboard`."""
    paper, _, sign = data.partition(":")
    paper_id = whole_number(paper, 1, MAX_ROW_ID)  # ids past the column's range were never shown
    if paper_id is None:
        raise UserError("That paper was not shown to you, so I can't record a vote for it.")
    result = subscribers.vote(turn.session, turn.subscriber, paper_id, 1 if sign == "+" else -1, turn.chat.clock())
    turn.session.flush()
    numbered = numbered_papers(keyboard) or [(1, result.paper_id)]
    votes = subscribers.votes_on(turn.session, turn.subscriber, [pid for _, pid in numbered])
    notice = {1: "Saved 👍", -1: "Saved 👎", 0: "Vote cleared"}[result.value]
    return Answer(notice, keyboard=vote_keyboard(numbered, votes))
