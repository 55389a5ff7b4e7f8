"""The worker's Prometheus metrics, served on FEEDBOT_METRICS_PORT.

Events the worker sees (messages to Telegram, finished deliveries, sweeps, vote presses) are
counters and histograms in a registry of the worker's own. What the database holds (subscribers,
digests due but unsent, papers by source, likes and dislikes) is read at scrape time by
`DatabaseCollector`, so those numbers are right whichever process wrote them and survive restarts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session
from telegram.error import TelegramError
from telegram.ext import AIORateLimiter

from feedbot.chat.conversation import Chat
from feedbot.clock import utcnow
from feedbot.delivery import due
from feedbot.store.models import Delivery, Dump, Subscriber, Vote

log = logging.getLogger(__name__)

MESSAGE_METHODS = ("sendMessage", "sendDocument")  # Bot API calls that put a message in a chat
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
DUE_EVERY = 60.0  # seconds between two counts of the subscribers due (the digest sweep's pace)
SWEEP_SECONDS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800)


class Metrics:
    """The event metrics of one worker, in their own registry (so tests can run many workers)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.messages = Counter(
            "feedbot_telegram_messages", "Messages sent to Telegram (result=sent) or refused (result=error class)",
            ["method", "result"], registry=registry)
        self.deliveries = Counter("feedbot_deliveries", "Digests the digest sweep finished sending, by final state",
                                  ["status"], registry=registry)
        self.digest_seconds = Histogram("feedbot_digest_send_seconds", "Time to send one digest, every part",
                                        buckets=SECONDS, registry=registry)
        self.vote_seconds = Histogram("feedbot_vote_seconds", "Time to store a 👍/👎 press and build its answer",
                                      buckets=SECONDS, registry=registry)
        self.sweep_seconds = Histogram("feedbot_sweep_seconds", "Duration of each scheduled job run", ["sweep"],
                                       buckets=SWEEP_SECONDS, registry=registry)
        self.sweep_failures = Counter("feedbot_sweep_failures", "Scheduled job runs that raised", ["sweep"],
                                      registry=registry)
        self.sweep_success = Gauge("feedbot_sweep_last_success_timestamp_seconds",
                                   "Unix time the scheduled job last finished without error", ["sweep"],
                                   registry=registry)
        self.leader = Gauge("feedbot_leader", "1 while this worker leads the schedules (one leader per database)",
                            registry=registry)

    def message(self, method: str, error: BaseException | None) -> None:
        if method in MESSAGE_METHODS:
            self.messages.labels(method, "sent" if error is None else type(error).__name__).inc()

    def delivered(self, status: str, seconds: float) -> None:
        self.deliveries.labels(status).inc()
        self.digest_seconds.observe(seconds)

    def sweep(self, name: str, seconds: float, ok: bool) -> None:
        self.sweep_seconds.labels(name).observe(seconds)
        if ok:
            self.sweep_success.labels(name).set(time.time())
        else:
            self.sweep_failures.labels(name).inc()


class MeteredRateLimiter(AIORateLimiter):
    """python-telegram-bot's rate limiter, counting each message call's final outcome (after its
    retries): every message the bot sends passes through here, digests and replies alike."""

    def __init__(self, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics

    async def process_request(self, callback, args, kwargs, endpoint, data, rate_limit_args):
        try:
            result = await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)
        except TelegramError as exc:
            self.metrics.message(endpoint, exc)
            raise
        self.metrics.message(endpoint, None)
        return result


