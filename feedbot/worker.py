"""`feedbot worker`: one python-telegram-bot Application answers chats (long polling, or a webhook
with feedbot.webhook) and runs the schedules; `Application.run_polling` (or `run_webhook`) handles
start-up and shutdown, and SIGTERM/SIGINT stop new digests at once (`Worker.on_stop_signal`) before
it shuts down. With FEEDBOT_METRICS_PORT it serves Prometheus metrics (feedbot.metrics).

Its lifecycle hooks start and stop an APScheduler on the bot's event loop with the jobs of
`Worker.jobs`: the inbox sweep (every FEEDBOT_INGEST_EVERY minutes: ingest, then refit the model
when papers arrived — `feedbot.refits`), the sources sweep and the digest sweep (every minute —
`feedbot.delivery.sweep`). A job never stops the worker: its failures are logged and recorded
for `feedbot status`. CPU and database work runs in threads so chat replies stay prompt.
Everything is driven from database state, so a restart resumes where it stopped.

On PostgreSQL several workers run: the jobs of `Worker.LEADING` run on the leader only
(feedbot.roles), long polling on the worker holding the poller's turn (`TurnUpdater`), and every
worker sends what the leader claimed (the `sending` job). On SQLite a second worker is refused.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine
from telegram import Update
from telegram.ext import Application, Updater

from feedbot import metrics as metering
from feedbot import roles, webhook
from feedbot.chat import telegram
from feedbot.clock import utcnow
from feedbot.config import Settings
from feedbot.delivery import heartbeat, recaps, runs
from feedbot.delivery.pacing import MOST_IN_FLIGHT, Pacer
from feedbot.delivery.sweep import DigestSweep
from feedbot.ranking.textmodel import ModelCache
from feedbot.refits import Refits
from feedbot.sources import ingest

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 10
SOURCES_EVERY_MINUTES = 60  # the sources change a few times a day; a repeat answer is a no-op
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
CONNECTIONS = MOST_IN_FLIGHT + 16  # HTTP pool: every digest the sweep may have in flight, and chat answers


class AlreadyRunning(RuntimeError):
    """Another worker holds this database."""


class SingletonLock:
    """One worker per SQLite database: an exclusive lock on a file next to it, held for the life
    of the process (the OS drops it on a crash). On PostgreSQL any number of workers run
    (feedbot.roles decides who leads), so there is nothing to take."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine, self.settings = engine, settings
        self._file = None

    def acquire(self) -> None:
        if self.engine.dialect.name == "postgresql":
            return
        database = self.engine.url.database or ""
        path = Path(database + ".worker.lock") if database and database != ":memory:" else \
            self.settings.data_dir / "worker.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "?"
            self._file.close()
            raise AlreadyRunning(f"another feedbot worker (pid {holder}) is already running on {database}; "
                                 "SQLite takes one worker: stop that one first, or run several on PostgreSQL "
                                 "(DATABASE_URL=postgresql://...)") from None
        self._file.truncate(0)
        self._file.write(str(os.getpid()))
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            self._file.close()


class TurnUpdater(Updater):
    """python-telegram-bot's Updater that long-polls only while this worker holds the poller's
    turn (Telegram serves one poller per bot): it tries every FEEDBOT_LEADER_CHECK_SECONDS, so
    when the poller dies another worker polls within that time. Always polls on SQLite."""

    def __init__(self, application: Application, turn: roles.Turn,
                 on_change: Callable[[bool], None] = lambda polling: None) -> None:
        super().__init__(bot=application.bot, update_queue=application.update_queue)
        self.turn, self.every, self.on_change = turn, turn.every, on_change
        self._turns: asyncio.Task | None = None

    async def start_polling(self, **kwargs) -> asyncio.Queue:  # what run_polling awaits: start taking turns
        self._turns = asyncio.create_task(self._take_turns(kwargs))
        return self.update_queue

    async def _take_turns(self, kwargs: dict) -> None:
        while True:
            try:
                holds = await asyncio.to_thread(self.turn.check)
                if holds and not self.running:
                    await super().start_polling(**kwargs)
                elif not holds and self.running:
                    await super().stop()
                self.on_change(self.running)
            except Exception:  # noqa: BLE001 - try again at the next check
                log.exception("could not take the poller's turn")
            await asyncio.sleep(self.every)

    async def stop_turns(self) -> None:
        """Stop polling and let another worker take the turn at once."""
        if self._turns is not None:
            self._turns.cancel()
            self._turns = None
        if self.running:
            await super().stop()
        self.on_change(False)
        await asyncio.to_thread(self.turn.release)


