"""Time helpers with an injectable clock, so tests can travel through days without sleeping."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, time

Clock = Callable[[], datetime]

_HHMM = re.compile(r"^([01]?[0-9]|2[0-3])[:.h]?([0-5][0-9])$")


def utcnow() -> datetime:
    """The real clock: an aware datetime in UTC."""
    return datetime.now(UTC)


def parse_hhmm(text: str) -> time:
    """Parse `8:00`, `08:00`, `0800` or `20h30` into a time; ValueError says what is expected."""
    match = _HHMM.match(text.strip())
    if not match:
        raise ValueError(f"expected a time like 08:00, got {text!r}")
    return time(int(match.group(1)), int(match.group(2)))
