"""Taps on the same vote button released together toggle one after the other, on both databases."""

from __future__ import annotations

import threading

from sqlalchemy import select
from sqlalchemy.orm import Session

from feedbot.chat.conversation import User
from feedbot.store.models import Vote

ALICE = User(111, 111, "Alice")


def _digest_buttons(chat) -> list[list]:
    chat.command(ALICE, "start")
    chat.command(ALICE, "skip")
    chat.text(ALICE, "UTC")
    replies = chat.command(ALICE, "digest")
    return next(r.keyboard for r in replies if r.keyboard)


def test_simultaneous_taps_toggle_in_turn(chat, seeded):
    buttons = _digest_buttons(chat)
    down = buttons[0][1].data
    paper_id = int(down.split(":")[1])
    for taps in (2, 3, 4):
        before = _vote(seeded, paper_id)
        barrier = threading.Barrier(taps)
        answers: list[str] = []

        def tap(barrier: threading.Barrier = barrier, answers: list[str] = answers) -> None:
            barrier.wait()
            answers.append(chat.button(ALICE, down, buttons).notice)

        threads = [threading.Thread(target=tap) for _ in range(taps)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        # Each tap flips the vote: n taps from "no vote" alternate saved / cleared, whatever the order.
        expected_saved = (taps + 1) // 2 if before is None else taps // 2
        assert answers.count("Saved 👎") == expected_saved, answers
        assert answers.count("Vote cleared") == taps - expected_saved, answers
        after = _vote(seeded, paper_id)
        assert after == (-1 if (before is None) == (taps % 2 == 1) else None)


def _vote(engine, paper_id: int) -> int | None:
    with Session(engine) as session:
        return session.scalar(select(Vote.value).where(Vote.paper_id == paper_id))
