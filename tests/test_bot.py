"""The Telegram bot end to end: python-telegram-bot over real HTTP against a fake Bot API server."""

import html
from datetime import date

from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from feedbot.sources.ingest import ingest_paths
from feedbot.store.models import Base, Subscriber, Vote

ALICE = 111


def talk(telegram, text, user=ALICE, expect=1):
    """Send a message and wait for `expect` new replies; return them."""
    before = len(telegram.messages_to(user))
    telegram.send(user, text)
    return telegram.wait_messages(user, before + expect)[before:]


def press(telegram, message, data, user=ALICE):
    return telegram.wait_answer(telegram.press(user, message, data))


def onboard(telegram, user=ALICE):
    [welcome] = talk(telegram, "/start", user)
    assert "Welcome to feedbot" in welcome.text
    noted, starter, question = talk(telegram, "speech recognition, graph neural networks", user, expect=3)
    assert "speech recognition" in noted.text
    assert len(starter.buttons) == 5
    assert "time zone" in question.text
    return starter


def subscriber_row(engine, user=ALICE):
    with Session(engine) as session:
        return session.scalar(select(Subscriber).where(Subscriber.telegram_id == user))


def test_whole_onboarding(bot, telegram, seeded):
    assert {c["command"] for c in telegram.commands} >= {"start", "digest", "settings", "delete"}
    starter = onboard(telegram)
    answer = press(telegram, starter, starter.buttons[0][0]["callback_data"])
    assert answer["text"] == "Saved 👍"
    telegram.wait(lambda: starter.buttons[0][0]["text"].startswith("✅"), what="keyboard shows the vote")
    [done] = talk(telegram, "Europe/Berlin")
    assert "All set!" in done.text and "Europe/Berlin" in done.text
    row = subscriber_row(seeded)
    assert row.timezone == "Europe/Berlin" and row.awaiting is None
    [again] = talk(telegram, "/start")
    assert "Welcome back" in again.text
    with Session(seeded) as session:
        assert session.scalar(select(func.count()).select_from(Vote)) == 1


def test_digest_votes_change_and_double_tap(bot, telegram, seeded):
    onboard(telegram)
    talk(telegram, "/skip")
    [digest] = talk(telegram, "/digest")
    assert digest.parse_mode == "HTML"
    assert digest.text.count("<b>") >= 6 and len(digest.buttons) == 5
    first_up, first_down = digest.buttons[0]
    paper_id = int(first_up["callback_data"].split(":")[1])

    assert press(telegram, digest, first_up["callback_data"])["text"] == "Saved 👍"
    assert press(telegram, digest, first_down["callback_data"])["text"] == "Saved 👎"
    with Session(seeded) as session:
        assert session.scalar(select(Vote.value).where(Vote.paper_id == paper_id)) == -1
    telegram.wait(lambda: digest.buttons[0][1]["text"].startswith("✅"), what="👎 marked")
    # A double tap: the second tap on the same button clears the vote, nothing breaks.
    queries = [telegram.press(ALICE, digest, first_down["callback_data"]) for _ in range(2)]
    answers = [telegram.wait_answer(q)["text"] for q in queries]
    assert sorted(answers) == sorted(["Vote cleared", "Saved 👎"])
    telegram.wait_idle()
    with Session(seeded) as session:
        votes = session.scalars(select(Vote.value).where(Vote.paper_id == paper_id)).all()
    assert votes == [-1]


def test_forged_and_oversized_callbacks_write_nothing(bot, telegram, seeded):
    onboard(telegram)
    talk(telegram, "/skip")
    [digest] = talk(telegram, "/digest")
    with Session(seeded) as session:
        unseen = session.scalar(select(func.max(Subscriber.id)))  # any id that is no shown paper
    for data in [f"v:{10_000_000}:+", "v:1:*", "x" * 200, "v:1:+; DROP TABLE votes", f"v:{unseen}0:+", ""]:
        answer = press(telegram, digest, data)
        assert "not" in answer["text"] and answer.get("show_alert") == "true", (data, answer)
    with Session(seeded) as session:
        assert session.scalar(select(func.count()).select_from(Vote)) == 0


def test_commands_and_their_bad_arguments(bot, telegram, seeded):
    onboard(telegram)
    talk(telegram, "/skip")
    cases = [
        ("/time 25:00", "Send a time like /time 07:30"),
        ("/time 6:45", "Delivery time set to <b>06:45</b>"),
        ("/timezone Europe/Berln", "Did you mean Europe/Berlin"),
        ("/timezone UTC+5:30", "Time zone set to <b>UTC+05:30</b>"),
        ("/size 0", "from 1 to 20"),
        ("/size 7", "<b>7</b> picks"),
        ("/frequency hourly", "Choose one of"),
        ("/frequency weekdays", "<b>weekdays</b>"),
        ("/interests add diffusion models", "Added “diffusion models”"),
        ("/interests remove nothing-like-this", "is not one of your interests"),
        ("/interests remove 1", "Removed “speech recognition”"),
        ("/interests", "2. diffusion models"),
        ("/mute whisper", "won't be picked"),
        ("/unmute whisper", "no longer muted"),
        ("/unmute whisper", "is not muted"),
        ("/pause x", "from 1 to 365"),
        ("/pause 3", "(then they resume by themselves)"),
        ("/resume", "Digests resumed"),
        ("/status", "7 picks, weekdays"),
        ("/liked", "haven't liked any papers"),
        ("/search", "Tell me what to look for"),
        ("/search zzzzqqq", "No papers mention"),
        ("/history", "No digests yet"),
        ("/export", "nothing to export"),
        ("/frobnicate", "I don't know /frobnicate"),
        ("just chatting", "I answer commands"),
        ("/help", "/digest — today's picks now"),
    ]
    for text, expected in cases:
        [reply] = talk(telegram, text)
        assert expected in reply.text, (text, reply.text)
    row = subscriber_row(seeded)
    assert (row.send_time, row.timezone, row.digest_size, row.frequency) == ("06:45", "UTC+05:30", 7, "weekdays")


