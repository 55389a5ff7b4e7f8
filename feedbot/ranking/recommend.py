"""Load what ranking needs from the database, rank every subscriber in one batched pass, and turn
the picks into suggestions with a why-line. Writes nothing: recording is the digest's job.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

import numpy as np
import scipy.sparse as sp
from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from feedbot.ranking import libraries, members, rank, reasons
from feedbot.ranking.textmodel import TextModel
from feedbot.ranking.votelog import MIRROR, VoteMirror, Votes, identity
from feedbot.store.db import chunks
from feedbot.store.models import Interest, Listing, Mute, Paper, Shown, Subscriber, Vote
from feedbot.store.subscribers import votes_version
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


@dataclass
class Community:
    """The tables every subscriber ranked against one candidate pool reads, for one version of the
    corpus and of the votes: every voted paper's vector, everyone's 👍, the candidates lengthened
    with their nearest known papers, the similarity and co-like tables."""

    voted_ids: list[int]  # the paper each row of `known` is (a folded library's row: the paper it names)
    row_of: dict[int, int]  # paper id -> row in `known` (folded library papers have none)
    liker_row: dict[int, int]  # subscriber id -> row in the likers matrix
    pool_vectors: sp.csr_matrix
    prepared: rank.Prepared
    starters: dict[int, np.ndarray] = field(default_factory=dict)  # starter order by number of topics
    folded_key: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # subscriber << 32 | paper, sorted
    folded_row: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # ... the row it was folded into

    def folded_rows(self, subscriber: int | np.ndarray, papers: np.ndarray) -> np.ndarray:
        """The row each of this subscriber's 👍 papers (or each subscriber's paper, given as many) was
        folded into, -1 where it was not."""
        keys = (np.asarray(subscriber, np.int64) << 32) | np.asarray(papers, np.int64)
        at = np.minimum(np.searchsorted(self.folded_key, keys), max(len(self.folded_key) - 1, 0))
        found = self.folded_key[at] == keys if len(self.folded_key) else np.zeros(len(keys), bool)
        return np.where(found, self.folded_row[at] if len(self.folded_row) else -1, -1)

    def whole_folds(self, subscriber: int, liked: np.ndarray) -> np.ndarray:
        """`folded_rows` for a subscriber's 👍 papers now, -1 also where the row lost a member since
        it was built (an import undone, a paper 👎'd, while the tables wait for their next build):
        its mean still holds the lost paper's words, so the members still liked count one by one,
        as papers of their own, and the lost one weighs nothing at once."""
        rows = self.folded_rows(subscriber, liked)
        if not (rows >= 0).any():
            return rows
        lo, hi = np.searchsorted(self.folded_key, [subscriber << 32, (subscriber + 1) << 32])
        built, members = np.unique(self.folded_row[lo:hi], return_counts=True)
        held_rows = self.folded_rows(subscriber, np.unique(liked))
        now, held = np.unique(held_rows[held_rows >= 0], return_counts=True)
        lost = now[held < members[np.searchsorted(built, now)]]
        return np.where(np.isin(rows, lost), -1, rows)

    def starter_order(self, n_topics: int) -> np.ndarray:
        if n_topics not in self.starters:
            self.starters[n_topics] = rank.starter_order(self.pool_vectors, n_topics)
        return self.starters[n_topics]


def build_community(session: Session, model: TextModel, pool: list[Paper], params: rank.Params,
                    mirror: VoteMirror = MIRROR, half_life_days: float = 90.0,
                    folds: libraries.FoldCache = libraries.FOLDS) -> Community:
    """Build the shared tables from everyone's votes, which `mirror` keeps current by reading only
    the subscribers whose votes changed since its last read (seconds with 100,000 subscribers).
    The papers known only from libraries (never listed, never 👎) get no row: each subscriber's
    👍 on them are folded into a row per topic (`libraries`; `folds` keeps the rows of the
    libraries unchanged since the last build) and lend no co-likes, but for those in several
    libraries (`_library_papers`)."""
    votes = mirror.current(session)[1]
    unlisted = np.fromiter(session.scalars(select(Paper.id).where(Paper.first_listed.is_(None))), np.int64)
    library = _library_papers(votes, unlisted)
    kept = ~np.isin(votes.paper, library) if len(library) else None  # no library: every vote as it is
    voted, people, likers = community_likes(votes if kept is None else votes.where(kept))
    voted_ids = voted.tolist()
    row_of = dict(zip(voted_ids, range(len(voted_ids)), strict=True))
    known = model.vectors_for(session, voted_ids)
    topics = model.topics_for(known)
    folded_key, folded_row = np.empty(0, np.int64), np.empty(0, np.int64)
    marks = None
    if len(library):
        liked = ~kept & (votes.value > 0)

        def vectors_of(papers: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
            vectors = model.vectors_for(session, papers.tolist())
            return vectors, model.topics_for(vectors)

        version = (str(session.get_bind().url), identity(session), model.corpus_version, model.fitted_at,
                   half_life_days)
        folded = folds.rows(version, votes.subscriber[liked], votes.paper[liked],
                            votes.hour[liked] / (24.0 * half_life_days), vectors_of, known.shape[1])
        folded_key, folded_row = folded.key, len(voted_ids) + folded.row
        voted_ids += folded.named.tolist()
        known = sp.vstack([known, folded.vectors], format="csr")
        topics = np.concatenate([topics, folded.topics])
        marks = np.arange(known.shape[0]) >= len(voted)
        likers = sp.hstack([likers, sp.csr_matrix((likers.shape[0], len(folded.owner)), dtype=likers.dtype)],
                           format="csr")
    liker_row: dict[int, int] = {}
    if not params.colike_weight or likers.nnz == 0:
        likers = None
    else:
        liker_row = dict(zip(people.tolist(), range(len(people)), strict=True))
    corpus = rank.Corpus(known, topics, model.background, model.terms, likers=likers, folded=marks)
    pool_vectors = model.vectors_for(session, [c.id for c in pool])
    prepared = rank.prepare(corpus, rank.expand(pool_vectors, _listed(model, unlisted)), params)
    return Community(voted_ids, row_of, liker_row, pool_vectors, prepared, folded_key=folded_key,
                     folded_row=folded_row)


SHARED_LIBRARY_ROWS = 50_000  # library papers in several libraries that keep a row, the most liked first


def _listed(model: TextModel, unlisted: np.ndarray) -> sp.csr_matrix:
    """The fitted papers that were listed: the ones candidates are lengthened with (document
    expansion). Papers known only from libraries are left out, so no one's import changes anyone
    else's candidates, and expansion costs what the listings hold, however large the libraries."""
    if not len(unlisted):
        return model.vectors
    return model.vectors[np.flatnonzero(~np.isin(model.paper_ids, unlisted))]


def _library_papers(votes: Votes, unlisted: np.ndarray, shared_rows: int | None = None) -> np.ndarray:
    """The voted papers known only from libraries (`unlisted`: never listed) that are folded,
    sorted: no one's 👎 (a 👎 is a paper's own row's), and not among the `shared_rows` most liked
    of those in two libraries or more (`SHARED_LIBRARY_ROWS` unless given), which keep a row of
    their own and lend co-likes like any 👍."""
    if not len(unlisted):  # no paper known only from a library: nothing to fold
        return unlisted
    positive = votes.paper[votes.value > 0]
    liked = positive[np.isin(positive, unlisted)].astype(np.int64)
    papers, likers = np.unique(liked, return_counts=True)
    foldable = ~np.isin(papers, votes.paper[votes.value < 0])
    papers, likers = papers[foldable], likers[foldable]
    shared = papers[likers >= 2]
    shared_rows = SHARED_LIBRARY_ROWS if shared_rows is None else shared_rows
    if len(shared) > shared_rows:
        shared = np.sort(shared[np.argsort(-likers[likers >= 2], kind="stable")[:shared_rows]])
    return np.setdiff1d(papers, shared)


MAX_LAG_SECONDS = 300.0  # how long other people's votes may be missing from the cached tables


@dataclass
class _Snapshot:
    community: Community
    version: int  # the votes' version read before the build
    current_at: float  # the last clock reading at which the votes still had that version


class CommunityCache:
    """The last few `Community` tables, by database, fit, candidate pool and parameters. A
    `/digest` (or a sweep) ranks its subscribers against them. They may miss other people's votes
    of the last `max_lag` seconds (by `clock`): one counter read tells whether the votes moved
    since the tables were last known current, and they are rebuilt when they did and that was
    `max_lag` ago. The subscriber's own votes never lag: `recommend` reads them fresh. Concurrent
    callers wanting the same tables wait for one build."""

    def __init__(self, size: int = 2, max_lag: float = MAX_LAG_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.max_lag = max_lag
        self.clock = clock
        self._entries: OrderedDict[tuple, _Snapshot] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: Session, model: TextModel, pool: list[Paper], params: rank.Params,
            half_life_days: float = 90.0) -> Community:
        key = (str(session.get_bind().url), model.corpus_version, model.fitted_at, tuple(c.id for c in pool), params,
               half_life_days)
        with self._lock:
            version, now = votes_version(session), self.clock()
            snapshot = self._entries.get(key)
            if snapshot is not None and (snapshot.version == version or now - snapshot.current_at < self.max_lag):
                if snapshot.version == version:
                    snapshot.current_at = now
                self._entries.move_to_end(key)
                return snapshot.community
            community = build_community(session, model, pool, params, half_life_days=half_life_days)
            self._entries[key] = _Snapshot(community, version, now)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
            return community


CACHE = CommunityCache()


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
    cache: CommunityCache | None = CACHE,
) -> dict[int, list[Pick]]:
    """Picks for each subscriber (by subscriber id), never a paper they saw or voted on. The shared
    tables come from `cache` while the corpus and the votes are unchanged (None: built afresh)."""
    pool = candidates(session, day, candidate_days)
    results: dict[int, list[Pick]] = {s.id: [] for s in subscribers}
    if not pool or not subscribers:
        return results
    community = cache.get(session, model, pool, params, half_life_days) if cache is not None else \
        build_community(session, model, pool, params, half_life_days=half_life_days)
    own = _read_subscribers(session, [s.id for s in subscribers], pool)
    community = _with_own_votes(session, model, community, own)
    _vectorise_interests(model, [s.id for s in subscribers], own)
    tastes = [_taste(s, own, community, pool, now, half_life_days, sizes) for s in subscribers]
    n_topics = max((t.k for t in tastes), default=5)
    starter = community.starter_order(n_topics) if any(t.cold for t in tastes) else None
    picks = rank.rank_prepared(community.prepared, tastes, starter=starter)

    library_named = _closest_members(session, model, community, subscribers, picks, own)
    explained = sorted({p.reason.liked_row for ps in picks for p in ps if p.reason.liked_row >= 0})
    title_of = {}
    named = {community.voted_ids[r] for r in explained} | {paper for paper, _ in library_named.values()}
    for chunk in chunks(sorted(named), 900):
        title_of.update(session.execute(select(Paper.id, Paper.title).where(Paper.id.in_(chunk))).all())
    title_by_row = {r: title_of[community.voted_ids[r]] for r in explained if community.voted_ids[r] in title_of}
    unnamed = _imported_into_chats(session, subscribers, community)
    for n, (subscriber, taste_picks) in enumerate(zip(subscribers, picks, strict=True)):
        hidden = unnamed.get(subscriber.id)
        titles = {r: t for r, t in title_by_row.items() if r not in hidden} if hidden else title_by_row
        out = []
        for j, p in enumerate(taste_picks):
            reason, shown = p.reason, titles
            if (n, j) in library_named and reason.liked_row in titles:  # a library's row: the member named
                paper, terms = library_named[n, j]
                reason, shown = replace(reason, terms=terms), {reason.liked_row: title_of.get(paper, "")}
            out.append(Pick(paper=pool[p.column], score=p.score, kind=p.reason.kind,
                            why=why_line(reason, shown, own.interests[subscriber.id], min(n_topics, len(pool)))))
        results[subscriber.id] = out
    return results


