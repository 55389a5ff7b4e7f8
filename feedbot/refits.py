"""The worker's refits of the text model: when the corpus moved on, in a child process (a fit is
seconds of CPU under the GIL, and the worker answers votes), whoever added the papers.

A refit that fails (disk full, an unwritable model folder, the child killed for memory) is
logged and recorded as the `refit` job's failure, shown by `feedbot status` and failing `status
--check` after its grace; digests keep going out on the last good model, and the next try waits
1, 2, 4 … up to 60 minutes rather than starting a fit every minute.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from feedbot.delivery import runs
from feedbot.ranking import textmodel
from feedbot.ranking.textmodel import ModelCache

log = logging.getLogger(__name__)

FIRST_RETRY = timedelta(minutes=1)
LAST_RETRY = timedelta(minutes=60)


class Refits:
    """Refit when stale; after a failure, not before the back-off says."""

    def __init__(self, engine: Engine, model_dir: Path, models: ModelCache, clock: Callable[[], datetime]) -> None:
        self.engine, self.model_dir, self.models, self.clock = engine, model_dir, models, clock
        self.failures = 0
        self.next_try: datetime | None = None

    def stale(self) -> bool:
        with Session(self.engine) as session:
            return self.models.stale(session)

    def run(self) -> bool:
        """Refit if the corpus moved on and the back-off allows; whether a new model was saved.
        Never raises: a failure is logged, recorded and retried later."""
        now = self.clock()
        if self.next_try is not None and now < self.next_try:
            return False
        try:
            if not self.stale():
                return False
            refitted = self.fit()
        except Exception as exc:  # noqa: BLE001 - ranking goes on with the last good model
            self.failures += 1
            wait = min(FIRST_RETRY * 2 ** (self.failures - 1), LAST_RETRY)
            self.next_try = now + wait
            trouble = runs.Trouble()
            trouble.add("refit", exc)
            minutes = int(wait.total_seconds() // 60)
            self._record(now, f"failed {self.failures} time(s) in a row",
                         f"{trouble.error}; ranking on the last good model; next try in {minutes} min")
            return False
        if self.failures or refitted:
            self._record(now, "model refitted" if refitted else "model up to date", None)
        self.failures, self.next_try = 0, None
        return refitted

    def fit(self) -> bool:
        url = self.engine.url.render_as_string(hide_password=False)
        if url.startswith("sqlite") and (self.engine.url.database or ":memory:") == ":memory:":
            return refit(url, str(self.model_dir))  # a private database: only here
        context = multiprocessing.get_context("spawn")  # forking a threaded process is unsafe
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            return pool.submit(refit, url, str(self.model_dir)).result()

    def _record(self, now: datetime, summary: str, error: str | None) -> None:
        try:
            runs.record(self.engine, runs.REFIT, now, summary, error)
        except Exception:  # noqa: BLE001 - the database may be what fails; the log has it
            log.exception("could not record the refit's outcome")


def refit(url: str, model_dir: str) -> bool:
    """Fit and save the text model when the corpus moved on; whether it did (the refit child)."""
    from feedbot.store.db import make_engine

    engine = make_engine(url)
    try:
        with Session(engine) as session:
            try:
                return textmodel.ensure(session, Path(model_dir))[1]
            except textmodel.NoPapersError:  # no papers yet
                return False
    finally:
        engine.dispose()