def test_search_export_history_settings_stop(bot, telegram, seeded):
    onboard(telegram)
    talk(telegram, "/skip")
    [found] = talk(telegram, "/search Bayesian inference")
    assert "Transformers Can Do Bayesian Inference" in found.text
    press(telegram, found, found.buttons[0][0]["callback_data"])
    [liked] = talk(telegram, "/liked")
    assert "Bayesian" in liked.text
    listing, document = talk(telegram, "/export", expect=2)
    name, content = document.document
    assert name == "feedbot-liked.bib" and content.startswith(b"@misc{feedbot")
    assert b"title = {Transformers Can Do Bayesian Inference}" in content

    [digest] = talk(telegram, "/digest")
    [history] = talk(telegram, "/history")
    first_title = html.unescape(digest.text.split("<b>")[2].split("</b>")[0])
    assert first_title in html.unescape(history.text)

    [settings] = talk(telegram, "/settings")
    press(telegram, settings, settings.button("Picks +1")["callback_data"])
    telegram.wait(lambda: "Picks per digest: <b>6</b>" in settings.text, what="settings edited")
    press(telegram, settings, settings.button("weekly")["callback_data"])
    telegram.wait(lambda: "<b>weekly</b>" in settings.text, what="frequency edited")
    assert subscriber_row(seeded).digest_size == 6

    [stopped] = talk(telegram, "/stop")
    assert "unsubscribed" in stopped.text and subscriber_row(seeded).state == "stopped"
    [back] = talk(telegram, "/start")
    assert "Welcome back" in back.text and subscriber_row(seeded).state == "active"


def test_settings_button_at_the_limit_is_not_modified_and_ignored(bot, telegram, seeded):
    onboard(telegram)
    talk(telegram, "/size 20")
    [settings] = talk(telegram, "/settings")
    answer = press(telegram, settings, settings.button("Picks +1")["callback_data"])
    assert answer["text"] == "Saved"
    [reply] = talk(telegram, "/status")  # the bot is still answering
    assert "20 picks" in reply.text


def test_delete_leaves_no_rows(bot, telegram, seeded):
    starter = onboard(telegram)
    press(telegram, starter, starter.buttons[1][1]["callback_data"])
    talk(telegram, "/mute whisper")
    talk(telegram, "/skip")
    talk(telegram, "/digest")
    [confirm] = talk(telegram, "/delete")
    press(telegram, confirm, confirm.button("No")["callback_data"])
    assert subscriber_row(seeded) is not None
    [confirm] = talk(telegram, "/delete")
    press(telegram, confirm, confirm.button("Yes")["callback_data"])
    telegram.wait(lambda: "erased" in confirm.text, what="deletion confirmed")
    with Session(seeded) as session:
        for table in Base.metadata.sorted_tables:
            if "subscriber_id" in table.c:
                assert session.scalar(select(func.count()).select_from(table)) == 0, table.name
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
    assert "subscriber_id" in {c["name"] for c in inspect(seeded).get_columns("votes")}


def test_hostile_html_titles_are_escaped(bot, telegram, seeded, tmp_path):
    (tmp_path / "evil.txt").write_bytes(
        b"new\n\nMar 12\n\n<script>alert('x')</script> & <b>Bold</b> claims\n\nAbstract with <obj> & &amp;.\n")
    ingest_paths(seeded, [tmp_path / "evil.txt"], stamp=date(2026, 3, 20))
    onboard(telegram)
    talk(telegram, "/skip")
    [found] = talk(telegram, "/search script")
    assert "&lt;script&gt;alert('x')&lt;/script&gt; &amp; &lt;b&gt;Bold&lt;/b&gt;" in found.text
    assert found.parse_mode == "HTML"


def test_blocked_user_is_marked_inactive(bot, telegram, seeded):
    onboard(telegram)
    telegram.inject(ALICE, "403", "sendMessage")
    telegram.send(ALICE, "/status")
    telegram.wait(lambda: subscriber_row(seeded).state == "blocked", what="subscriber marked blocked")
    [back] = talk(telegram, "/start")
    assert subscriber_row(seeded).state == "active" and "Welcome back" in back.text


def test_429_is_retried_after_retry_after(bot, telegram, seeded):
    onboard(telegram)
    telegram.inject(ALICE, "429", "sendMessage", times=2, retry_after=1)
    [reply] = talk(telegram, "/status")
    assert "Next digest" in reply.text
    assert sum(1 for m in telegram.messages_to(ALICE) if "Next digest" in m.text) == 1


def test_timeout_never_sends_a_second_copy(bot, telegram, seeded):
    onboard(telegram)
    talk(telegram, "/skip")
    before = len(telegram.messages_to(ALICE))
    telegram.inject(ALICE, "slow", "sendMessage", delay=3.0)  # longer than the bot's 2 s timeout
    telegram.send(ALICE, "/digest")
    telegram.wait_messages(ALICE, before + 1)
    [reply] = talk(telegram, "/status")  # the bot carried on
    digests = [m for m in telegram.messages_to(ALICE) if "picks for you" in m.text]
    assert len(digests) == 1 and "Next digest" in reply.text


def test_unparseable_entities_fall_back_to_plain_text(bot, telegram, seeded):
    onboard(telegram)
    telegram.inject(ALICE, "entities", "sendMessage")
    [reply] = talk(telegram, "/status")
    assert reply.parse_mode is None
    assert "Next digest:" in reply.text and "<b>" not in reply.text
