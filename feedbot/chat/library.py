"""What a subscriber has seen and kept: /history (paged by buttons), /liked, /search and /export."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select

from feedbot.chat import bibtex
from feedbot.delivery.messages import (
    MAX_TEXT,
    Answer,
    Button,
    Reply,
    count_row,
    escape,
    paper_item,
    split_items,
    telegram_length,
    vote_row,
)
from feedbot.store import groups, subscribers
from feedbot.store.models import Delivery, Paper, Shown, Vote
from feedbot.store.papers import search_papers
from feedbot.store.subscribers import UserError

if TYPE_CHECKING:
    from feedbot.chat.conversation import Turn

HISTORY_PAGE = 3
SEARCH_RESULTS = 5


def history(turn: Turn, args: str) -> list[Reply]:
    return [Reply(*history_page(turn, 0))]


def history_press(turn: Turn, page: int) -> Answer:
    """◀ Newer / Older ▶: the page replaces the message's text and buttons."""
    text, buttons = history_page(turn, page)
    return Answer("", keyboard=buttons, text=text)


# Digests that delivered something or still may: in flight or resumable, sent, possibly sent,
# and partly sent (a part confirmed before a failure or a block). Empty and skipped days are left out.
_MAY_HAVE_REACHED = or_(Delivery.status.in_(("claimed", "sending", "sent", "uncertain")),
                        and_(Delivery.parts_sent > 0, Delivery.status.in_(("failed", "blocked"))))


def delivery_state(delivery: Delivery, picks: int) -> str:
    """How a past digest went, in words ("" for one sent whole)."""
    if delivery.status == "claimed":
        return "on its way"
    if delivery.status == "sending":
        return "being sent"
    if delivery.status == "uncertain":
        return "may not have reached you"
    if delivery.status in ("failed", "blocked"):
        sizes = [int(n) for n in (delivery.part_picks or "").split(",") if n.isdigit()]
        reached = sum(sizes[: delivery.parts_sent]) if len(sizes) >= delivery.parts_sent else None
        return (f"partly delivered: {reached} of {picks} picks reached you" if reached is not None
                else "partly delivered")
    return ""


def history_page(turn: Turn, page: int) -> tuple[str, list[list[Button]]]:
    """Past digests, newest first, HISTORY_PAGE per page, each paper marked with the vote on it,
    and each digest not sent whole marked with its state."""
    session, subscriber = turn.session, turn.subscriber
    delivered = session.scalars(
        select(Delivery).where(Delivery.subscriber_id == subscriber.id, _MAY_HAVE_REACHED)
        .order_by(Delivery.local_date.desc()).offset(page * HISTORY_PAGE).limit(HISTORY_PAGE + 1)
    ).all()
    if not delivered:
        return ("No digests yet." if page == 0 else "No older digests."), []
    has_more = len(delivered) > HISTORY_PAGE
    shown = [(delivery, session.execute(
        select(Paper, Vote.value)
        .join(Shown, Shown.paper_id == Paper.id)
        .outerjoin(Vote, (Vote.paper_id == Shown.paper_id) & (Vote.subscriber_id == subscriber.id))
        .where(Shown.delivery_id == delivery.id).order_by(Shown.position)
    ).all()) for delivery in delivered[:HISTORY_PAGE]]
    if subscriber.kind != "private":  # a chat's papers are marked by its members' balance, as /liked
        tally = groups.counts(session, subscriber, [paper.id for _, rows in shown for paper, _ in rows])
        shown = [(delivery, [(paper, _balance(*tally.get(paper.id, (0, 0)))) for paper, _ in rows])
                 for delivery, rows in shown]
    headings = [f"\n\n<b>{delivery.local_date:%a %d %b %Y}</b>"
                + (f" · <i>{state}</i>" if (state := delivery_state(delivery, len(rows))) else "")
                for delivery, rows in shown]
    text = "<b>Your past digests</b>"
    # Every heading, and room for each digest's "… and N more", is reserved before any paper: a
    # digest that fills the page still leaves the ones after it their heading.
    size = telegram_length(text) + sum(telegram_length(h) + telegram_length(_more(len(rows)))
                                       for h, (_, rows) in zip(headings, shown, strict=True))
    for heading, (_, rows) in zip(headings, shown, strict=True):
        text += heading
        for number, (paper, value) in enumerate(rows):
            mark = "👍" if value == 1 else "👎" if value == -1 else "·"
            line = "\n" + paper_item(mark, paper, turn.chat.settings.paper_link, title_chars=150, byline=False)
            length = telegram_length(line)
            if size + length > MAX_TEXT:  # one message: the page is edited in place
                text += _more(len(rows) - number)
                break
            text, size = text + line, size + length
    buttons = []
    if page > 0:
        buttons.append(Button("◀ Newer", f"h:{page - 1}"))
    if has_more:
        buttons.append(Button("Older ▶", f"h:{page + 1}"))
    return text, ([buttons] if buttons else [])


