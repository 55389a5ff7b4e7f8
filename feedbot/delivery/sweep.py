"""The digest sweep, every minute: refit when stale, resume what is in flight, record missed
days, rank and claim who is due, send it all (paced, with as many in flight as the pace needs at
Telegram's answer time: `pacing.Window`), record the outcomes.

Every step may fail — the refit, recovery, planning, ranking, claiming, rendering, sending,
recording. None stops the others: each failure is logged and kept (`runs.Trouble`), the digests
that can still go out go out, and the run is recorded with its errors for `feedbot status`.
Outcomes that could not be written are kept and written by the next flush.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from feedbot.config import Settings
from feedbot.delivery import deliveries, due, heartbeat, runs, telegram_send
from feedbot.delivery.batching import Batches
from feedbot.delivery.heartbeat import Beat
from feedbot.delivery.pacing import Pacer, Window
from feedbot.ranking.textmodel import ModelCache
from feedbot.refits import Refits
from feedbot.store.db import transaction

if TYPE_CHECKING:  # the worker passes its metrics in; delivery imports nothing above it
    from feedbot.metrics import Metrics

log = logging.getLogger(__name__)

FLUSH_EVERY = 64  # end states written per transaction (or sooner: every heartbeat.EVERY)


class DigestSweep:
    """One sweep at a time; `run` is the scheduled job, `prepare` and `deliver` its halves."""

    def __init__(self, settings: Settings, engine: Engine, bot, clock: Callable[[], datetime], models: ModelCache,
                 refits: Refits, beat: Beat, write: Callable[..., Awaitable], stopping: asyncio.Event,
                 pacer: Pacer, part_pause: float = 1.0, concurrency: int = 4,
                 metrics: Metrics | None = None, rate: float = 0.0) -> None:
        self.settings, self.engine, self.bot, self.clock = settings, engine, bot, clock
        self.models, self.refits, self.beat, self.write, self.stopping = models, refits, beat, write, stopping
        self.pacer, self.part_pause, self.concurrency = pacer, part_pause, concurrency
        self.metrics, self.rate = metrics, rate  # rate: FEEDBOT_SEND_RATE, shared by the live workers
        self.window = Window(concurrency)  # digests in flight: `concurrency` at first, then sized to the pace
        self.lock = asyncio.Lock()
        self._results: list[deliveries.Result] = []
        self._sending_failed = False

    def prepare(self, trouble: runs.Trouble | None = None) -> tuple[list[deliveries.Outgoing], Counter]:
        """Resume what is in flight, record missed days, then rank and claim who is due. Each
        write is a short transaction; planning and ranking only read."""
        trouble = trouble if trouble is not None else runs.Trouble()
        now, counts = self.clock(), Counter()
        resumed: list[deliveries.Outgoing] = []
        with trouble.step("resuming deliveries in flight"), transaction(self.engine) as session:
            resumed, counts["uncertain"], counts["skipped"] = deliveries.recover(
                session, now, self.settings.paper_link, trouble)
        counts["resumed"] = len(resumed)
        plan, model = due.Plan(), None
        with trouble.step("planning who is due"), Session(self.engine) as session:
            plan = due.plan(session, now)
        if plan.due:
            loaded = False
            with trouble.step("loading the text model"), Session(self.engine) as session:
                model, loaded = self.models.get(session), True
            if not loaded:
                plan.due = []  # nothing to rank with: they wait for the next sweep
        with trouble.step("recording missed days"), transaction(self.engine) as session:
            counts["skipped"] += due.skip_missed(session, plan.missed, now)
        fresh: list[deliveries.Outgoing] = []
        with trouble.step("ranking and claiming"):
            fresh = deliveries.prepare(self.engine, model, plan.due, now, self.settings, deliveries.SCHEDULED, trouble)
        return resumed + fresh, +counts

    async def run(self) -> Counter:
        """Send every digest that is due (and any claimed but unsent)."""
        async with self.lock:
            if self.stopping.is_set():
                return Counter()
            trouble = runs.Trouble()
            with trouble.step("heartbeat"):
                await self.write(self.beat.sweep_started)
            await self.flush_outcomes(trouble)  # any a failed write left behind
            await asyncio.to_thread(self.refits.run)
            outgoing, results = await asyncio.to_thread(self.prepare, trouble)
            await self.send_claimed(outgoing, results, trouble)
            if outgoing or results["uncertain"] or results["skipped"] or trouble.errors:
                log.info("digest sweep: %s, at most %s in flight", dict(results), self.window.peak)
            summary = runs.counts(results, "nothing due")
            try:
                await asyncio.to_thread(runs.record, self.engine, "digests", self.clock(), summary, trouble.error)
            except Exception:  # noqa: BLE001 - the database may be what fails; the log has it
                log.exception("could not record the digest sweep")
            with trouble.step("heartbeat"):
                await self.write(self.beat.sweep_finished)
            return results

    async def send_claimed(self, prepared: list[deliveries.Outgoing], results: Counter,
                           trouble: runs.Trouble) -> None:
        """Send claimed digests until none is left: `prepared` (this sweep's, already rendered)
        and any other worker's. Each sender paces, then takes the oldest claimed row no other
        process is taking (`deliveries.take`), so the workers share the rows and the rate."""
        await asyncio.to_thread(self.share_rate, trouble)
        cache, skip = {item.delivery_id: item for item in prepared}, set()

        async def fetch(count: int) -> list[tuple[deliveries.Outgoing, int]]:
            if self.stopping.is_set():  # no row turns `sending` once the worker stops: they stay `claimed`
                return []
            return await self.write(deliveries.take, self.engine, cache, skip, self.clock(),
                                    self.settings.paper_link, trouble, count)

        async def unused(taken: tuple[deliveries.Outgoing, int]) -> None:
            await self.write(deliveries.hand_back, self.engine, taken[0].delivery_id, self.clock())

        rows = Batches(fetch, unused)  # senders asking together take their rows in one transaction
        senders: set[asyncio.Task] = set()
        drained = False  # a sender found nothing left to take
        broken = False  # a sender could not take a row: no new sender in its place (the others go on)

        async def sender() -> None:
            nonlocal drained, broken
            while not self.stopping.is_set() and not drained:
                if len(senders) > self.window.size(self.pacer.interval):
                    return  # the window shrank
                try:
                    await self.pacer.wait()  # before the row reads `sending`: a crash here leaves it claimed
                    taken = await rows.get()
                except Exception as exc:  # noqa: BLE001 - the other senders go on; the next run retries
                    trouble.add("taking a delivery to send", exc)
                    broken = True
                    return
                if taken is None or self.stopping.is_set():
                    drained = drained or taken is None
                    if taken is not None:  # stopping: handed back untouched, for whoever runs next
                        await unused(taken)
                    return
                item, confirmed = taken
                try:
                    status = await self.deliver(item, trouble, confirmed)
                    results[status] += 1
                    if status == "claimed":  # handed back (Telegram asked to wait): the next sweep resumes it
                        skip.add(item.delivery_id)
                except Exception as exc:  # noqa: BLE001 - handed back: the next sweep resumes it
                    trouble.add(f"sending delivery {item.delivery_id}", exc)
                    skip.add(item.delivery_id)  # tried once per run: it waits for the next sweep
                    with trouble.step(f"handing delivery {item.delivery_id} back"):
                        await self.write(deliveries.hand_back, self.engine, item.delivery_id, self.clock())

        self.window.peak = 0
        try:  # as many senders as the window says: it grows with Telegram's answer time
            while True:
                while not drained and not broken and not self.stopping.is_set() \
                        and len(senders) < self.window.size(self.pacer.interval):
                    task = asyncio.create_task(sender())
                    senders.add(task)
                    task.add_done_callback(senders.discard)
                self.window.peak = max(self.window.peak, len(senders))
                if not senders:
                    break
                await asyncio.wait(set(senders), timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            for task in senders:
                task.cancel()
            raise
        await rows.settled()  # rows fetched for no sender are back to `claimed` before the run ends
        await self.flush_outcomes(trouble)

    async def run_sending(self) -> Counter:
        """A standby's share of the work: send what the leader claimed (every worker sends).
        Nothing to do while this worker's own sweep runs: it sends them."""
        if self.lock.locked():
            return Counter()
        async with self.lock:
            if self.stopping.is_set():
                return Counter()
            trouble, results = runs.Trouble(), Counter()
            await self.flush_outcomes(trouble)
            await self.send_claimed([], results, trouble)
            if results or trouble.errors or self._sending_failed:  # a failure stays shown until a run works
                self._sending_failed = bool(trouble.errors)
                log.info("sending: %s", dict(results))
                summary = runs.counts(results, "nothing to send")
                try:
                    await asyncio.to_thread(runs.record, self.engine, "sending", self.clock(), summary, trouble.error)
                except Exception:  # noqa: BLE001 - the database may be what fails; the log has it
                    log.exception("could not record the sending run")
            return results

    def share_rate(self, trouble: runs.Trouble | None = None) -> None:
        """Pace at FEEDBOT_SEND_RATE / the live workers (from their heartbeats), so together they
        stay under it."""
        if self.rate <= 0 or not hasattr(self.pacer, "set_rate"):
            return
        with (trouble or runs.Trouble()).step("sharing the send rate"), Session(self.engine) as session:
            self.pacer.set_rate(self.rate / heartbeat.live(session, self.clock()))

    async def deliver(self, item: deliveries.Outgoing, trouble: runs.Trouble | None = None,
                      started: int | None = None) -> str:
        """Send one claimed digest (see feedbot.delivery.deliveries for the rules); its end state.
        `started`: the row is already `sending` (taken), with that many parts confirmed."""
        paced = 0.0  # seconds spent waiting for the pace: not the send's own time

        async def pause(index: int) -> None:
            nonlocal paced
            if index:
                await asyncio.sleep(self.part_pause)
            waited = time.perf_counter()
            await self.pacer.wait()
            paced += time.perf_counter() - waited

        began = time.perf_counter()
        transport = telegram_send.telegram_transport(self.bot, self.settings.paid_broadcast)
        result = await deliveries.send(item, transport, self.write, self.engine, self.clock, pause, started)
        if result is None:
            return "taken"
        if result.message_ids:
            self.window.observe((time.perf_counter() - began - paced) / len(result.message_ids))
        if self.metrics is not None:
            self.metrics.delivered(result.status, time.perf_counter() - began)
        # End states are written in batches: a crash before the write leaves the row `sending`,
        # which a restart turns into `uncertain` (never re-sent), so batching risks no double.
        self._results.append(result)
        progress_due = self.beat.progressed()  # every heartbeat.EVERY: outcomes and progress written
        if len(self._results) >= FLUSH_EVERY or progress_due:
            await self.flush_outcomes(trouble)
        if progress_due:
            with (trouble or runs.Trouble()).step("heartbeat"):
                await self.write(self.beat.alive)
        log.info("delivery id=%s subscriber=%s date=%s status=%s parts=%s/%s messages=%s%s", item.delivery_id,
                 item.subscriber_id, item.local_date, result.status, result.confirmed, len(item.replies),
                 result.message_ids, f" error={result.error}" if result.error else "")
        return result.status

    async def flush_outcomes(self, trouble: runs.Trouble | None = None) -> None:
        """Write the end states gathered so far; on failure they are kept for the next flush."""
        results, self._results = self._results, []
        if not results:
            return
        try:
            await self.write(deliveries.write_results, self.engine, results, self.clock())
        except Exception as exc:
            self._results = results + self._results
            if trouble is None:
                raise
            trouble.add("recording delivery outcomes", exc)
