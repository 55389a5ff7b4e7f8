"""FEEDBOT_SEND_RATE paces the worker's digests and FEEDBOT_PAID_BROADCAST sends them with
allow_paid_broadcast: checked on what reaches the fake Bot API server over real HTTP."""

import dataclasses

import pytest

from feedbot import worker
from feedbot.config import load_settings
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