def _balance(up: int, down: int) -> int:
    return (up > down) - (up < down)


def _more(count: int) -> str:
    return f"\n… and {count} more"


def _listed(turn: Turn, number: int, paper: Paper, **shown) -> str:
    return paper_item(f"{number}.", paper, turn.chat.settings.paper_link, title_chars=300,
                      **shown)


def _liked_list(turn: Turn, papers: list[Paper], header: str, limit: int, more: str,
                library: str = "") -> list[Reply]:
    """The first `limit` liked papers, one line each, then `more` saying how many ({n}) are left out,
    then `library` (the imported papers, counted apart)."""
    items = [(_listed(turn, n, p), []) for n, p in enumerate(papers[:limit], 1)]
    if len(papers) > limit:
        items.append((more.format(n=len(papers) - limit), []))
    if library:
        items.append((library, []))
    return split_items(header, items, separator="\n")


def liked(turn: Turn, args: str) -> list[Reply]:
    kind = turn.subscriber.kind
    if kind != "private":  # a group's or channel's: what its members liked on balance, never who
        papers = groups.liked_papers(turn.session, turn.subscriber)
        if not papers:
            return [Reply(f"No paper has more 👍 than 👎 from this {kind}'s members yet.")]
        return _liked_list(turn, papers, f"<b>Papers this {kind} liked</b> ({len(papers)})", 30, "…and {n} more.")
    papers = subscribers.liked_papers(turn.session, turn.subscriber, origin="tap")
    imported = subscribers.imported_count(turn.session, turn.subscriber)
    if not papers and not imported:
        return [Reply("You haven't liked any papers yet. Tap 👍 in a digest, or find papers with /search.")]
    library = f"From your library: {imported:,} (imported; /export gives them all)" if imported else ""
    return _liked_list(turn, papers, f"<b>Papers you liked</b> ({len(papers)})", 30,
                       "…and {n} more: /export gives them all.", library)


def search(turn: Turn, args: str) -> list[Reply]:
    if not args:
        raise UserError("Tell me what to look for, e.g. /search graph neural networks")
    words = " ".join(args.split())[:200]
    found = search_papers(turn.session, words, SEARCH_RESULTS)
    if not found:
        return [Reply(f"No papers mention all of: {escape(words)}")]
    # Nothing is recorded as shown: a match may be among today's best picks, still to come in a
    # digest. Voting on one records it (feedbot.chat.votes).
    ids = [p.id for p in found]
    if turn.subscriber.kind != "private":  # the members' counts, as on its digests
        tally = groups.counts(turn.session, turn.subscriber, ids)
        rows = [count_row(n, pid, *tally.get(pid, (0, 0))) for n, pid in enumerate(ids, 1)]
    else:
        votes = subscribers.votes_on(turn.session, turn.subscriber, ids)
        rows = [vote_row(n, pid, votes.get(pid, 0)) for n, pid in enumerate(ids, 1)]
    items = [(_listed(turn, n, p, listed=True, abstract_chars=200), row)
             for n, (p, row) in enumerate(zip(found, rows, strict=True), 1)]
    return split_items(f"<b>Papers matching “{escape(words)}”</b>", items)


def export(turn: Turn, args: str) -> list[Reply]:
    kind = turn.subscriber.kind
    if kind != "private":  # what /liked lists: never a library an administrator imported into the chat
        papers = groups.liked_papers(turn.session, turn.subscriber)
        if not papers:
            return [Reply(f"No paper has more 👍 than 👎 from this {kind}'s members yet: nothing to export.")]
        replies = _liked_list(turn, papers, f"<b>Papers this {kind} liked</b> ({len(papers)}, BibTeX attached)", 50,
                              "…and {n} more in the file.")
        replies[-1].document = ("feedbot-liked.bib", bibtex.export(papers).encode())
        return replies
    papers = subscribers.liked_papers(turn.session, turn.subscriber)
    if not papers:
        return [Reply("You haven't liked any papers yet, so there is nothing to export.")]
    tapped = subscribers.liked_papers(turn.session, turn.subscriber, origin="tap")
    imported = len(papers) - len(tapped)
    library = f"From your library: {imported:,} (in the file)" if imported else ""
    replies = _liked_list(turn, tapped, f"<b>Your {len(tapped)} liked papers</b> (BibTeX attached)", 50,
                          "…and {n} more in the file.", library)
    replies[-1].document = ("feedbot-liked.bib", bibtex.export(papers).encode())
    return replies
