"""Rendering digests: one message, split only between picks past 4096 characters, HTML always valid."""

import re
from datetime import date

from feedbot.delivery.digests import Digest, render
from feedbot.delivery.messages import MAX_TEXT
from feedbot.ranking.recommend import Pick
from feedbot.store.models import Paper
from tests.fake_telegram import parse_html


def digest(picks: int, title_chars: int = 60) -> Digest:
    chosen = [
        Pick(Paper(id=1000 + n, title=f"<b>Paper {n}</b> & " + "x" * title_chars,
                   abstract="An abstract with <tags> & ampersands. " * 30),
             score=1.0 - n / 100, kind="liked", why=f"because you liked “<i>{n}</i>” · a, b, c")
        for n in range(picks)
    ]
    return Digest(1, date(2026, 3, 12), date(2026, 3, 12), chosen)


def test_a_normal_digest_is_one_message_with_a_row_per_pick():
    [message] = render(digest(5))
    assert len(message.keyboard) == 5
    assert [b.data for b in message.keyboard[0]] == ["v:1000:+", "v:1000:-"]
    plain = parse_html(message.text)  # raises if Telegram would refuse the entities
    assert "<b>Paper 0</b> & xxx" in plain and "1. " in plain and "5. " in plain


def test_a_long_digest_splits_between_picks_only():
    messages = render(digest(20, title_chars=400))
    assert len(messages) > 1
    assert sum(len(m.keyboard) for m in messages) == 20
    numbers = []
    for message in messages:
        plain = parse_html(message.text)
        assert len(plain.encode("utf-16-le")) // 2 <= MAX_TEXT  # as Telegram counts: the text, not its HTML
        picks_here = [int(m.group(1)) for m in re.finditer(r"^(\d+)\. ", plain, re.MULTILINE)]
        numbers += picks_here
        assert [int(row[0].label.rsplit(" ", 1)[1]) for row in message.keyboard] == picks_here
    assert numbers == list(range(1, 21))


def test_an_empty_day_says_why():
    empty = Digest(1, date(2026, 3, 12), None, [], "no papers have been listed yet")
    [message] = render(empty)
    assert "No papers for you today: no papers have been listed yet." in message.text
    assert message.keyboard == []
