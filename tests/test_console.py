"""The console chat through `feedbot chat` with scripted stdin: a newcomer's whole session."""

import subprocess
import sys

from sqlalchemy.orm import Session

from tests.conftest import EXAMPLE_DUMPS


def test_scripted_console_session(env):
    def run(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "feedbot.cli", *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=180, check=True).stdout

    run("db", "upgrade")
    run("ingest", str(EXAMPLE_DUMPS))
    script = "\n".join([
        "/start",
        "speech recognition",
        "1",          # 👍 the first starter paper
        "4",          # 👎 the second
        "Asia/Tokyo",
        "/digest",
        "1",          # 👍 the first pick of the digest: numbers mean the newest buttons
        "a3",         # 👍 the second starter paper, still reachable by its keyboard's letter
        "/status",
        "/delete",
        "1",          # confirm deletion
        "/status",
    ]) + "\n"
    out = run("chat", "--user", "7", stdin=script)
    assert "Welcome to feedbot!" in out
    assert "Rate a few papers" in out
    assert "(Saved 👍)" in out and "(Saved 👎)" in out
    assert "All set! Next digest:" in out and "(Asia/Tokyo)" in out
    digest = out.split("> /digest", 1)[1].split("> 1\n", 1)[0]
    assert "5 picks for you" in digest
    assert digest.count("matches your interest “speech recognition”") + digest.count("because you liked") == 5
    assert "[1] 👍 1" in digest and "later b1–b10 still press these" in digest
    pressed = out.split("> /digest", 1)[1].split("> 1\n", 1)[1].split("> a3", 1)[0]
    assert "(Saved 👍)" in pressed and "✅ 👍 1" in pressed
    assert "✅ 👍 2" in out.split("> a3", 1)[1].split("> /status", 1)[0]
    status = out.split("> /status", 1)[1]
    assert "3 👍 and 0 👎 so far" in status  # a3 turned the 👎 on starter 2 into 👍
    assert "All your data is erased" in out
    assert "You're not subscribed yet" in out.rsplit("> /status", 1)[1]


def test_numbers_run_on_across_the_messages_of_one_answer(engine, settings):
    """A 20-pick digest fills several messages: `1` is still 👍 on pick 1 and `40` 👎 on pick 20,
    and an earlier answer's letter still reaches its buttons."""
    import io
    from datetime import UTC, date, datetime

    from feedbot.chat.console import Console
    from feedbot.chat.conversation import Chat, User
    from feedbot.sources.ingest import ingest_paths

    ingest_paths(engine, [EXAMPLE_DUMPS], date(2026, 3, 12))
    out = io.StringIO()
    console = Console(Chat(engine, settings, clock=lambda: datetime(2026, 3, 12, 9, 0, tzinfo=UTC)), User(7, 7), out)
    for line in ["/start", "speech recognition", "/skip", "/size 20", "/digest"]:
        console.handle(line)
    digest = out.getvalue().rsplit("20 picks for you", 1)[1]
    assert digest.count("later ") >= 2, "the digest should fill more than one message"
    assert "[1] 👍 1 " in digest and "[40] 👎 20" in digest and "[1] 👍 15" not in digest
    for line, mark in [("1", "✅ 👍 1"), ("40", "✅ 👎 20"), ("a1", "✅ 👍 1")]:
        before = len(out.getvalue())
        console.handle(line)
        assert mark in out.getvalue()[before:], line


def test_liked_and_export_list_the_first_papers_and_say_how_many_more(chat, seeded):
    """/liked lists 30 papers and points at /export for the rest; /export lists 50, the file has all."""
    from datetime import UTC, datetime

    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from feedbot.chat.conversation import User
    from feedbot.store.db import transaction
    from feedbot.store.models import Paper, Vote
    from feedbot.store.subscribers import get

    user = User(11, 11)
    chat.command(user, "start")
    with transaction(seeded) as session:
        subscriber = get(session, 11)
        ids = session.scalars(select(Paper.id).order_by(Paper.id).limit(55)).all()
        session.add_all(Vote(subscriber_id=subscriber.id, paper_id=pid, value=1,
                             voted_at=datetime(2026, 3, 1, tzinfo=UTC)) for pid in ids)
    liked = "\n".join(r.text for r in chat.command(user, "liked"))
    assert "<b>Papers you liked</b> (55)" in liked
    assert "\n30. " in liked and "\n31. " not in liked
    assert liked.rstrip().endswith("…and 25 more: /export gives them all.")
    exported = chat.command(user, "export")
    text = "\n".join(r.text for r in exported)
    assert "\n50. " in text and "\n51. " not in text
    assert text.rstrip().endswith("…and 5 more in the file.")
    assert sum(line.startswith("@") for line in exported[-1].document[1].decode().splitlines()) == 55
    with Session(seeded) as session:
        assert session.query(Vote).count() == 55


def test_console_reads_arguments_after_any_whitespace_and_leaves_other_bots_commands(engine, settings):
    import io

    from feedbot.chat.console import Console
    from feedbot.chat.conversation import Chat, User
    from feedbot.store.subscribers import get

    out = io.StringIO()
    chat = Chat(engine, settings)
    console = Console(chat, User(7, 7), out)
    for line in ["/start", "/skip", "/skip"]:
        console.handle(line)
    for separator, at in [("\t", "07:30"), ("\u00a0", "06:15"), ("\n", "05:00"), ("\u3000 ", "04:45")]:
        before = len(out.getvalue())
        console.handle(f"/time{separator}{at}")
        assert f"Delivery time set to {at}" in out.getvalue()[before:], repr(separator)
    before = len(out.getvalue())
    console.handle("/stop@OtherBot")
    assert "for @OtherBot, not for me" in out.getvalue()[before:]
    console.handle("/size@feedbot 3")
    with Session(engine) as session:
        row = get(session, 7)
        assert (row.state, row.send_time, row.digest_size) == ("active", "04:45", 3)
