"""The `feedbot` command through its real entry point, in a subprocess."""

import os
import subprocess
import sys

from tests.conftest import EXAMPLE_DUMPS


def feedbot(env, *args, check=True, stdin=""):
    result = subprocess.run([sys.executable, "-m", "feedbot.cli", *args], env=env, input=stdin,
                            capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"feedbot {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def test_upgrade_ingest_twice_status(env):
    assert "at revision" in feedbot(env, "db", "upgrade").stdout
    first = feedbot(env, "ingest", str(EXAMPLE_DUMPS)).stdout
    assert "total: 5 dumps, 354 new papers" in first
    second = feedbot(env, "ingest", str(EXAMPLE_DUMPS)).stdout
    assert "total: 5 dumps, 0 new papers" in second
    assert second.count("already ingested") == 5
    status = feedbot(env, "status").stdout
    assert "papers:   354" in status
    assert "ingested: 5" in status
    listed = feedbot(env, "papers", "--search", "Bayesian inference", "--limit", "5").stdout
    assert "Transformers Can Do Bayesian Inference" in listed


def test_inbox_sweep_with_a_broken_dump(env, tmp_path):
    inbox = tmp_path / "data" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "good.txt").write_bytes((EXAMPLE_DUMPS / "000_648e4c2a7562aa40.txt").read_bytes())
    (inbox / "broken.txt").write_bytes(b"new\n\nMar 11\n\nOnly a title\n")
    feedbot(env, "db", "upgrade")
    result = feedbot(env, "ingest", check=False)
    assert result.returncode == 1
    assert "broken.txt: FAILED: broken.txt, line 5: title 'Only a title' has no abstract" in result.stdout
    assert "good.txt: 80 entries, 80 new papers" in result.stdout
    assert (inbox / "failed" / "broken.txt.error.txt").exists()
    assert (inbox / "done" / "good.txt").exists()
    status = feedbot(env, "status").stdout
    assert "failed: 1" in status and "has no abstract" in status


def test_clear_errors_for_config_and_schema(env):
    result = feedbot({**env, "FEEDBOT_LOG_LEVEL": "LOUD"}, "status", check=False)
    assert result.returncode == 2 and "FEEDBOT_LOG_LEVEL must be one of" in result.stderr
    result = feedbot(env, "papers", check=False)
    assert result.returncode == 2 and "run `feedbot db upgrade`" in result.stderr


def test_every_command_has_help(env):
    from feedbot.cli import build_parser

    parser = build_parser()
    names = parser._subparsers._group_actions[0].choices
    for name in names:
        assert feedbot(env, name, "--help").stdout.startswith("usage: feedbot " + name)


def test_every_command_says_clearly_when_the_database_cannot_be_used(tmp_path):
    """An unreachable PostgreSQL server or an SQLite file that cannot be opened: every command the
    README shows exits 2 with one line naming the (masked) database, never a traceback."""
    from tests.test_readme_commands import PLACEHOLDERS, readme_commands

    dump = tmp_path / "dump.txt"
    dump.write_text("new\n\nMar 12\n\nA title\n\nAn abstract.\n")
    values = {**PLACEHOLDERS, "PATH": str(dump), "FILE": str(tmp_path / "out.png")}
    (tmp_path / "a-file").write_text("not a folder")
    seen = set()
    for url in ("postgresql://feedbot:secret@127.0.0.1:9/feedbot", f"sqlite:///{tmp_path}/a-file/feedbot.db"):
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("FEEDBOT_", "TELEGRAM_"))},
               "DATABASE_URL": url, "FEEDBOT_DATA_DIR": str(tmp_path / "data"), "TELEGRAM_BOT_TOKEN": "1:x",
               "FEEDBOT_TELEGRAM_API_URL": "http://127.0.0.1:9/bot"}
        for form in readme_commands():
            argv = [values.get(word, word).format(tmp=tmp_path) for word in form.split()]
            command = " ".join(argv[:2]) if argv[0] in ("db", "fetch", "model") else argv[0]
            if (url, command) in seen:
                continue  # one form per command and database kind is enough here
            seen.add((url, command))
            result = feedbot(env, *argv, check=False)
            assert result.returncode == 2 and "Traceback" not in result.stderr, (argv, result.stderr)
            assert "feedbot: cannot use the database" in result.stderr, (argv, result.stderr)
            assert "secret" not in result.stderr + result.stdout


def test_an_unknown_revision_is_refused_clearly(env):
    feedbot(env, "db", "upgrade")
    for args in (["db", "downgrade", "nonsense"], ["db", "upgrade", "9999"]):
        result = feedbot(env, *args, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "Can't locate revision" in result.stderr


def test_admin_commands_before_the_first_listing(env):
    """A new deployment with a subscriber and no papers: each command answers, none crashes."""
    feedbot(env, "db", "upgrade")
    assert "bye" in feedbot(env, "chat", "--user", "5", stdin="/start\n/skip\nquit\n").stdout
    first = "no papers yet — your first digest comes after the first listing"
    assert first in feedbot(env, "rank", "--user", "5").stdout
    assert "0 picks" in (dry := feedbot(env, "digest", "--dry-run", "--user", "5").stdout) and first in dry
    refit = feedbot(env, "model", "refit", check=False)
    assert refit.returncode == 2 and "no papers to fit" in refit.stderr
    assert "model:    not fitted yet" in feedbot(env, "status").stdout
    assert "(0 papers)" in feedbot(env, "papers", "--search", "anything").stdout
    assert "(1 subscribers)" in feedbot(env, "subscribers").stdout


def test_ingest_refuses_a_date_it_would_not_use(env):
    feedbot(env, "db", "upgrade")
    result = feedbot(env, "ingest", "--date", "2026-03-12", check=False)
    assert result.returncode == 2 and "--date needs a PATH" in result.stderr
