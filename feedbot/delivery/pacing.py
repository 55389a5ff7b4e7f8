"""Broadcast pacing: digests go out below Telegram's limit, so interactive answers never queue
behind a broadcast; and enough of them in flight at once to keep that pace, however long
Telegram takes to answer."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import deque

FEWEST_IN_FLIGHT = 2  # one slow answer must not idle the pace
MOST_IN_FLIGHT = 64  # the worker's HTTP pool holds this many connections for digests
MARGIN = 1.5  # for the sends slower than the median


def in_flight(rate: float, seconds: float, fewest: int = FEWEST_IN_FLIGHT, most: int = MOST_IN_FLIGHT,
              margin: float = MARGIN) -> int:
    """Sends to keep in flight so `rate` messages/s go out when each holds its place `seconds`:
    Little's law (in flight = rate × time in flight) with a margin, within [fewest, most]."""
    return max(fewest, min(most, math.ceil(rate * seconds * margin)))


class Window:
    """How many digests a sweep sends at once: sized by `in_flight` to the pace and to the time a
    message has been holding its place lately (the median of the last `recent`, so one slow answer
    does not swing it); `start` until a send is timed, and always when unpaced."""

    def __init__(self, start: int = 4, recent: int = 32) -> None:
        self.start = max(1, start)
        self.times: deque[float] = deque(maxlen=recent)
        self.peak = 0  # the most in flight at once, for the log and the tests

    def observe(self, seconds: float) -> None:
        """A message held its place `seconds` (its send, the writes around it, a pause between
        parts; not the wait for the pace, which more in flight would only lengthen)."""
        self.times.append(seconds)

    def size(self, interval: float) -> int:
        """For a pace of one message every `interval` seconds (0: unpaced)."""
        if not interval or not self.times:
            return self.start
        return in_flight(1 / interval, statistics.median(self.times))


class Pacer:
    """At most `rate` messages a second for broadcasts (0: unpaced)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + self.interval

    def set_rate(self, rate: float) -> None:
        """A new rate from the next message on (several workers share FEEDBOT_SEND_RATE)."""
        self.interval = 1.0 / rate if rate > 0 else 0.0
