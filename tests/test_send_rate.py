"""FEEDBOT_SEND_RATE paces the worker's digests, with as many in flight as the pace needs at
Telegram's answer time, and FEEDBOT_PAID_BROADCAST sends them with allow_paid_broadcast: checked on
what reaches the fake Bot API server over real HTTP."""

import dataclasses
from collections import Counter

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from feedbot import worker
from feedbot.config import load_settings
from feedbot.delivery.pacing import MOST_IN_FLIGHT, Window, in_flight
from feedbot.store.models import Delivery
from tests.conftest import BotRunner
from tests.test_worker import add_subscriber, an_hour_ago, digests_to


@pytest.mark.parametrize("paid", [False, True])
def test_digests_carry_allow_paid_broadcast_only_when_set(paid, seeded, env, telegram):
    rate = 500 if paid else 30  # 500/s is allowed only with paid broadcasts
    settings = load_settings({**env, "TELEGRAM_BOT_TOKEN": telegram.token,
                              "FEEDBOT_TELEGRAM_API_URL": telegram.base_url, "FEEDBOT_SEND_RATE": str(rate),
                              **({"FEEDBOT_PAID_BROADCAST": "1"} if paid else {})})
    app = worker.application(settings, seeded)
    the_worker = app.post_init.__self__
    assert the_worker.pacer.interval == pytest.approx(1 / rate)
    the_worker.part_pause = 0
    runner = BotRunner(app)
    runner.start()
    try:
        for chat_id in (901, 902):
            add_subscriber(seeded, chat_id, "UTC", an_hour_ago(), "language models")
        runner.call(the_worker.sweep_digests())
        digests = digests_to(telegram, 901) + digests_to(telegram, 902)
        assert len(digests) == 2 and [m.paid_broadcast for m in digests] == [paid, paid]
        telegram.send(901, "/help")  # a reply to a command is never a paid broadcast
        [*_, reply] = telegram.wait_messages(901, 2)
        assert "/digest" in reply.text and reply.paid_broadcast is False
    finally:
        runner.stop()


def test_the_pace_follows_the_setting(engine, settings):
    assert worker.Worker(settings, engine).pacer.interval == pytest.approx(1 / 25)
    assert worker.Worker(dataclasses.replace(settings, send_rate=4), engine).pacer.interval == pytest.approx(0.25)
    assert worker.Worker(settings, engine, broadcast_rate=0).pacer.interval == 0  # unpaced (tests, benchmarks)


def test_in_flight_is_the_pace_times_the_answer_time_with_a_margin_within_bounds():
    assert in_flight(25, 0.1) == 4  # 25/s × 0.1 s × 1.5 = 3.75
    assert in_flight(25, 0.5) == 19  # 18.75: four in flight would reach only 8/s
    assert in_flight(25, 0.5, margin=1.0) == 13
    assert in_flight(25, 0.001) == 2  # never fewer than two
    assert in_flight(25, 30.0) == MOST_IN_FLIGHT  # a timeout does not open hundreds of connections
    assert in_flight(1000, 0.5) == MOST_IN_FLIGHT


def test_the_window_follows_the_median_answer_time_and_stays_put_when_unpaced():
    window = Window(start=4, recent=5)
    assert window.size(1 / 25) == 4  # nothing timed yet
    for seconds in (0.5, 0.5, 0.5):
        window.observe(seconds)
    assert window.size(1 / 25) == 19
    window.observe(30.0)  # one slow answer does not swing it
    assert window.size(1 / 25) == 19
    for seconds in (0.1, 0.1, 0.1, 0.1):
        window.observe(seconds)  # the oldest fall out: it follows the recent answers
    assert window.size(1 / 25) == 4
    assert window.size(0) == 4  # unpaced: as many as configured


def test_a_slow_telegram_gets_more_digests_in_flight_each_sent_once(seeded, env, telegram):
    settings = load_settings({**env, "TELEGRAM_BOT_TOKEN": telegram.token,
                              "FEEDBOT_TELEGRAM_API_URL": telegram.base_url, "FEEDBOT_SEND_RATE": "30"})
    app = worker.application(settings, seeded)
    the_worker = app.post_init.__self__
    the_worker.digests.part_pause = 0
    chats = list(range(3001, 3041))
    for chat_id in chats:
        add_subscriber(seeded, chat_id, "UTC", an_hour_ago(), "language models")
    runner = BotRunner(app)
    runner.start()
    try:
        telegram.latency = 0.3  # each answer held 0.3 s: four at once would send at most ~13/s
        telegram.reset_peak()
        results = runner.call(the_worker.sweep_digests())
    finally:
        runner.stop()
    assert results["sent"] == len(chats)
    assert the_worker.digests.window.peak > 4 and telegram.peak > 4  # the window grew to the answer time
    sent = Counter((m.chat_id, m.text) for m in telegram.sent if m.chat_id in chats)
    assert set(sent.values()) == {1}  # no part twice
    with Session(seeded) as session:
        rows = session.execute(select(Delivery.status, Delivery.parts_sent, Delivery.message_ids)).all()
    assert sorted(status for status, _, _ in rows) == ["sent"] * len(chats)
    assert sum(parts for _, parts, _ in rows) == sum(sent.values())  # every part recorded as sent
    assert sorted(int(i) for _, _, ids in rows for i in ids.split(",")) == sorted(
        m.message_id for m in telegram.sent if m.chat_id in chats)
