"""Getting a newcomer going: /start, the interests and time zone questions (answered by plain
text, or /skip), and a few starter papers to rate before the first digest."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import select

from feedbot.chat.interests import matcher
from feedbot.chat.settings import next_line
from feedbot.delivery import reasons, schedule
from feedbot.delivery.messages import Reply, escape, paper_item, vote_keyboard
from feedbot.ranking import recommend
from feedbot.ranking.textmodel import TextModel
from feedbot.store import subscribers
from feedbot.store.models import Shown

if TYPE_CHECKING:
    from feedbot.chat.conversation import Turn

STARTER_SIZE = 5


def start(turn: Turn, args: str) -> list[Reply]:
    user = turn.user
    subscriber, new = subscribers.subscribe(turn.session, user.telegram_id, user.chat_id, user.name)
    if new:
        subscriber.awaiting = "interests"
        return [Reply(
            "<b>Welcome to feedbot!</b> Every morning I send you the few new research papers you are "
            "most likely to want, and I learn from every 👍/👎 you tap.\n\n"
            "What are you interested in? Send a few topics separated by commas, e.g. "
            "<i>diffusion models, robot learning, protein folding</i> — or /skip.\n\n"
            "…or send me your library as a .bib or .ris file (or /import arXiv ids and DOIs): "
            "your papers become your profile at once."
        )]
    if subscriber.awaiting == "interests":
        return [Reply("Welcome back! What are you interested in? Send topics separated by commas, or /skip.")]
    return [Reply(f"Welcome back, your digest is on. {next_line(replace(turn, subscriber=subscriber))}\n"
                  "Your interests and votes are as you left them. /help lists everything.")]


def skip(turn: Turn, args: str) -> list[Reply]:
    if turn.subscriber.awaiting == "interests":
        return _after_interests(turn, "No interests for now: your votes will teach me.")
    if turn.subscriber.awaiting == "timezone":
        turn.subscriber.awaiting = None
        return [Reply(_ready_text(turn))]
    return [Reply("Nothing to skip. Send /help to see what I can do.")]


def answer(turn: Turn, text: str) -> list[Reply] | None:
    """Plain text answering the pending question; None when no question is pending."""
    subscriber = turn.subscriber
    if subscriber.awaiting == "interests":
        added = subscribers.add_interests(turn.session, subscriber, text, matcher(turn))
        listed = ", ".join(f"“{escape(a)}”" for a in added) or "nothing new"
        return _after_interests(turn, f"Noted: {listed}.")
    if subscriber.awaiting == "timezone":
        subscribers.set_timezone(subscriber, text)
        subscriber.awaiting = None
        return [Reply(_ready_text(turn))]
    return None


def _after_interests(turn: Turn, note: str) -> list[Reply]:
    subscriber = turn.subscriber
    subscriber.awaiting = "timezone"
    replies = [Reply(note)]
    model = turn.chat.models.get(turn.session)
    if model is None:
        replies.append(Reply(f"There are {reasons.word('no_papers', 'subscriber')}, so there is nothing to rate yet."))
    else:
        replies += starters(turn, model)
    replies.append(Reply(
        f"Your digest comes every day at <b>{subscriber.send_time}</b>. Which time zone are you in? "
        "Send a name like <i>Europe/Berlin</i> or an offset like <i>UTC+5:30</i> — or /skip for UTC."
    ))
    return replies


def _ready_text(turn: Turn) -> str:
    return (f"All set! {next_line(turn)}\n"
            "Change the time with /time, the size with /size, or everything with /settings. "
            "Want papers right now? /digest")


def starters(turn: Turn, model: TextModel, size: int = STARTER_SIZE) -> list[Reply]:
    """About five recent papers to rate (led by the typed interests), recorded as shown."""
    session, subscriber, now = turn.session, turn.subscriber, turn.chat.clock()
    pool = recommend.candidates(session, schedule.local_date(subscriber, now),
                                max(turn.chat.settings.candidate_days, 7))
    seen = set(session.scalars(select(Shown.paper_id).where(Shown.subscriber_id == subscriber.id)))
    pool = [c for c in pool if c.id not in seen]
    if not pool:
        return []
    chosen = recommend.starters(session, model, subscriber, pool, size)
    subscribers.record_shown(session, subscriber, [(c.id, 0.0, "starter") for c in chosen], "starter", now=now)
    lines = [paper_item(f"{n}.", c, turn.chat.settings.paper_link, abstract_chars=200)
             for n, c in enumerate(chosen, 1)]
    text = "<b>Rate a few papers</b> so your first digest already knows your taste:\n\n" + "\n\n".join(lines)
    return [Reply(text, vote_keyboard([(n, c.id) for n, c in enumerate(chosen, 1)], {}))]