class Worker:
    """The process's scheduled jobs and their lifecycle: the inbox, sources and digest sweeps
    (each a job of `jobs`), started and stopped by the Application's hooks. Tests call the
    sweeps directly."""

    def __init__(self, settings: Settings, engine: Engine, bot=None, clock: Callable[[], datetime] = utcnow,
                 broadcast_rate: float | None = None, part_pause: float = 1.0, concurrency: int = 4,
                 models: ModelCache | None = None, metrics: metering.Metrics | None = None) -> None:
        self.settings, self.engine, self.bot, self.clock = settings, engine, bot, clock
        self.models = models or ModelCache(settings.model_dir)
        self.metrics = metrics or metering.Metrics()
        self.stopping = asyncio.Event()
        self.heartbeat = heartbeat.Beat(engine, clock)
        self.scheduler = AsyncIOScheduler()
        # Delivery status writes go through one thread: concurrent SQLite writers would only
        # queue on the database lock (and its busy handler sleeps); one writer never waits.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="feedbot-db")
        self.refits = Refits(engine, settings.model_dir, self.models, clock)
        rate = settings.send_rate if broadcast_rate is None else broadcast_rate
        self.digests = DigestSweep(settings, engine, bot, clock, self.models, self.refits, self.heartbeat,
                                   self._write, self.stopping, Pacer(rate), part_pause, concurrency, self.metrics,
                                   rate)
        self.leader = roles.Turn(engine, "leader", settings.leader_check_seconds, clock)
        self._failed: set[str] = set()  # jobs whose last run failed (recorded as such)
        self._beating: asyncio.Task | None = None  # a heartbeat write started by a callback

    @property
    def pacer(self) -> Pacer:
        return self.digests.pacer

    @pacer.setter
    def pacer(self, pacer: Pacer) -> None:
        self.digests.pacer = pacer

    async def _write(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._writer, function, *args)

    async def sweep_digests(self) -> Counter:
        return await self.digests.run()

    async def sweep_recaps(self) -> Counter:
        """Send the Sunday recaps due now (feedbot.delivery.recaps), each once."""
        return await recaps.sweep(self.engine, self.settings, self.bot, self.models, self.clock, self.pacer,
                                  self.stopping)

    async def sweep_inbox(self) -> list[ingest.IngestReport]:
        """Ingest the inbox, then refit whenever the corpus moved on, whoever ingested (this
        sweep, the CLI, another host): the model is versioned by the corpus."""
        trouble, reports = runs.Trouble(), []
        with trouble.step("inbox"):
            reports = await asyncio.to_thread(ingest.sweep_inbox, self.engine, self.settings.inbox)
        for report in reports:
            level = logging.WARNING if report.status in ("failed", "retry") else logging.INFO
            log.log(level, "inbox %s", report.line())
        refitted = await asyncio.to_thread(self.refits.run)
        summary = f"{len(reports)} dumps, {sum(r.new for r in reports)} new papers, " \
                  f"{sum(r.status == 'failed' for r in reports)} failed" + (", model refitted" if refitted else "")
        await asyncio.to_thread(runs.record, self.engine, "inbox", self.clock(), summary, trouble.error)
        return reports

    async def sweep_sources(self) -> list[ingest.IngestReport]:
        """Fetch the built-in sources of FEEDBOT_SOURCES, then refit when they brought papers."""
        from feedbot.sources import run as sources

        trouble, reports = runs.Trouble(), []
        with trouble.step("sources"):
            reports = await asyncio.to_thread(sources.run_configured, self.engine, self.settings)
        for report in reports:
            log.log(logging.WARNING if report.status == "failed" else logging.INFO, "source %s", report.line())
        refitted = await asyncio.to_thread(self.refits.run) if any(r.new for r in reports) else False
        summary = "; ".join(r.line() for r in reports) + (", model refitted" if refitted else "")
        await asyncio.to_thread(runs.record, self.engine, "sources", self.clock(), summary, trouble.error)
        return reports

    # --- scheduling: the Application's lifecycle hooks -----------------------------------------

    LEADING = ("inbox", "digests", "recaps", "sources")  # the jobs that run once: on the leader only
    RECORDS_ITS_RUNS = ("inbox", "digests", "recaps", "sources", "sending")  # the others are recorded when they fail

    def jobs(self) -> list[tuple[Callable[[], Awaitable], float, str]]:
        """The scheduled jobs: (coroutine function, minutes between runs, id). Add one here; list
        it in LEADING when it must run on one worker only."""
        check = self.settings.leader_check_seconds / 60
        several = self.engine.dialect.name == "postgresql"  # on SQLite the one worker sends in its sweep
        return [
            (self.check_roles, check, "roles"),
            (self.sweep_inbox, self.settings.ingest_every_minutes, "inbox"),
            (self.sweep_digests, 1, "digests"),
            (self.sweep_recaps, 1, "recaps"),
            (self.beat, heartbeat.EVERY.total_seconds() / 60, "heartbeat"),
        ] + ([(self.send_claimed, check, "sending")] if several else []) \
            + ([(self.sweep_sources, SOURCES_EVERY_MINUTES, "sources")] if self.settings.sources else [])

    async def beat(self) -> None:
        await self._write(self.heartbeat.alive)
        await asyncio.to_thread(self.digests.share_rate)

    async def send_claimed(self) -> None:
        """Every worker sends what the leader claimed (the leader sends with its sweep too)."""
        await self.digests.run_sending()

    @property
    def leading(self) -> bool:
        return self.leader.held and self.leader.since is not None

    async def check_roles(self) -> None:
        """Keep the lead, or take it when the leader is gone; a new leader runs its jobs at once."""
        was = self.leading
        leads = await asyncio.to_thread(self.leader.check)
        self.metrics.leader.set(int(leads))
        if leads == was and self.heartbeat.role is not None:
            return
        self.heartbeat.role = roles.LEADER if leads else roles.STANDBY
        self.heartbeat.role_since = self.leader.since if leads else self.clock()
        await self._write(self.heartbeat.alive)
        if leads and self.scheduler.running:
            now = datetime.now().astimezone()
            for name in self.LEADING:
                if self.scheduler.get_job(name) is not None:
                    self.scheduler.modify_job(name, next_run_time=now)

    def polling_changed(self, polling: bool) -> None:
        """Said at once in the heartbeat, for `feedbot status`."""
        if polling != self.heartbeat.polling:
            self.heartbeat.polling = polling
            self._beating = asyncio.get_running_loop().create_task(self._write(self.heartbeat.alive))

    def _leading_only(self, job):
        """A job that runs only while this worker leads: the lock is checked first, so a worker
        whose lock went with its connection since the last check steps down instead of running it."""
        async def run() -> None:
            if self.leading:
                await self.check_roles()
            if self.leading:
                await job()
        run.__name__ = job.__name__
        return run

    def _guarded(self, job, name: str | None = None):
        """A job that never raises: a failure is logged and recorded as its run's error (under
        `name`, by default the job's own: `sweep_inbox` is "inbox")."""
        name = name or job.__name__.removeprefix("sweep_")

        async def run() -> None:
            started, ok = time.perf_counter(), False
            try:
                await job()
                ok = True
                if name in self._failed and name not in self.RECORDS_ITS_RUNS:  # shown failing until it works
                    await asyncio.to_thread(runs.record, self.engine, name, self.clock(), "ok")
                    self._failed.discard(name)
            except Exception as exc:  # noqa: BLE001 - it runs again at its next time
                trouble = runs.Trouble()
                trouble.add(f"scheduled job {name}", exc)
                try:
                    await asyncio.to_thread(runs.record, self.engine, name, self.clock(), "failed", trouble.error)
                    self._failed.add(name)
                except Exception:  # noqa: BLE001 - the database may be what fails
                    log.exception("could not record the failure of job %s", name)
            self.metrics.sweep(name, time.perf_counter() - started, ok)
        run.__name__ = job.__name__
        return run

    async def post_init(self, application: Application) -> None:
        """Before polling starts: say we are alive, register the command menu, start the jobs."""
        log.info("worker starting: database %s, inbox %s, owner %s", self.settings.safe_database_url,
                 self.settings.inbox, self.heartbeat.name)
        await self.check_roles()
        await telegram.set_menu(application.bot)
        start = datetime.now().astimezone()
        for job, minutes, name in self.jobs():
            job = self._guarded(job, name)
            self.scheduler.add_job(self._leading_only(job) if name in self.LEADING else job, "interval",
                                   minutes=minutes, next_run_time=start, id=name, max_instances=1, coalesce=True)
        self.scheduler.start()
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:  # replaces run_polling's own handler, which only stops polling
            loop.add_signal_handler(signum, self.on_stop_signal)

    def on_stop_signal(self) -> None:
        """SIGTERM/SIGINT: no new digest goes out from this moment (the ones in flight finish),
        then SystemExit ends run_polling as its own handler would. A second signal while shutting
        down is ignored, so it cannot cut short the wait for the send in flight."""
        if self.stopping.is_set():
            return
        log.info("worker stopping: no new work, finishing the send in flight")
        self.stopping.set()
        self.scheduler.pause()
        raise SystemExit

    async def post_stop(self, application: Application) -> None:
        """Polling has stopped: start no new work and let the send in flight finish (the bot still
        works until shutdown), within the shutdown budget; then end the jobs still running."""
        if not self.stopping.is_set():  # stopped other than by a signal
            log.info("worker stopping: no new work, finishing the send in flight")
        self.stopping.set()
        self.scheduler.pause()  # shutdown would cancel the running jobs at once
        updater = getattr(application, "updater", None)
        if isinstance(updater, TurnUpdater):
            await updater.stop_turns()
        try:
            await asyncio.wait_for(self.digests.lock.acquire(), timeout=SHUTDOWN_SECONDS - 4)
        except TimeoutError:
            log.warning("a send was still in flight at shutdown; its row is left for the next start")
            try:  # the digests already sent in full are recorded as sent, not left to turn uncertain
                await self.digests.flush_outcomes()
            except Exception:
                log.exception("could not record the finished deliveries; the next start marks them uncertain")
        self.scheduler.shutdown(wait=False)

    async def post_shutdown(self, application: Application) -> None:
        await asyncio.to_thread(self.leader.release)
        await self._write(self.heartbeat.stopped)
        log.info("worker stopped")


