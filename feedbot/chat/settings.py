"""When and how digests come: /time, /timezone, /size, /frequency, /recap, the /settings view and its
buttons, /pause, /resume, /status, /stop and /delete."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from feedbot.delivery import deliveries, schedule
from feedbot.delivery.messages import Answer, Button, Reply, escape
from feedbot.store import subscribers
from feedbot.store.models import Vote
from feedbot.store.subscribers import UserError

if TYPE_CHECKING:
    from feedbot.chat.conversation import Turn


def time(turn: Turn, args: str) -> list[Reply]:
    subscriber = turn.subscriber
    if not args:
        raise UserError(f"Your digest comes at {subscriber.send_time}. Change it with e.g. /time 07:30.")
    subscribers.set_time(subscriber, args)
    return [Reply(f"Delivery time set to <b>{subscriber.send_time}</b>. {next_line(turn)}")]


def timezone(turn: Turn, args: str) -> list[Reply]:
    subscriber = turn.subscriber
    if not args:
        raise UserError(f"Your time zone is {subscriber.timezone}. Change it with e.g. /timezone Asia/Tokyo.")
    subscribers.set_timezone(subscriber, args)
    return [Reply(f"Time zone set to <b>{escape(subscriber.timezone)}</b>. {next_line(turn)}")]


def size(turn: Turn, args: str) -> list[Reply]:
    subscribers.set_size(turn.subscriber, args)
    return [Reply(f"Your digests will have <b>{turn.subscriber.digest_size}</b> picks.")]


def frequency(turn: Turn, args: str) -> list[Reply]:
    subscribers.set_frequency(turn.subscriber, args)
    return [Reply(f"Digests will come <b>{turn.subscriber.frequency}</b>. {next_line(turn)}")]


def recap(turn: Turn, args: str) -> list[Reply]:
    """/recap shows whether the Sunday recap comes; /recap on|off sets it."""
    subscriber = turn.subscriber
    if args:
        subscribers.set_recap(subscriber, args)
    on = subscribers.recap_on(subscriber)
    why = " (the default with " + ("weekly digests)" if on else f"{subscriber.frequency} digests)") \
        if subscriber.recap is None else ""
    state = "on" if on else "off"
    return [Reply(f"The Sunday recap is <b>{state}</b>{why}: on Sundays at {subscriber.send_time}, what you "
                  "liked this week, readers' favourites you were not shown and how your profile moved. "
                  f"/recap {'off' if on else 'on'} to turn it {'off' if on else 'on'}.")]


def show(turn: Turn, args: str) -> list[Reply]:
    return [Reply(*view(turn))]


def pause(turn: Turn, args: str) -> list[Reply]:
    until = subscribers.pause(turn.subscriber, args, schedule.local_date(turn.subscriber, turn.chat.clock()))
    when = ("until you send /resume" if until == until.max
            else f"until {until:%a %d %b} (then they resume by themselves)")
    return [Reply(f"Digests paused {when}.")]


def resume(turn: Turn, args: str) -> list[Reply]:
    subscribers.resume(turn.subscriber)
    return [Reply(f"Digests resumed. {next_line(turn)}")]


def status(turn: Turn, args: str) -> list[Reply]:
    subscriber = turn.subscriber
    interests = subscribers.interests(turn.session, subscriber)
    votes = turn.session.scalars(select(Vote.value).where(Vote.subscriber_id == subscriber.id)).all()
    return [Reply(
        f"{next_line(turn)}\n"
        f"Time {subscriber.send_time} ({escape(subscriber.timezone)}), {subscriber.digest_size} picks, "
        f"{subscriber.frequency}.\n"
        f"{len(interests)} interests, {sum(v > 0 for v in votes)} 👍 and {sum(v < 0 for v in votes)} 👎 so far."
    )]


def stop(turn: Turn, args: str) -> list[Reply]:
    subscribers.stop(turn.subscriber)
    return [Reply("You're unsubscribed: no more digests. Your votes and settings are kept, so /start "
                  "picks up where you left off. /delete erases everything.")]


def delete(turn: Turn, args: str) -> list[Reply]:
    """Only asks: the answer's buttons are bound to this subscription (a stale one deletes nothing)."""
    tag = subscribers.tag(turn.subscriber)
    return [Reply("This erases your subscription, interests, votes and history for good. Sure?",
                  [[Button("Yes, delete everything", f"d:yes:{tag}"), Button("No, keep it", f"d:no:{tag}")]])]


