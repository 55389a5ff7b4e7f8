"""Worker heartbeats in the database: who runs (host, pid, the run's owner name), when it was last
seen, when its last digest sweep started and finished, and when that sweep last made progress —
so `feedbot status` can tell a live worker from a stuck or dead one, from any host. A sweep is
stuck when it stops making progress, not when it is long: a broadcast to 15,000 subscribers at
25 messages a second takes ten minutes and keeps moving all along.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from feedbot import __version__
from feedbot.clock import utcnow
from feedbot.delivery.ownership import as_utc, identity
from feedbot.store.db import insert_for, transaction
from feedbot.store.models import Heartbeat

EVERY = timedelta(seconds=30)  # how often a worker says it is alive (and writes its progress)
DEAD_AFTER = timedelta(minutes=3)  # no word for this long: the worker is gone or stuck
SWEEP_STUCK_AFTER = timedelta(minutes=10)  # a digest sweep with no progress this long is stuck


class Beat:
    """One worker process's row."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine, self.clock = engine, clock
        me = identity()
        self.name, self.host, self.pid = str(me), me.host, me.pid
        self.started_at = clock()
        self.progress_at: datetime | None = None  # in memory; written with the next beat
        self._written: datetime | None = None
        self.role: str | None = None  # leader or standby (feedbot.roles), written with each beat
        self.role_since: datetime | None = None
        self.polling = False

    def _upsert(self, **values) -> None:
        now = self.clock()
        values = {"progress_at": self.progress_at, "role": self.role, "role_since": self.role_since,
                  "polling": self.polling, **values}
        with transaction(self.engine) as session:
            insert = insert_for(session)
            row = {"name": self.name, "host": self.host, "pid": self.pid, "version": __version__,
                   "started_at": self.started_at, "seen_at": now, **values}
            session.execute(insert(Heartbeat).values(**row).on_conflict_do_update(
                index_elements=["name"], set_={"seen_at": now, "version": __version__, **values}))
        self._written = self.progress_at

    def alive(self) -> None:
        self._upsert()

    def sweep_started(self) -> None:
        self.progress_at = self.clock()
        self._upsert(sweep_started_at=self.progress_at)

    def sweep_finished(self) -> None:
        self.progress_at = self.clock()
        self._upsert(sweep_finished_at=self.progress_at)

    def progressed(self) -> bool:
        """A digest went out or was recorded; whether the row is due a write (EVERY since the last)."""
        self.progress_at = self.clock()
        return self._written is None or self.progress_at - as_utc(self._written) >= EVERY

    def stopped(self) -> None:
        with transaction(self.engine) as session:
            session.execute(delete(Heartbeat).where(Heartbeat.name == self.name))


@dataclass(frozen=True)
class Seen:
    beat: Heartbeat
    ago: timedelta
    alive: bool
    sweep_stuck: bool

    @property
    def progressing(self) -> bool:
        """Alive, and its digest sweep (if one runs) moved within SWEEP_STUCK_AFTER."""
        return self.alive and not self.sweep_stuck


def workers(session: Session, now: datetime) -> list[Seen]:
    """Every worker that reported, newest first, with whether it counts as alive."""
    out = []
    for beat in session.scalars(select(Heartbeat).order_by(Heartbeat.seen_at.desc())):
        ago = now - as_utc(beat.seen_at)
        started = as_utc(beat.sweep_started_at) if beat.sweep_started_at else None
        finished = as_utc(beat.sweep_finished_at) if beat.sweep_finished_at else None
        moved = max(started, as_utc(beat.progress_at)) if started and beat.progress_at else started
        stuck = started is not None and (finished is None or finished < started) and now - moved > SWEEP_STUCK_AFTER
        out.append(Seen(beat, ago, ago <= DEAD_AFTER and not stuck, stuck))
    return out


def live(session: Session, now: datetime) -> int:
    """How many workers count as alive now (at least 1: the caller is one): the send rate is
    shared among them. A worker that died is counted until DEAD_AFTER: the rate errs low."""
    return max(1, sum(w.ago <= DEAD_AFTER for w in workers(session, now)))


def last_seen(session: Session) -> dict[str, datetime]:
    """When each worker process that reported was last seen, by owner name."""
    return {name: as_utc(seen) for name, seen in session.execute(select(Heartbeat.name, Heartbeat.seen_at))}
