"""Whole numbers typed by people: `5`, `０５` or `٥` are five; `²`, `5.0`, `1e3` or a 5,000-digit
string are not numbers here. `str.isdigit()` says yes to `²` while `int()` refuses it, so every
numeric argument goes through `whole_number` and gets a clear reply instead of an exception.
"""

from __future__ import annotations

MAX_DIGITS = 12


def whole_number(text: str, low: int | None = None, high: int | None = None) -> int | None:
    """The number `text` spells in decimal digits (any script), within [low, high]; else None."""
    text = text.strip()
    if not text or len(text) > MAX_DIGITS or not text.isdecimal():
        return None
    value = int(text)
    if (low is not None and value < low) or (high is not None and value > high):
        return None
    return value


MAX_USER_ID = 2**63 - 1  # the telegram_id column's range: larger ids would overflow the database


def user_id(text: str) -> int | None:
    """A Telegram user id: a positive whole number within the database's range, else None.
    Ids reach 2**52, past MAX_DIGITS (the cap for counts people type), so this has its own check."""
    digits = text.strip()
    value = int(digits) if digits.isdecimal() and len(digits) <= 19 else 0
    return value if 1 <= value <= MAX_USER_ID else None
