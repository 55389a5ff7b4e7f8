"""Property-based test of the whole conversation: any sequence of commands (their arguments after
any kind of whitespace), free text and button data, in any unicode, gets an answer Telegram
accepts, raises nothing, and leaves the database sound (no paper shown twice, votes only on shown
papers, one subscriber row per user, a stale /delete button erases nothing), before and after the
first ingest, on SQLite and PostgreSQL."""

from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from feedbot.chat.commands import Typed, names, parse
from feedbot.chat.conversation import Chat, User
from feedbot.delivery.messages import MAX_TEXT, Reply
from feedbot.ranking import textmodel
from feedbot.sources.ingest import ingest_paths
from feedbot.store import subscribers
from feedbot.store.models import Shown, Subscriber, Vote
from tests.fake_telegram import parse_html, utf16_length
from tests.test_first_day import write_dump

WHITESPACE = "".join(c for c in map(chr, range(0x110000)) if c.isspace())  # newline, tab, NBSP, U+3000…
SEPARATOR = st.one_of(st.just(" "), st.text(st.sampled_from(WHITESPACE), min_size=1, max_size=3))
ASTRAL = st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x1FFFF, blacklist_categories=("Cs", "Cn")),
                 min_size=1, max_size=200)

NOW = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
ANY_TEXT = st.one_of(st.text(max_size=40), st.text(max_size=40).map(lambda t: f"{t}\x00{t}"))
ARGS = st.one_of(ANY_TEXT, st.sampled_from(["1", "²", "٣", "0", "21", "add diffusion", "add the of and", "add 🚀",
                                            "remove 1", "remove ¹", "clear", "daily", "07:30", "Asia/Tokyo",
                                            "c++", "UTC+5:30", "9" * 40]),
                 st.lists(ASTRAL, min_size=1, max_size=10).map(lambda words: "add " + ", ".join(words)),
                 ASTRAL)
COMMAND = st.tuples(st.just("command"), st.one_of(st.sampled_from(names()), ANY_TEXT),
                    st.tuples(SEPARATOR, ARGS))
TEXT = st.tuples(st.just("text"), st.one_of(ANY_TEXT, st.sampled_from(["diffusion, robots", "Europe/Berlin"])),
                 st.just(""))
BUTTON = st.tuples(st.just("button"), st.one_of(
    st.sampled_from(["h:0", "h:9999", "s:size:+", "s:size:-", "s:time:+", "s:freq:weekly", "s:pause",
                     "s:resume", "d:yes", "d:no", "v:1:+", "v:2:-", "v:999999999999:+"]),
    st.sampled_from(["s:size:+", "s:pause", "d:yes", "d:no"]).map(lambda d: f"tagged:{d}"),
    st.integers(0, 12).map(lambda i: f"shown:{i}"), ANY_TEXT), st.just(""))
ACTIONS = st.lists(st.tuples(st.integers(1, 3), st.one_of(COMMAND, TEXT, BUTTON)), min_size=1, max_size=14)


@pytest.mark.parametrize("papers", [0, 7])
def test_any_conversation_answers_and_keeps_the_database_sound(engine, settings, tmp_path, papers):
    if papers:
        ingest_paths(engine, [write_dump(tmp_path, papers)], stamp=date(2026, 3, 12))
        with Session(engine) as session:
            textmodel.ensure(session, settings.model_dir)
    chat = Chat(engine, settings, clock=lambda: NOW)

    @settings_for_ci
    @given(ACTIONS)
    def run(actions):
        keyboards: dict[int, list] = {}

        def answered(replies):
            assert replies and all(r.text.strip() for r in replies)
            for reply in replies:  # as Telegram counts: UTF-16 units of the text without its tags
                assert utf16_length(parse_html(reply.text)) <= MAX_TEXT, reply.text[:200]

        for uid, (kind, what, args) in actions:
            user = User(uid, uid)
            if kind == "command":
                separator, args = args
                typed = parse(f"/{what}{separator}{args}")
                if what and not any(c.isspace() or c == "@" for c in what):
                    assert typed == Typed(what, "", args.strip())  # any whitespace reads as one space
                replies = chat.command(user, typed.name, typed.args)
                answered(replies)
                keyboards[uid] = [b for r in replies for row in r.keyboard for b in row] or keyboards.get(uid, [])
            elif kind == "text":
                replies = chat.text(user, what)
                answered(replies)
                keyboards[uid] = [b for r in replies for row in r.keyboard for b in row] or keyboards.get(uid, [])
            else:
                if what.startswith("shown:"):
                    buttons = keyboards.get(uid, [])
                    index = int(what.split(":")[1])
                    what = buttons[index % len(buttons)].data if buttons else "v:1:+"
                if what.startswith("tagged:"):  # a settings or /delete button of the current subscription
                    with Session(engine) as session:
                        subscriber = subscribers.get(session, uid)
                        tag = subscribers.tag(subscriber) if subscriber else "0" * 12
                    what = f"{what.removeprefix('tagged:')}:{tag}"
                with Session(engine) as session:
                    before = subscribers.get(session, uid)
                    current = subscribers.tag(before) if before else None
                answer = chat.button(user, what)
                assert answer.notice or answer.text or answer.replies
                if what.startswith("d:yes:") and not what.endswith(f":{current}"):
                    with Session(engine) as session:  # a stale or forged "delete everything" erased nothing
                        assert (subscribers.get(session, uid) is None) == (before is None)
                answered(answer.replies or [Reply(answer.text or answer.notice)])
        with Session(engine) as session:
            per_user = session.execute(select(Subscriber.telegram_id, func.count()).group_by(Subscriber.telegram_id))
            assert all(count == 1 for _, count in per_user)
            repeats = session.execute(select(Shown.subscriber_id, Shown.paper_id, func.count())
                                      .group_by(Shown.subscriber_id, Shown.paper_id).having(func.count() > 1)).all()
            assert not repeats
            unshown = session.scalar(select(func.count()).select_from(Vote).where(~select(Shown).where(
                Shown.subscriber_id == Vote.subscriber_id, Shown.paper_id == Vote.paper_id).exists()))
            assert unshown == 0

    run()


settings_for_ci = settings(max_examples=60, deadline=None, database=None,
                           suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@given(st.one_of(st.sampled_from(names()), st.from_regex(r"[A-Za-z0-9_]{1,20}", fullmatch=True)),
       st.one_of(st.just(""), st.from_regex(r"@[A-Za-z0-9_]{3,20}", fullmatch=True)), SEPARATOR, ARGS)
@settings(max_examples=300, deadline=None)
def test_a_command_reads_the_same_after_any_whitespace(name, bot, separator, args):
    """`/time\n07:30`, `/time\t07:30` and `/time\u00a007:30` are `/time 07:30`, addressed or not."""
    typed = parse(f"/{name}{bot}{separator}{args}")
    assert typed == parse(f"/{name}{bot} {args.strip()}") == Typed(name, bot[1:], args.strip())
    assert typed.for_bot("FeedBot_Test_Bot") == (bot.casefold() in ("", "@feedbot_test_bot"))