def _closest_members(session: Session, model: TextModel, community: Community, subscribers: list[Subscriber],
                     picks: list[list[rank.Scored]], own: _Own) -> dict[tuple[int, int], tuple[int, tuple[str, ...]]]:
    """For each pick (subscriber, pick) explained by a folded library row: the paper of that row
    most like the pick, which the why-line names, and the words the two share — not the row's
    mean's words, which may be none of that paper's. Only papers the subscriber still likes are
    named (the tables may be older than their last vote)."""
    folded = community.prepared.corpus.folded if community.prepared is not None else None
    wanted = [(n, j, p.reason.liked_row, p.column) for n, ps in enumerate(picks) for j, p in enumerate(ps)
              if folded is not None and 0 <= p.reason.liked_row < len(folded) and folded[p.reason.liked_row]]
    if not wanted:
        return {}
    by_subscriber: dict[int, list[int]] = defaultdict(list)  # n -> its picks' places in `wanted`
    for i, (n, _, _, _) in enumerate(wanted):
        by_subscriber[n].append(i)
    keys = community.folded_key
    members_of: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # n -> the papers it still likes, their rows
    for n, places in by_subscriber.items():
        sid = subscribers[n].id
        lo, hi = np.searchsorted(keys, [sid << 32, (sid + 1) << 32])
        papers, rows = keys[lo:hi] & 0xFFFFFFFF, community.folded_row[lo:hi]
        liked = np.array([pid for pid, value, _ in own.votes[sid] if value > 0], np.int64)
        keep = np.isin(rows, [wanted[i][2] for i in places]) & np.isin(papers, liked)
        members_of[n] = papers[keep], rows[keep]
    papers = np.unique(np.concatenate([p for p, _ in members_of.values()] + [np.empty(0, np.int64)]))
    vectors = model.vectors_for(session, papers.tolist())
    chosen = np.full(len(wanted), -1, np.int64)  # the row of `vectors` each pick names
    for n, places in by_subscriber.items():  # one product a subscriber: its members x its picks
        mine, rows = members_of[n]
        if not len(mine):
            continue
        at = np.searchsorted(papers, mine)  # ascending: ties go to the lowest paper id
        likeness = (vectors[at] @ community.pool_vectors[[wanted[i][3] for i in places]].T).toarray()
        likeness[rows[:, None] != np.array([wanted[i][2] for i in places])[None, :]] = -np.inf
        best = likeness.argmax(axis=0)
        found = np.isfinite(likeness[best, np.arange(len(places))])
        chosen[np.asarray(places)[found]] = at[best[found]]
    named = np.flatnonzero(chosen >= 0)
    words = reasons.top_terms(vectors[chosen[named]], np.array([wanted[i][3] for i in named], np.int64),
                              community.prepared.shared, model.terms) if len(named) else []
    return {wanted[i][:2]: (int(papers[chosen[i]]), w) for i, w in zip(named, words, strict=True)}


