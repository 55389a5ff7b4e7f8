"""The admin's views of delivery: what `feedbot status`, `feedbot subscribers` and `feedbot digest
--dry-run` print, as lines of text. Each reads in the session it is given; callers pass a
read-only one, so a view never takes a lock the worker waits on and never writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from feedbot.config import Settings
from feedbot.delivery import digests, due, heartbeat, reasons, rows, runs, schedule
from feedbot.delivery.messages import plain
from feedbot.delivery.ownership import STALE, as_utc
from feedbot.ranking.textmodel import ModelCache
from feedbot.store.models import Delivery, Subscriber, Sweep


def ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"


def stuck(session: Session, now: datetime, seen: list[heartbeat.Seen] | None = None) -> list[Delivery]:
    """Rows in flight that stopped progressing: untouched for STALE, and no progress for STALE
    from the worker sending them (a `sending` row's owner; any worker for a `claimed` row queued
    behind a broadcast). A long broadcast that keeps moving leaves nothing stuck, however long."""
    seen = heartbeat.workers(session, now) if seen is None else seen
    moving = {w.beat.name for w in seen
              if w.progressing and w.beat.progress_at and now - as_utc(w.beat.progress_at) < STALE}
    return [r for r in rows.in_flight_since(session, now, STALE)
            if not (moving and r.status == "claimed" or r.owner in moving)]


def health(session: Session, now: datetime) -> list[str]:
    """What `status --check` fails on: no live worker, a digest sweep that stopped progressing,
    deliveries stuck in flight, a job whose last run failed (a refit after its grace)."""
    problems = []
    seen = heartbeat.workers(session, now)
    if any(w.sweep_stuck and w.ago <= heartbeat.DEAD_AFTER for w in seen):
        minutes = int(heartbeat.SWEEP_STUCK_AFTER.total_seconds() // 60)
        problems.append(f"a digest sweep made no progress for over {minutes} min")
    elif not any(w.alive for w in seen):
        problems.append(f"no worker seen for {ago(seen[0].ago)}" if seen else "no worker has ever reported")
    elif not any(w.alive and w.beat.role == "leader" for w in seen) and any(w.alive and w.beat.role for w in seen):
        problems.append("workers are running but none leads the schedules: no digests are claimed")
    held = stuck(session, now, seen)
    if held:
        problems.append(f"{len(held)} deliveries stuck in claimed/sending")
    return problems + runs.failing(session, now)


def worker_report(session: Session, now: datetime) -> Iterator[str]:
    """The newest workers' heartbeats — alive, stuck in a sweep, or gone — with each live one's
    role (leader or standby, and whether it polls Telegram), then which one leads."""
    seen = heartbeat.workers(session, now)
    if not seen:
        yield "worker:   none has ever reported: digests are not going out (start `feedbot worker`)"
    for w in seen[:5]:
        beat = w.beat
        state = "alive" if w.alive else (
            "STUCK: its digest sweep stopped progressing" if w.sweep_stuck else "NOT SEEN (dead or stuck)")
        sweep = ""
        if beat.sweep_started_at:
            sweep = f"; last digest sweep started {beat.sweep_started_at:%Y-%m-%d %H:%M:%S} UTC"
            if beat.sweep_finished_at:
                sweep += f", finished {beat.sweep_finished_at:%Y-%m-%d %H:%M:%S} UTC"
            if beat.progress_at:
                sweep += f", last progress {beat.progress_at:%Y-%m-%d %H:%M:%S} UTC"
        yield f"worker:   {state}: {beat.name} (feedbot {beat.version}), last seen {ago(w.ago)}{sweep}"
    live = [w for w in seen if w.alive]
    for w in live:
        beat = w.beat
        role = beat.role or "leader"  # a worker that reports no role runs alone (an older version)
        since = f" since {beat.role_since:%Y-%m-%d %H:%M:%S} UTC" if beat.role_since else ""
        yield (f"workers:  {beat.host} pid {beat.pid}: {role}{since}"
               f"{', polling Telegram' if beat.polling else ''}, started {beat.started_at:%Y-%m-%d %H:%M:%S} UTC")
    if live:
        leaders = sorted((w.beat for w in live if (w.beat.role or "leader") == "leader"),  # the latest to lead
                         key=lambda b: as_utc(b.role_since or b.started_at), reverse=True)
        yield (f"leader:   {leaders[0].host} pid {leaders[0].pid} ({len(live)} live workers)" if leaders else
               f"leader:   NONE of the {len(live)} live workers leads: no digests are claimed")


def delivery_report(session: Session, now: datetime) -> Iterator[str]:
    """The last sweeps, deliveries stuck or uncertain with what to do, and why each subscriber
    has no digest today."""
    for sweep in session.scalars(select(Sweep).order_by(Sweep.name)):
        yield f"sweep {sweep.name}: {sweep.ran_at:%Y-%m-%d %H:%M} UTC — {sweep.summary}"
        if sweep.error:
            yield (f"  FAILING since {as_utc(sweep.failing_since or sweep.ran_at):%Y-%m-%d %H:%M} UTC: {sweep.error}"
                   " (the log has the tracebacks; digests keep going out meanwhile)")
    held = stuck(session, now)
    if held:
        yield f"deliveries stuck in flight: {len(held)} (no process is finishing them: is the worker running?)"
        for row in held[:20]:
            since = as_utc(row.attempted_at or row.claimed_at)
            yield (f"  delivery {row.id}: subscriber #{row.subscriber_id}, {row.local_date}, {row.status} since "
                   f"{since:%Y-%m-%d %H:%M} UTC, parts sent {row.parts_sent}, by {row.owner or '-'}"
                   f"{': ' + row.error if row.error else ''}")
        yield ("  what to do: start the worker; it resumes `claimed` rows at their first unsent part and turns "
               "`sending` rows of a dead process into `uncertain`")
    uncertain = session.scalars(select(Delivery).where(
        Delivery.status == "uncertain", Delivery.local_date >= now.date() - timedelta(days=7))
        .order_by(Delivery.id.desc())).all()
    if uncertain:
        yield (f"deliveries uncertain (last 7 days): {len(uncertain)} — each may or may not have reached its "
               "subscriber and is never re-sent automatically")
        for row in uncertain[:20]:
            yield f"  delivery {row.id}: subscriber #{row.subscriber_id}, {row.local_date}: {row.error or ''}"
        yield ("  what to do: nothing if the subscriber has it; if they say it is missing, /digest gives them "
               "fresh picks at once")
    subs = session.scalars(select(Subscriber).order_by(Subscriber.id)).all()
    yield f"subscribers: {len(subs)} ({sum(s.state == 'active' for s in subs)} active)"
    if not subs:
        return
    today = rows.for_days(session, {s.id: schedule.local_date(s, now) for s in subs})
    states = Counter(status for status, _ in today.values())
    yield "deliveries today: " + runs.counts(states, "none")
    listed = [s for s in subs if today.get(s.id, ("", ""))[0] not in ("sent", "claimed", "sending")]
    slots = due.plan(session, now, [s for s in listed[:20] if s.id not in today]).slots  # only the lines shown
    for subscriber in listed[:20]:
        row = today.get(subscriber.id)
        if row is not None:
            yield f"  {subscriber.telegram_id}: today's digest {row[0]}: {row[1] or ''}"
        else:
            yield (f"  {subscriber.telegram_id}: no digest today: "
                   f"{reasons.explain(subscriber, slots[subscriber.id], 'admin')}")
    if len(listed) > 20:
        yield f"  … and {len(listed) - 20} more"


def subscriber_table(session: Session, now: datetime) -> Iterator[str]:
    """Every subscriber with zone, time, size, frequency, state, last delivery and next digest."""
    last = {sid: (day, status) for sid, day, status in session.execute(
        select(Delivery.subscriber_id, Delivery.local_date, Delivery.status)
        .where(Delivery.local_date == select(func.max(Delivery.local_date)).where(
            Delivery.subscriber_id == Subscriber.id).correlate(Subscriber).scalar_subquery())
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id))}
    rows = session.scalars(select(Subscriber).order_by(Subscriber.id)).all()
    plan = due.plan(session, now, rows) if rows else due.Plan()
    yield (f"{'telegram id':>12}  {'zone':<20} {'time':<5} {'size':>4}  {'frequency':<9} {'state':<8} "
           "last delivery          next (UTC)")
    for s in rows:
        state = s.state if not s.paused_until else f"{s.state}, paused"
        day, status = last.get(s.id, (None, None))
        slot = plan.slots[s.id]
        upcoming = "now" if slot.reason == "due" else (
            f"{slot.at.astimezone(UTC):%Y-%m-%d %H:%M}" if slot.at else reasons.explain(s, slot, "admin"))
        yield (f"{s.telegram_id:>12}  {s.timezone:<20} {s.send_time:<5} {s.digest_size:>4}  {s.frequency:<9} "
               f"{state:<8} {f'{day} {status}' if day else '-':<22} {upcoming}")
    yield f"({len(rows)} subscribers)"


def dry_run(session: Session, settings: Settings, now: datetime, only: Subscriber | None = None) -> Iterator[str]:
    """Who is due now (or just `only`, due or not) and the digest each would get; writes nothing."""
    plan = due.plan(session, now, [only] if only is not None else None)
    for subscriber, day in plan.missed:
        yield f"{subscriber.telegram_id}: {day}: {reasons.word('missed', 'admin')}"
    targets = plan.due
    if only is not None and not plan.due:
        slot = plan.slots[only.id]
        yield f"{only.telegram_id} is not due now: {reasons.explain(only, slot, 'admin')}; showing what they would get"
        targets = [(only, slot.day)]
    if not targets:
        yield f"nobody is due now ({len(plan.waiting)} waiting)"
        return
    model = ModelCache(settings.model_dir).get(session)
    built = digests.build(session, model, [s for s, _ in targets], now, settings,
                          days={s.id: day for s, day in targets})
    for subscriber, day in targets:
        digest = built[subscriber.id]
        yield (f"== {subscriber.telegram_id} ({subscriber.timezone}, local date {day}, now "
               f"{now.astimezone(schedule.zone(subscriber.timezone)):%H:%M} {subscriber.timezone}): "
               f"{len(digest.picks)} picks")
        for reply in digests.render(digest):
            yield plain(reply.text)
