"""Load what ranking needs from the database, rank every subscriber in one batched pass, and turn
the picks into suggestions with a why-line. Writes nothing: recording is the digest's job.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import scipy.sparse as sp
from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from feedbot.ranking import rank, reasons
from feedbot.ranking.textmodel import TextModel
from feedbot.store.db import chunks
from feedbot.store.models import Interest, Listing, Mute, Paper, Shown, Subscriber, Vote
from feedbot.store.textmatch import fold, mute_pattern

DEFAULT_PARAMS = rank.DEFAULT_PARAMS


@dataclass(frozen=True)
class Pick:
    """A paper chosen for a subscriber: how well it scored, by which kind of reason, and the
    why-line they read."""

    paper: Paper
    score: float
    kind: str
    why: str

    @property
    def paper_id(self) -> int:
        return self.paper.id


def latest_listing(session: Session, day: date) -> date | None:
    """The most recent listing date on or before `day`: the "today" of the papers page."""
    return session.scalar(select(func.max(Listing.listed_on)).where(Listing.listed_on <= day))


def candidates(session: Session, day: date, days: int) -> list[Paper]:
    """Papers first listed within `days` days up to the latest listing on or before `day`.

    Anchoring on the latest listing (not the calendar) means a late or missing scrape still
    leaves the freshest papers to pick from; "never the same paper twice" keeps them from repeating.
    """
    anchor = latest_listing(session, day)
    if anchor is None:
        return []
    papers = list(session.scalars(
        select(Paper).where(Paper.first_listed > anchor - timedelta(days=days), Paper.first_listed <= anchor)
        .order_by(Paper.id).options(defer(Paper.search_text, raiseload=True))  # only /search reads it
    ))
    for paper in papers:  # read-only snapshots: a commit in the caller's session cannot expire them
        session.expunge(paper)
    return papers


def why_line(reason: rank.Reason, liked_titles: dict[int, str], interests: list[str], n_topics: int) -> str:
    """One line for chat: `because you liked "X" · diffusion, video, editing`."""
    shared = reasons.distinct_terms(reason.terms)
    terms = f" · {', '.join(shared)}" if shared else ""
    if reason.kind == rank.KIND_INTEREST and 0 <= reason.interest < len(interests):
        return f"matches your interest “{interests[reason.interest]}”{terms}"
    if reason.kind in (rank.KIND_PROFILE, rank.KIND_TOPIC) and reason.liked_row in liked_titles:
        return f"because you liked “{liked_titles[reason.liked_row]}”{terms}"
    if reason.kind == rank.KIND_COLIKE and reason.liked_row in liked_titles:
        return f"liked by people who liked “{liked_titles[reason.liked_row]}”"
    if reason.kind == rank.KIND_STARTER:
        return f"starter pick: a paper from one of today's {n_topics} main topics, to learn your taste"
    if reason.kind == rank.KIND_AVOID:
        return f"starter pick from one of today's {n_topics} main topics, away from the papers you 👎"
    return f"close to what you liked{terms}"


def recommend(
    session: Session,
    model: TextModel,
    subscribers: list[Subscriber],
    day: date,
    now: datetime,
    candidate_days: int = 2,
    half_life_days: float = 90.0,
    sizes: dict[int, int] | None = None,
    params: rank.Params = DEFAULT_PARAMS,
) -> dict[int, list[Pick]]:
    """Picks for each subscriber (by subscriber id), never a paper they saw or voted on."""
    pool = candidates(session, day, candidate_days)
    results: dict[int, list[Pick]] = {s.id: [] for s in subscribers}
    if not pool or not subscribers:
        return results
    ids = [s.id for s in subscribers]
    column_of = {c.id: n for n, c in enumerate(pool)}

    votes: dict[int, list[tuple[int, int, datetime]]] = defaultdict(list)
    interests: dict[int, list[str]] = defaultdict(list)
    muted: dict[int, list[str]] = defaultdict(list)
    excluded: dict[int, set[int]] = defaultdict(set)
    for chunk in chunks(ids, 900):
        for sid, pid, value, when in session.execute(
            select(Vote.subscriber_id, Vote.paper_id, Vote.value, Vote.voted_at).where(Vote.subscriber_id.in_(chunk))
        ):
            votes[sid].append((pid, value, when))
            if pid in column_of:
                excluded[sid].add(column_of[pid])
        for sid, text in session.execute(
            select(Interest.subscriber_id, Interest.text).where(Interest.subscriber_id.in_(chunk)).order_by(Interest.id)
        ):
            interests[sid].append(text)
        for sid, word in session.execute(select(Mute.subscriber_id, Mute.word).where(Mute.subscriber_id.in_(chunk))):
            muted[sid].append(word)
    wanted = set(ids)
    for cand_chunk in chunks(list(column_of), 900):
        for sid, pid in session.execute(
            select(Shown.subscriber_id, Shown.paper_id).where(Shown.paper_id.in_(cand_chunk))
        ):
            if sid in wanted:
                excluded[sid].add(column_of[pid])

    community: list[tuple[int, int]] = []
    if params.colike_weight:
        # The batch's own 👍 come from the votes read above, so a vote changed between the two reads
        # cannot count as a like in one place and a 👎 in the other.
        community = [(sid, pid) for sid, pid in community_likes(session) if sid not in wanted]
        community += [(sid, pid) for sid in ids for pid, value, _ in votes[sid] if value > 0]
    voted_ids = sorted({pid for rows in votes.values() for pid, _, _ in rows} | {pid for _, pid in community})
    known = model.vectors_for(session, voted_ids)
    row_of = {pid: n for n, pid in enumerate(voted_ids)}
    liker_row = {sid: n for n, sid in enumerate(sorted({sid for sid, _ in community}))}
    corpus = rank.Corpus(known, model.topics_for(known), model.background, model.terms,
                            likers=likers_matrix(community, liker_row, row_of) if community else None)
    texts = [f"{c.title} {c.abstract}" for c in pool]
    pool_vectors = model.vectors_for(session, [c.id for c in pool])
    expanded = rank.expand(pool_vectors, model.vectors)

    # Every typed interest through the vectorizer in one call, then sliced per subscriber.
    texts_in_order = [text for s in subscribers for text in interests[s.id]]
    interest_matrix = model.transform(texts_in_order).tocsr()
    # An interest with no word of the vocabulary (typed before the first listing, say) is an empty
    # vector: it would score every paper 0 and "match" arbitrary ones, so it is left out.
    filled = np.flatnonzero(interest_matrix.getnnz(axis=1) > 0)
    interest_start = np.searchsorted(filled, np.cumsum([0] + [len(interests[s.id]) for s in subscribers]))
    interest_matrix = interest_matrix[filled]
    interests = {s.id: [texts_in_order[r] for r in filled[interest_start[n]:interest_start[n + 1]]]
                 for n, s in enumerate(subscribers)}
    tastes = []
    for index, subscriber in enumerate(subscribers):
        own_votes = votes[subscriber.id]
        weights = _decay(now, [w for _, _, w in own_votes], half_life_days)
        liked = [(row_of[p], d) for (p, v, _), d in zip(own_votes, weights, strict=True) if v > 0]
        disliked = [(row_of[p], d) for (p, v, _), d in zip(own_votes, weights, strict=True) if v < 0]
        pattern = mute_pattern(muted[subscriber.id])
        blocked = set(excluded[subscriber.id])
        if pattern is not None:
            blocked |= {n for n, text in enumerate(texts) if pattern.search(fold(text))}
        own = interests[subscriber.id]
        tastes.append(rank.Taste(
            liked=np.array([r for r, _ in liked], np.int64),
            liked_weight=np.array([w for _, w in liked], np.float32),
            disliked=np.array([r for r, _ in disliked], np.int64),
            disliked_weight=np.array([w for _, w in disliked], np.float32),
            interests=interest_matrix[interest_start[index]:interest_start[index + 1]] if own else None,
            excluded=np.array(sorted(blocked), np.int64),
            k=(sizes or {}).get(subscriber.id, subscriber.digest_size),
            liker_row=liker_row.get(subscriber.id, -1),
        ))
    n_topics = max((t.k for t in tastes), default=5)
    starter = rank.starter_order(pool_vectors, n_topics) if any(t.cold for t in tastes) else None
    picks = rank.rank(tastes, corpus, expanded, params, starter=starter)

    explained = sorted({voted_ids[p.reason.liked_row] for ps in picks for p in ps if p.reason.liked_row >= 0})
    title_by_row = {}
    for chunk in chunks(explained, 900):
        for pid, title in session.execute(select(Paper.id, Paper.title).where(Paper.id.in_(chunk))):
            title_by_row[row_of[pid]] = title
    for subscriber, taste_picks in zip(subscribers, picks, strict=True):
        results[subscriber.id] = [
            Pick(
                paper=pool[p.column], score=p.score, kind=p.reason.kind,
                why=why_line(p.reason, title_by_row, interests[subscriber.id], min(n_topics, len(pool))),
            )
            for p in taste_picks
        ]
    return results


def _decay(now: datetime, when: list[datetime], half_life_days: float) -> list[float]:
    """Each vote's weight, halving every `half_life_days`, relative to the subscriber's newest vote.

    Profiles are weighted means, so only the ratios matter; measuring ages from the newest vote
    keeps the weights of someone whose votes are all years old from underflowing to zero.
    """
    ages = [max((now.replace(tzinfo=None) if w.tzinfo is None else now) - w, timedelta(0)).total_seconds()
            / 86400.0 for w in when]  # SQLite hands back naive UTC
    newest = min(ages, default=0.0)
    return [float(0.5 ** ((age - newest) / half_life_days)) for age in ages]


def community_likes(session: Session) -> list[tuple[int, int]]:
    """Every (subscriber, paper) 👍: the other subscribers whose co-likes new papers borrow."""
    return [tuple(row) for row in session.execute(select(Vote.subscriber_id, Vote.paper_id).where(Vote.value > 0))]


def likers_matrix(likes: list[tuple[int, int]], liker_row: dict[int, int], row_of: dict[int, int]) -> sp.csr_matrix:
    """Subscribers (rows by `liker_row`) x known papers, 1 per 👍."""
    rows = np.array([liker_row[sid] for sid, _ in likes], np.int64)
    cols = np.array([row_of[pid] for _, pid in likes], np.int64)
    matrix = sp.csr_matrix((np.ones(len(likes), np.float32), (rows, cols)), shape=(len(liker_row), len(row_of)))
    matrix.data[:] = 1  # duplicates (none by the votes' unique key) would count once
    return matrix


def starters(session: Session, model: TextModel, subscriber: Subscriber, pool: list[Paper],
             size: int) -> list[Paper]:
    """The papers a newcomer rates at onboarding: closest to their typed interests plus one or two
    from elsewhere, or the day's most central paper of each main topic when they typed none."""
    if not pool:
        return []
    vectors = model.vectors_for(session, [c.id for c in pool])
    texts = list(session.scalars(select(Interest.text).where(Interest.subscriber_id == subscriber.id)
                                 .order_by(Interest.id)))
    order = rank.starter_order(vectors, size)
    interests = model.transform(texts) if texts else None
    return [pool[i] for i in rank.interest_starters(vectors, interests, order, size)]