def _imported_into_chats(session: Session, subscribers: list[Subscriber], community: Community) -> dict[int, set]:
    """Rows of the papers a library import added to a group's or channel's profile (their own rows
    or the rows they were folded into), by subscriber: they teach the chat's ranking, but a reason
    never names them to its members."""
    chats = [s.id for s in subscribers if s.kind != "private"]
    pairs = [pair for chunk in chunks(chats, 900) for pair in session.execute(
        select(Vote.subscriber_id, Vote.paper_id).where(Vote.subscriber_id.in_(chunk), Vote.origin == "import"))]
    if not pairs:
        return {}
    sid, pid = np.array(pairs, np.int64).T
    rows = community.folded_rows(sid, pid)
    out: dict[int, set] = {}
    for s, p, row in zip(sid.tolist(), pid.tolist(), rows.tolist(), strict=True):
        # Both where both exist: a folded row that lost a member leaves its papers rows of their own.
        hidden = {r for r in (row, community.row_of.get(p, -1)) if r >= 0}
        if hidden:
            out.setdefault(s, set()).update(hidden)
    return out


@dataclass
class _Own:
    """What the subscribers being ranked have: votes, interests (text and vectors), mutes, papers seen."""

    votes: dict[int, list[tuple[int, float, datetime]]]  # (paper, ±1 or a group's weight, when)
    interests: dict[int, list[str]]
    interest_vectors: dict[int, sp.csr_matrix]
    muted: dict[int, list[str]]
    excluded: dict[int, set[int]]