def delete_press(turn: Turn, confirmed: bool) -> Answer:
    """The answer to /delete's question."""
    if not confirmed:
        return Answer("Kept.", keyboard=[], text="Nothing was deleted.")
    subscribers.delete_everything(turn.session, turn.subscriber)
    return Answer("Deleted.", keyboard=[], text="All your data is erased. Send /start if you ever want to come back.")


def settings_press(turn: Turn, data: str) -> Answer:
    """A button of the /settings view (`size:+`, `time:-`, `freq:weekly`, `pause`, `resume`; its tag checked)."""
    subscriber = turn.subscriber
    name, _, value = data.partition(":")
    if name == "size":
        subscriber.digest_size = min(20, max(1, subscriber.digest_size + (1 if value == "+" else -1)))
    elif name == "time":
        hours, minutes = map(int, subscriber.send_time.split(":"))
        hours = (hours + (1 if value == "+" else -1)) % 24
        subscriber.send_time = f"{hours:02d}:{minutes:02d}"
    elif name == "freq":
        subscribers.set_frequency(subscriber, value)
    elif name == "pause":
        subscribers.pause(subscriber, "7", schedule.local_date(subscriber, turn.chat.clock()))
    else:
        subscribers.resume(subscriber)
    turn.session.flush()
    text, keyboard = view(turn)
    return Answer("Saved", keyboard=keyboard, text=text)


def view(turn: Turn) -> tuple[str, list[list[Button]]]:
    """The /settings message and its buttons."""
    subscriber = turn.subscriber
    paused = subscribers.is_paused(subscriber, schedule.local_date(subscriber, turn.chat.clock()))
    text = (f"<b>Settings</b>\nDelivery: <b>{subscriber.send_time}</b> ({escape(subscriber.timezone)}), "
            f"<b>{subscriber.frequency}</b>\nPicks per digest: <b>{subscriber.digest_size}</b>\n"
            f"{'Paused' if paused else 'Active'}. {next_line(turn)}\n"
            f"Sunday recap: <b>{'on' if subscribers.recap_on(subscriber) else 'off'}</b> (/recap on|off)\n"
            "Time zone: /timezone NAME · exact time: /time HH:MM")
    marks = {f: ("• " if f == subscriber.frequency else "") + f for f in subscribers.FREQUENCIES}
    tag = subscribers.tag(subscriber)  # a button of an earlier subscription changes nothing
    keyboard = [
        [Button("Picks −1", f"s:size:-:{tag}"), Button("Picks +1", f"s:size:+:{tag}")],
        [Button("Time −1h", f"s:time:-:{tag}"), Button("Time +1h", f"s:time:+:{tag}")],
        [Button(marks[f], f"s:freq:{f}:{tag}") for f in subscribers.FREQUENCIES],
        [Button("Resume", f"s:resume:{tag}") if paused else Button("Pause 7 days", f"s:pause:{tag}")],
    ]
    return text, keyboard


def next_line(turn: Turn) -> str:
    """When the next digest comes, from the same decision the worker acts on."""
    subscriber, now = turn.subscriber, turn.chat.clock()
    if subscriber.state == "stopped":
        return "You're unsubscribed, so no digests come (send /start)."
    if subscriber.state == "blocked":
        return "Digests stopped because the chat was blocked."
    today = schedule.local_date(subscriber, now)
    if subscribers.is_paused(subscriber, today) and subscriber.paused_until == subscriber.paused_until.max:
        return "Digests are paused until you send /resume."
    turn.session.flush()
    history = deliveries.histories(turn.session, [subscriber.id], now)[subscriber.id]
    slot = schedule.decide(subscriber, now, history)
    if slot.reason == "due":
        local = now.astimezone(subscribers.zone(subscriber.timezone))
        return (f"Next digest: <b>due now</b> (it is {local:%H:%M} in {escape(subscriber.timezone)}): "
                "it goes out within a minute.")
    if slot.at is None:
        return "No digest is scheduled."
    local = slot.at.astimezone(subscribers.zone(subscriber.timezone))
    paused = " (paused until then)" if subscribers.is_paused(subscriber, today) else ""
    return f"Next digest: <b>{local:%a %d %b %H:%M}</b> ({escape(subscriber.timezone)}){paused}."