def application(settings: Settings, engine: Engine, metrics: metering.Metrics | None = None) -> Application:
    """The worker process: the bot's Application, whose lifecycle hooks run the sweeps."""
    models = ModelCache(settings.model_dir)  # one cache: a refit by the sweeps is what the chat loads
    metrics = metrics or metering.Metrics()
    app = telegram.build_application(settings, metering.MeteredChat(engine, settings, models=models, metrics=metrics),
                                     rate_limiter=metering.MeteredRateLimiter(metrics, max_retries=5),
                                     connections=CONNECTIONS)
    worker = Worker(settings, engine, app.bot, models=models, metrics=metrics)
    app.post_init, app.post_stop, app.post_shutdown = worker.post_init, worker.post_stop, worker.post_shutdown
    if not settings.webhook_url:  # with a webhook every worker answers the updates posted to it
        app.updater = TurnUpdater(app, roles.Turn(engine, "poller", settings.leader_check_seconds),
                                  worker.polling_changed)
    return app


def run(settings: Settings, engine: Engine) -> int:
    """Hold the singleton lock and poll until SIGTERM/SIGINT; 3 when another worker runs."""
    lock = SingletonLock(engine, settings)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        log.error("%s", exc)
        print(f"feedbot worker: {exc}", flush=True)
        return 3
    metrics = metering.Metrics()
    server = None
    try:
        try:  # a port in use is said plainly, before anything starts
            if settings.metrics_port:
                server, _ = metering.serve(metrics, engine, settings.metrics_listen, settings.metrics_port)
            if settings.webhook_url:
                webhook.check_port(settings)
        except OSError as exc:
            log.error("%s", exc)
            print(f"feedbot worker: {exc}", flush=True)
            return 2
        app = application(settings, engine, metrics)
        if settings.webhook_url:
            webhook.run(app, settings, STOP_SIGNALS)
        else:
            # Updates that arrived while no worker ran are answered, not dropped.
            app.run_polling(poll_interval=0.0, timeout=30, allowed_updates=Update.ALL_TYPES,
                            drop_pending_updates=False, stop_signals=STOP_SIGNALS)
    finally:
        if server is not None:
            server.shutdown()
        lock.release()
    return 0