def _read_subscribers(session: Session, ids: list[int], pool: list[Paper]) -> _Own:
    column_of = {c.id: n for n, c in enumerate(pool)}
    own = _Own(defaultdict(list), defaultdict(list), {}, defaultdict(list), defaultdict(set))
    for chunk in chunks(ids, 900):
        for sid, pid, value, when in session.execute(
            select(Vote.subscriber_id, Vote.paper_id, Vote.value, Vote.voted_at).where(Vote.subscriber_id.in_(chunk))
        ):
            own.votes[sid].append((pid, value, when))
            if pid in column_of:
                own.excluded[sid].add(column_of[pid])
        for sid, weighted in members.group_votes(session, chunk).items():  # a group's: its members' votes
            own.votes[sid] += weighted
            own.excluded[sid].update(column_of[pid] for pid, _, _ in weighted if pid in column_of)
        for sid, text in session.execute(
            select(Interest.subscriber_id, Interest.text).where(Interest.subscriber_id.in_(chunk)).order_by(Interest.id)
        ):
            own.interests[sid].append(text)
        for sid, word in session.execute(select(Mute.subscriber_id, Mute.word).where(Mute.subscriber_id.in_(chunk))):
            own.muted[sid].append(word)
    # Papers already shown: by subscriber for a few (a /digest), by candidate for a whole sweep.
    wanted = set(ids)
    by_subscriber = len(ids) <= 900
    for cand_chunk in chunks(list(column_of), 900):
        query = select(Shown.subscriber_id, Shown.paper_id).where(Shown.paper_id.in_(cand_chunk))
        if by_subscriber:
            query = query.where(Shown.subscriber_id.in_(ids))
        for sid, pid in session.execute(query):
            if sid in wanted:
                own.excluded[sid].add(column_of[pid])
    return own


