"""The console chat through `feedbot chat` with scripted stdin: a newcomer's whole session."""

import subprocess
import sys

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
