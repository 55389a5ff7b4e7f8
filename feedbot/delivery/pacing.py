"""Broadcast pacing: digests go out below Telegram's limit, so interactive answers never queue
behind a broadcast."""

from __future__ import annotations

import asyncio
import time


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