def _vectorise_interests(model: TextModel, ids: list[int], own: _Own) -> None:
    """Every typed interest through the vectorizer in one call, then sliced per subscriber. An
    interest with no word of the vocabulary (typed before the first listing, say) is an empty vector:
    it would score every paper 0 and "match" arbitrary ones, so it is left out, text and vector."""
    texts_in_order = [text for sid in ids for text in own.interests[sid]]
    matrix = model.transform(texts_in_order).tocsr()
    filled = np.flatnonzero(matrix.getnnz(axis=1) > 0)
    start = np.searchsorted(filled, np.cumsum([0] + [len(own.interests[sid]) for sid in ids]))
    matrix = matrix[filled]
    for n, sid in enumerate(ids):
        own.interests[sid] = [texts_in_order[r] for r in filled[start[n]:start[n + 1]]]
        if own.interests[sid]:
            own.interest_vectors[sid] = matrix[start[n]:start[n + 1]]


def _with_own_votes(session: Session, model: TextModel, community: Community, own: _Own) -> Community:
    """The tables with the papers these subscribers voted on since they were built (their own
    votes are always current; other people's may wait for the next build)."""
    wanted: set[int] = set()
    for sid, votes in own.votes.items():
        papers = np.array([pid for pid, value, _ in votes if value > 0], np.int64)
        folded = set(papers[community.whole_folds(sid, papers) >= 0].tolist()) if len(papers) else set()
        wanted.update(pid for pid, value, _ in votes if not (value > 0 and pid in folded))
    new = sorted(wanted - community.row_of.keys())
    if not new:
        return community
    vectors = model.vectors_for(session, new)
    voted_ids = community.voted_ids + new
    row_of = dict(community.row_of)
    row_of.update((pid, len(community.voted_ids) + n) for n, pid in enumerate(new))
    return Community(voted_ids, row_of, community.liker_row,
                     community.pool_vectors, rank.extend(community.prepared, vectors, model.topics_for(vectors)),
                     community.starters, community.folded_key, community.folded_row)


