"""Numeric command-line arguments in any form get a usage error, never a traceback, on both databases."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("value", ["99999999999999999999", "9223372036854775808", "²", "0", "-3", "1e3"])
def test_user_ids_out_of_range_or_malformed_are_refused(env, value):
    subprocess.run([sys.executable, "-m", "feedbot.cli", "db", "upgrade"], env=env, check=True,
                   capture_output=True, timeout=120)
    for args in (["rank", "--user", value], ["digest", "--dry-run", "--user", value], ["chat", "--user", value]):
        result = subprocess.run([sys.executable, "-m", "feedbot.cli", *args], env=env, input="/start\n",
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert "expected a Telegram user id" in result.stderr, (args, result.stderr)


def test_the_largest_telegram_ids_are_accepted(env):
    subprocess.run([sys.executable, "-m", "feedbot.cli", "db", "upgrade"], env=env, check=True,
                   capture_output=True, timeout=120)
    result = subprocess.run([sys.executable, "-m", "feedbot.cli", "rank", "--user", str(2**52 - 1)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and f"feedbot: no subscriber with Telegram user id {2**52 - 1}" in result.stderr
