"""Worker heartbeats in the database: who runs (host, pid, version), when it was last seen and
when its last digest sweep started and finished — so `feedbot status` can tell a live worker from
a stuck or dead one, from any host.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from feedbot import __version__
from feedbot.clock import utcnow
from feedbot.store.db import insert_for, transaction
from feedbot.store.models import Heartbeat

EVERY = timedelta(seconds=30)  # how often a worker says it is alive
DEAD_AFTER = timedelta(minutes=3)  # no word for this long: the worker is gone or stuck
SWEEP_STUCK_AFTER = timedelta(minutes=10)  # a digest sweep running this long is stuck


class Beat:
    """One worker process's row."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine, self.clock = engine, clock
        self.host, self.pid = socket.gethostname()[:100], os.getpid()
        self.name = f"{self.host}:{self.pid}"
        self.started_at = clock()

    def _upsert(self, **values) -> None:
        now = self.clock()
        with transaction(self.engine) as session:
            insert = insert_for(session)
            row = {"name": self.name, "host": self.host, "pid": self.pid, "version": __version__,
                   "started_at": self.started_at, "seen_at": now, **values}
            session.execute(insert(Heartbeat).values(**row).on_conflict_do_update(
                index_elements=["name"], set_={"seen_at": now, "version": __version__, **values}))

    def alive(self) -> None:
        self._upsert()

    def sweep_started(self) -> None:
        self._upsert(sweep_started_at=self.clock())

    def sweep_finished(self) -> None:
        self._upsert(sweep_finished_at=self.clock())

    def stopped(self) -> None:
        with transaction(self.engine) as session:
            session.execute(delete(Heartbeat).where(Heartbeat.name == self.name))


@dataclass(frozen=True)
class Seen:
    beat: Heartbeat
    ago: timedelta
    alive: bool
    sweep_stuck: bool


def workers(session: Session, now: datetime) -> list[Seen]:
    """Every worker that reported, newest first, with whether it counts as alive."""
    from feedbot.delivery.deliveries import as_utc

    out = []
    for beat in session.scalars(select(Heartbeat).order_by(Heartbeat.seen_at.desc())):
        ago = now - as_utc(beat.seen_at)
        started = as_utc(beat.sweep_started_at) if beat.sweep_started_at else None
        finished = as_utc(beat.sweep_finished_at) if beat.sweep_finished_at else None
        stuck = started is not None and (finished is None or finished < started) and now - started > SWEEP_STUCK_AFTER
        out.append(Seen(beat, ago, ago <= DEAD_AFTER and not stuck, stuck))
    return out
