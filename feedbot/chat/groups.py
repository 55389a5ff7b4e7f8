"""Groups and channels: the chat is one subscriber of its own (its chat id is its Telegram id), set
up and steered by its administrators; every member may read, and every member's 👍/👎 on its
digests is their own vote, counted on the buttons by number, never by name, and never mixed with
their private profile."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from feedbot.chat.settings import next_line
from feedbot.chat.votes import pressed
from feedbot.delivery.messages import Answer, Button, Reply, count_row, numbered_papers
from feedbot.store import groups, subscribers
from feedbot.store.db import read_only
from feedbot.store.models import Subscriber
from feedbot.store.subscribers import UserError

if TYPE_CHECKING:
    from feedbot.chat.commands import Command
    from feedbot.chat.conversation import Chat, Turn, User

ADMINS_ONLY = "Only the group's administrators can do that here; any member may use /help, /settings, " \
              "/status, /interests, /history, /liked and /search."
# Commands that change the group, or post its digest, beyond those that write: /delete only asks
# (its button erases), /digest and /import run as jobs.
_ADMIN_COMMANDS = {"start", "delete", "digest", "import", "skip"}
_ADMIN_BUTTONS = {"s", "d"}  # the /settings and /delete buttons


def admin_only(command: Command, args: str) -> bool:
    """Whether a member must be an administrator to run it: anything that changes the group."""
    return command.name in _ADMIN_COMMANDS or command.writes(args)


def admin_only_button(kind: str) -> bool:
    """Whether a button (by its data's kind) is for administrators; 👍/👎 and history pages are not."""
    return kind in _ADMIN_BUTTONS


def start(turn: Turn, args: str) -> list[Reply]:
    """An administrator's /start: the chat becomes (again) a subscriber. No starter ratings: the
    first digests lean on the interests an administrator sets, then on the members' votes."""
    user = turn.user
    subscriber, new = subscribers.subscribe(turn.session, user.telegram_id, user.chat_id, user.name, kind=user.kind)
    turn = replace(turn, subscriber=subscriber)
    if not new:
        return [Reply(f"Welcome back: digests for this {user.kind} are on. {next_line(turn)}\n"
                      "Its interests and votes are as they were. /help lists everything.")]
    return [Reply(
        f"<b>feedbot is on for this {user.kind}.</b> Every day at <b>{subscriber.send_time}</b> "
        f"({subscriber.timezone}) I post the few new papers it most likely wants, and every member's "
        "👍/👎 teaches me its taste: counted on the buttons, never shown by name, and never mixed "
        "with anyone's private profile.\n\n"
        "An administrator tells me what to follow, e.g. <i>/interests add diffusion models, robot learning</i>; "
        "/timezone, /time and /size set the rest. Only administrators change settings; anyone may "
        "read /settings, /history, /liked and /search."
    )]


def vote_press(turn: Turn, data: str, keyboard: list[list[Button]]) -> Answer:
    """A member's 👍/👎 on the group's pick: their own vote (the same again takes it back, the
    other switches it); the buttons then show every pick's counts."""
    numbered = numbered_papers(keyboard)
    paper_id, value = pressed(turn, data, numbered)
    if not subscribers.was_shown(turn.session, turn.subscriber, paper_id):
        raise UserError(f"That paper was not shown in this {turn.subscriber.kind}, so I can't count a vote for it.")
    stored = groups.member_vote(turn.session, turn.subscriber, turn.user.member_id, paper_id, value, turn.chat.clock())
    turn.session.flush()
    notice = {1: "Your 👍 is counted", -1: "Your 👎 is counted", 0: "Your vote is taken back"}[stored]
    return Answer(notice, keyboard=counted(turn.session, turn.subscriber, numbered or [(1, paper_id)]))


def counted(session: Session, subscriber: Subscriber, numbered: list[tuple[int, int]]) -> list[list[Button]]:
    """Rows of 👍/👎 with the members' counts, for (number, paper id) pairs."""
    tally = groups.counts(session, subscriber, [pid for _, pid in numbered])
    return [count_row(number, pid, *tally.get(pid, (0, 0))) for number, pid in numbered]


def redraw(chat: Chat, user: User, keyboard: list[list[Button]]) -> list[list[Button]] | None:
    """The pressed message's buttons with the counts as they are now (None: not a vote keyboard).
    The adapter draws them after the latest tap, so the last edit shows the final counts."""
    numbered = numbered_papers(keyboard)
    if not numbered:
        return None
    with read_only(chat.engine) as session:
        subscriber = subscribers.get(session, user.telegram_id)
        return counted(session, subscriber, numbered) if subscriber is not None else None
