"""What a subscriber wants and never wants: /interests, /mute and /unmute."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from feedbot.delivery.messages import Reply, escape
from feedbot.store import subscribers, textmatch
from feedbot.store.subscribers import UserError

if TYPE_CHECKING:
    from feedbot.chat.conversation import Turn


def interests(turn: Turn, args: str) -> list[Reply]:
    """`/interests`, `/interests add TOPICS`, `/interests remove TOPIC` or `/interests clear`."""
    session, subscriber = turn.session, turn.subscriber
    action, *more = args.split(maxsplit=1) or [""]
    action, rest = action.casefold(), more[0] if more else ""
    if action == "add":
        added = subscribers.add_interests(session, subscriber, rest, matcher(turn))
        note = f"Added {', '.join(f'“{escape(a)}”' for a in added)}." if added else "You already have those."
    elif action == "remove":
        if not rest.strip():
            raise UserError("Say which one, e.g. /interests remove robotics (or its number).")
        note = f"Removed “{escape(subscribers.remove_interest(session, subscriber, rest))}”."
    elif action == "clear":
        note = f"Cleared {subscribers.clear_interests(session, subscriber)} interests."
    elif action:
        raise UserError("Use /interests, /interests add TOPICS, /interests remove TOPIC or /interests clear.")
    else:
        note = ""
    have = subscribers.interests(session, subscriber)
    listing = "\n".join(f"{n}. {escape(t)}" for n, t in enumerate(have, 1)) or "none yet"
    return [Reply(f"{note}\n\n<b>Your interests</b>\n{listing}\n\n"
                  "Add with /interests add TOPICS, remove with /interests remove TOPIC.".strip())]


def mute(turn: Turn, args: str) -> list[Reply]:
    if not args:
        muted = subscribers.mutes(turn.session, turn.subscriber)
        listing = "".join(f"\n• {escape(m)}" for m in muted) or " nothing."
        return [Reply(f"Muted:{listing}\nMute a word with /mute WORD.")]
    word = subscribers.mute(turn.session, turn.subscriber, args)
    return [Reply(f"Papers mentioning “{escape(word)}” won't be picked for you. /unmute {escape(word)} undoes it.")]


def unmute(turn: Turn, args: str) -> list[Reply]:
    if not args:
        raise UserError("Say which word, e.g. /unmute quantum")
    return [Reply(f"“{escape(subscribers.unmute(turn.session, turn.subscriber, args))}” is no longer muted.")]


def matcher(turn: Turn) -> Callable[[str], bool]:
    """Whether an interest shares a term with the corpus; before the first ingest there is no
    vocabulary, so only what can never match (stop words, emoji, symbols) is refused."""
    model = turn.chat.models.get(turn.session)
    if model is None:
        return textmatch.could_match
    return lambda text: textmatch.could_match(text) and model.transform([text]).nnz > 0