class MeteredChat(Chat):
    """The conversation, timing each vote press (stored, committed, answer built)."""

    def __init__(self, *args: Any, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics

    def button(self, user, data, keyboard=None):
        started = time.perf_counter()
        try:
            return super().button(user, data, keyboard)
        finally:
            if (data or "").startswith("v:"):
                self.metrics.vote_seconds.observe(time.perf_counter() - started)


def source_of(dump_name: str) -> str:
    """Which source a dump row came from: fetched batches are named `hf …` / `arxiv:… …`."""
    if dump_name.startswith("hf "):
        return "hf"
    if dump_name.startswith("arxiv:"):
        return "arxiv"
    return "inbox"


class DatabaseCollector(Collector):
    """Gauges read from the database at each scrape. A database that cannot be read gives
    feedbot_database_up 0 (and the event metrics still), not a failed scrape. Who is due is
    decided for every subscriber (`due.plan`, as the digest sweep does each minute), so it is
    recomputed at most every `due_every` seconds: scrapes stay cheap at any scrape interval."""

    def __init__(self, engine: Engine, clock=utcnow, due_every: float = DUE_EVERY) -> None:
        self.engine, self.clock, self.due_every = engine, clock, due_every
        self._due: tuple[float, int, int] | None = None  # (monotonic time, last delivery id then, subscribers due)

    def _waiting(self, session: Session, now: datetime) -> int:
        """Subscribers due and unclaimed: the last count, less the digests claimed since it was
        made (rows past the last delivery id then, read on the primary key: in flight or done now,
        and counted as such, not twice)."""
        if self._due is None or time.monotonic() - self._due[0] >= self.due_every:
            last_id = session.scalar(select(func.coalesce(func.max(Delivery.id), 0)))
            self._due = (time.monotonic(), last_id, len(due.plan(session, now).due))
        _, last_id, count = self._due
        claimed = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.id > last_id))
        return max(0, count - claimed)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("feedbot_database_up", "Whether the last scrape could read the database")
        try:
            families = self.read(self.clock())
        except Exception:
            log.exception("metrics: could not read the database")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def read(self, now: datetime) -> list[GaugeMetricFamily]:
        with Session(self.engine) as session:  # read-only: takes no lock
            states = dict(session.execute(select(Subscriber.state, func.count()).group_by(Subscriber.state)).all())
            in_flight = session.scalar(select(func.count()).select_from(Delivery)
                                       .where(Delivery.status.in_(("claimed", "sending"))))
            waiting = self._waiting(session, now)
            papers = session.execute(select(Dump.file_name, Dump.new_papers).where(Dump.status == "ingested")).all()
            likes, dislikes = session.execute(select(
                func.coalesce(func.sum(case((Vote.value > 0, 1), else_=0)), 0),
                func.coalesce(func.sum(case((Vote.value < 0, 1), else_=0)), 0))).one()
        subscribers = GaugeMetricFamily("feedbot_subscribers", "Subscribers by state (active: live)",
                                        labels=["state"])
        for state in ("active", "stopped", "blocked"):
            subscribers.add_metric([state], states.get(state, 0))
        unsent = GaugeMetricFamily("feedbot_deliveries_due_unsent",
                                   "Digests due now and not yet sent: due unclaimed, claimed or sending")
        unsent.add_metric([], waiting + in_flight)
        by_source: dict[str, int] = {"inbox": 0, "hf": 0, "arxiv": 0}
        for name, new in papers:
            by_source[source_of(name)] += new or 0
        ingested = GaugeMetricFamily("feedbot_papers_ingested", "New papers stored, by the source that brought them",
                                     labels=["source"])
        for source, count in by_source.items():
            ingested.add_metric([source], count)
        votes = GaugeMetricFamily("feedbot_votes", "Votes held: 👍 (like) and 👎 (dislike)", labels=["vote"])
        votes.add_metric(["like"], likes)
        votes.add_metric(["dislike"], dislikes)
        return [subscribers, unsent, ingested, votes]


def serve(metrics: Metrics, engine: Engine, host: str, port: int, clock=utcnow, due_every: float = DUE_EVERY):
    """Serve /metrics on host:port (0: any free port) from a daemon thread; the (server, thread)
    pair, so the caller can shut it down. The database gauges join the registry here."""
    try:
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {host}:{port} (FEEDBOT_METRICS_PORT): {exc}") from exc
    metrics.registry.register(DatabaseCollector(engine, clock, due_every))
    log.info("metrics on http://%s:%s/metrics", host, server.server_port)
    return server, thread
