"""Each scheduled job's last run (the `sweeps` table): what it did, and whether it is failing.

Any step of a sweep may raise — a refit, ranking, claiming, rendering, sending, recording, the
inbox or a source. A step's failure never stops the others: `Trouble` logs it with its traceback
and keeps its words; the run is recorded with them, so `feedbot status` shows what fails since
when, and `status --check` fails until a run of that job succeeds again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from feedbot.delivery.ownership import as_utc
from feedbot.store.db import insert_for, transaction
from feedbot.store.models import Sweep

log = logging.getLogger(__name__)

REFIT = "refit"
GRACE = {REFIT: timedelta(minutes=30)}  # digests go out on the last good model meanwhile


@dataclass
class Trouble:
    """The errors met by the steps of one run, each logged once."""

    errors: list[str] = field(default_factory=list)

    def add(self, step: str, exc: BaseException) -> None:
        log.error("%s failed: %s: %s", step, type(exc).__name__, exc, exc_info=exc)
        self.errors.append(f"{step}: {type(exc).__name__}: {exc}"[:500])

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run a step; an exception in it is logged and kept, and the run goes on."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - every failure is logged and shown; the sweep goes on
            self.add(name, exc)

    @property
    def error(self) -> str | None:
        return "; ".join(self.errors)[:2000] or None


def counts(states: Mapping[str, int], nothing: str) -> str:
    """Counts by state as a run's summary or a status line says them ("sent 3, blocked 1"), or
    `nothing` when there are none."""
    return ", ".join(f"{k} {v}" for k, v in sorted(states.items())) or nothing


def record(engine: Engine, name: str, now: datetime, summary: str, error: str | None = None) -> None:
    """Store a run of job `name`; a failing run keeps the time the failures began."""
    with transaction(engine) as session:
        insert = insert_for(session)
        since = None
        if error:
            since = session.scalar(select(Sweep.failing_since).where(Sweep.name == name)) or now
        values = {"ran_at": now, "summary": summary[:2000], "error": error, "failing_since": since}
        session.execute(insert(Sweep).values(name=name, **values).on_conflict_do_update(
            index_elements=["name"], set_=values))


def failing(session: Session, now: datetime) -> list[str]:
    """Jobs whose last run failed (a refit only after its grace): what `status --check` fails on."""
    out = []
    for sweep in session.scalars(select(Sweep).where(Sweep.error.is_not(None)).order_by(Sweep.name)):
        since = as_utc(sweep.failing_since or sweep.ran_at)
        if now - since >= GRACE.get(sweep.name, timedelta(0)):
            out.append(f"{sweep.name} failing since {since:%Y-%m-%d %H:%M} UTC: {sweep.error[:300]}")
    return out