def _taste(subscriber: Subscriber, own: _Own, community: Community, pool: list[Paper], now: datetime,
           half_life_days: float, sizes: dict[int, int] | None) -> rank.Taste:
    """One subscriber's ranking inputs against the shared tables (holding every paper they voted on)."""
    own_votes = own.votes[subscriber.id]
    weights = decay(now, [w for _, _, w in own_votes], half_life_days)
    # A vote weighs ±1; a group's paper weighs as much as its members' votes make it (`members`).
    folded = _folded_likes(subscriber.id, own_votes, weights, community)
    in_fold = set() if folded is None else folded[3]
    liked = [(community.row_of[p], d * abs(v)) for (p, v, _), d in zip(own_votes, weights, strict=True)
             if v > 0 and p in community.row_of and p not in in_fold]
    disliked = [(community.row_of[p], d * abs(v)) for (p, v, _), d in zip(own_votes, weights, strict=True) if v < 0]
    blocked = set(own.excluded[subscriber.id])
    pattern = mute_pattern(own.muted[subscriber.id])
    if pattern is not None:
        blocked |= {n for n, c in enumerate(pool) if pattern.search(fold(f"{c.title} {c.abstract}"))}
    count = None if folded is None else np.concatenate([np.ones(len(liked)), folded[2]]).astype(np.float32)
    if folded is not None:
        liked += list(zip(folded[0].tolist(), folded[1].tolist(), strict=True))
    return rank.Taste(
        liked=np.array([r for r, _ in liked], np.int64),
        liked_weight=np.array([w for _, w in liked], np.float32),
        liked_count=count,
        disliked=np.array([r for r, _ in disliked], np.int64),
        disliked_weight=np.array([w for _, w in disliked], np.float32),
        interests=own.interest_vectors.get(subscriber.id),
        excluded=np.array(sorted(blocked), np.int64),
        k=(sizes or {}).get(subscriber.id, subscriber.digest_size),
        liker_row=community.liker_row.get(subscriber.id, -1),
    )


def _folded_likes(sid: int, own_votes: list, weights: list[float],
                  community: Community) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A subscriber's 👍 folded into library rows: the rows, each weighing as much as the likes it
    holds now, and how many likes each holds (None: none folded). The 👍 on a paper that has a row
    of its own (a group's members', say) are left to that row; so are those of a row that lost a
    member since the tables were built (`whole_folds`)."""
    if not len(community.folded_key):
        return None
    liked = [(p, d * abs(v)) for (p, v, _), d in zip(own_votes, weights, strict=True)
             if v > 0]
    if not liked:
        return None
    rows = community.whole_folds(sid, np.array([p for p, _ in liked], np.int64))
    found = rows >= 0
    if not found.any():
        return None
    unique, at = np.unique(rows[found], return_inverse=True)
    weight = np.bincount(at.ravel(), weights=np.array([w for _, w in liked])[found], minlength=len(unique))
    return unique, weight, np.bincount(at.ravel(), minlength=len(unique)), \
        {p for (p, _), f in zip(liked, found, strict=True) if f}


def decay(now: datetime, when: list[datetime], half_life_days: float) -> list[float]:
    """Each vote's weight, halving every `half_life_days`, relative to the subscriber's newest vote.

    Profiles are weighted means, so only the ratios matter; measuring ages from the newest vote
    keeps the weights of someone whose votes are all years old from underflowing to zero.
    """
    ages = [max((now.replace(tzinfo=None) if w.tzinfo is None else now) - w, timedelta(0)).total_seconds()
            / 86400.0 for w in when]  # SQLite hands back naive UTC
    newest = min(ages, default=0.0)
    return [float(0.5 ** ((age - newest) / half_life_days)) for age in ages]


def community_likes(votes: Votes) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
    """The voted papers (sorted ids: the rows of `known`), the people with a 👍 (sorted ids) and
    the people x papers matrix of their 👍, imported ones included."""
    voted = np.unique(votes.paper)
    liked = votes.value > 0
    people = np.unique(votes.subscriber[liked])
    return voted, people, likers_matrix(np.searchsorted(people, votes.subscriber[liked]),
                                        np.searchsorted(voted, votes.paper[liked]), len(people), len(voted))


def likers_matrix(rows: np.ndarray, cols: np.ndarray, n_people: int, n_papers: int) -> sp.csr_matrix:
    """People x known papers, 1 per 👍 (given as row and column pairs)."""
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_people, n_papers))
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
