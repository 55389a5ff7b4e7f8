"""Which worker leads: on PostgreSQL any number of workers run, and the one holding the leader's
advisory lock (feedbot.locks) runs the jobs that must run once — the inbox and sources sweeps, the
refits, the ranking and claiming of digests. The others stand by and try the lock every
FEEDBOT_LEADER_CHECK_SECONDS; when the leader dies (killed, or its connection lost) PostgreSQL
drops its lock and the next standby to try takes it. A worker that finds its own lock's connection
lost steps down and lets the others try first: it tries again only a check interval later. Every
worker sends. On SQLite the one worker leads (a second one is refused: feedbot.worker.SingletonLock).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from feedbot.clock import utcnow
from feedbot.locks import AdvisoryLock

log = logging.getLogger(__name__)

LEADER, STANDBY = "leader", "standby"


class Turn:
    """One role taken in turn through an advisory lock (the leader's, the poller's); always held
    on SQLite. `check` tries to take it, or keeps it alive: call it every `every` seconds."""

    def __init__(self, engine: Engine, name: str, every: float, clock: Callable[[], datetime] = utcnow) -> None:
        self.name, self.every, self.clock = name, every, clock
        self.lock = AdvisoryLock(engine, name) if engine.dialect.name == "postgresql" else None
        self.since: datetime | None = None  # when this process took the role
        self.resting_until = 0.0  # time.monotonic() before which it does not try again, having lost the role
        self._checking = threading.Lock()  # one check at a time on the lock's connection
        self.released = False  # let go for good (the worker stops): a check still under way takes nothing

    @property
    def held(self) -> bool:
        return self.lock is None or self.lock.holding

    def check(self) -> bool:
        """Keep the role, or try to take it; whether this process holds it now."""
        with self._checking:
            return self._check()

    def _check(self) -> bool:
        had = self.held and self.since is not None
        if self.lock is None:
            now = True
        elif self.lock.holding:
            now = self.lock.held()
            if not now:  # its connection was lost: the standbys, which still reach the database, go first
                self.resting_until = time.monotonic() + self.every
        elif self.released or time.monotonic() < self.resting_until:
            now = False
        else:
            try:
                now = self.lock.try_acquire()
            except Exception as exc:  # noqa: BLE001 - the database is down: try again at the next check
                log.warning("could not try the %s lock: %s", self.name, exc)
                now = False
        if now and not had:
            self.since = self.clock()
            log.info("this worker took the %s role", self.name)
        elif had and not now:
            self.since = None
            log.warning("this worker lost the %s role", self.name)
        return now

    def release(self) -> None:
        """Let the role go for good: a check that was already on its way (a thread waiting for
        this one) does not take the lock back after it."""
        with self._checking:
            self.released = True
            if self.lock is not None:
                self.lock.release()
            self.since = None
