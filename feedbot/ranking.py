"""Rank candidate papers for many subscribers at once. Pure: arrays in, picks out.

Each subscriber's taste becomes a few profile vectors over the TF-IDF space:
  * the Rocchio centroid of everything they liked (votes decayed by age) minus a background of
    the whole corpus, so words every paper uses do not count as taste;
  * one centroid per topic that holds a good share of their likes (topics are k-means clusters
    of the corpus), so a minor interest is not drowned by the dominant one;
  * one vector per typed interest.
A paper scores by its best-matching vector (arxiv-sanity-lite's per-tag max-merge), minus a
penalty for resembling what they disliked. All subscribers' vectors are stacked into one sparse
matrix and multiplied with the candidates in chunks, then cut to top-k with `argpartition`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

KIND_PROFILE, KIND_TOPIC, KIND_INTEREST, KIND_STARTER = "liked", "topic", "interest", "starter"


@dataclass(frozen=True)
class Params:
    background: float = 2.0  # weight of the corpus mean subtracted from vote profiles
    dislike_penalty: float = 0.5  # times the similarity to the disliked centroid
    topic_min_likes: int = 2  # a topic gets its own vector from this many likes
    topic_min_share: float = 0.2  # ... holding at least this share of all likes
    max_topics: int = 3
    use_topics: bool = True
    topic_min_total: int = 20  # ... once there are this many likes in all (small libraries: one centroid)
    topic_weight: float = 0.9  # topic vectors are narrower, so their cosines run higher: damp them
    chunk: int = 4000  # subscribers per block of the batched product


@dataclass
class Taste:
    """One subscriber's inputs; rows index the `known` matrix, columns the candidates."""

    liked: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    liked_weight: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    disliked: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    disliked_weight: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    interests: sp.csr_matrix | None = None  # one L2-normalised row per typed interest
    excluded: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    k: int = 5

    @property
    def cold(self) -> bool:
        return len(self.liked) == 0 and (self.interests is None or self.interests.shape[0] == 0)


@dataclass(frozen=True)
class Reason:
    """Why a paper was picked: the vector that matched best, and the words it shares with it."""

    kind: str
    liked_row: int = -1  # row in `known` of the closest liked paper (kinds liked/topic)
    interest: int = -1  # index of the typed interest (kind interest)
    terms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pick:
    column: int  # candidate column
    score: float
    reason: Reason


@dataclass
class Corpus:
    """What ranking needs to know about the corpus, all derived from the fitted text model."""

    known: sp.csr_matrix  # L2-normalised vectors of papers that can have votes
    topics: np.ndarray  # topic of each known row
    background: np.ndarray  # mean of the known vectors (dense, vocabulary-sized)
    terms: np.ndarray | None = None  # vocabulary, for explanations

    @classmethod
    def build(cls, known: sp.csr_matrix, topics: np.ndarray | None = None,
              terms: np.ndarray | None = None, background: np.ndarray | None = None) -> Corpus:
        """A corpus whose background is the mean of `known` unless given."""
        known = known.tocsr().astype(np.float32)
        if background is None:
            background = np.asarray(known.mean(axis=0)).ravel()
        if topics is None:
            topics = np.zeros(known.shape[0], dtype=np.int32)
        return cls(known, np.asarray(topics), np.asarray(background, dtype=np.float32), terms)


def _weights_matrix(tastes: list[Taste], rows_attr: str, weight_attr: str, n_known: int) -> sp.csr_matrix:
    """Subscribers × known papers, each row summing to 1 (the weighted mean's coefficients)."""
    indptr = np.zeros(len(tastes) + 1, dtype=np.int64)
    np.cumsum([len(getattr(t, rows_attr)) for t in tastes], out=indptr[1:])
    if indptr[-1] == 0:
        return sp.csr_matrix((len(tastes), n_known), dtype=np.float32)
    columns = np.concatenate([getattr(t, rows_attr) for t in tastes]).astype(np.int64)
    values = np.concatenate([getattr(t, weight_attr) for t in tastes]).astype(np.float32)
    matrix = sp.csr_matrix((values, columns, indptr), shape=(len(tastes), n_known))
    matrix.sum_duplicates()
    return normalize(matrix, norm="l1")


def _topic_rows(likes: sp.csr_matrix, topics: np.ndarray, params: Params) -> tuple[sp.csr_matrix, np.ndarray]:
    """Per (subscriber, topic) weighted means for the topics that hold enough of their likes."""
    coo = likes.tocoo()
    n_topics = int(topics.max()) + 1 if len(topics) else 1
    counts = sp.csr_matrix((np.ones_like(coo.data), (coo.row, topics[coo.col])),
                           shape=(likes.shape[0], n_topics)).toarray()
    total = counts.sum(axis=1, keepdims=True)
    eligible = (counts >= params.topic_min_likes) & (counts >= params.topic_min_share * np.maximum(total, 1))
    eligible &= (eligible.sum(axis=1, keepdims=True) >= 2)  # one topic only: the centroid says it all
    eligible &= total >= params.topic_min_total
    if params.max_topics and eligible.any():
        order = np.argsort(-np.where(eligible, counts, -1), axis=1)[:, params.max_topics:]
        np.put_along_axis(eligible, order, False, axis=1)
    owners, chosen = np.nonzero(eligible)
    if len(owners) == 0:
        return sp.csr_matrix((0, likes.shape[1]), dtype=np.float32), owners
    pair = np.full(eligible.shape, -1, dtype=np.int64)
    pair[owners, chosen] = np.arange(len(owners))
    which = pair[coo.row, topics[coo.col]]
    keep = which >= 0
    rows = sp.csr_matrix((coo.data[keep], (which[keep], coo.col[keep])), shape=(len(owners), likes.shape[1]))
    return normalize(rows, norm="l1"), owners


def _top_terms(vectors: sp.csr_matrix, candidates: sp.csr_matrix, terms: np.ndarray | None,
               n: int = 3) -> list[tuple[str, ...]]:
    """For each (profile vector, candidate) row pair, the n terms with the largest product."""
    if terms is None or vectors.shape[0] == 0:
        return [()] * vectors.shape[0]
    product = vectors.multiply(candidates).tocoo()
    positive = product.data > 0
    row, col, value = product.row[positive], product.col[positive], product.data[positive]
    order = np.lexsort((-value, row))
    row, col = row[order], col[order]
    starts = np.searchsorted(row, np.arange(vectors.shape[0]))
    rank_in_row = np.arange(len(row)) - starts[row]
    out: list[list[str]] = [[] for _ in range(vectors.shape[0])]
    for r, c in zip(row[rank_in_row < n], col[rank_in_row < n], strict=True):
        term = str(terms[c])
        if len(out[r]) < 3 and not any(term in t or t in term for t in out[r]):  # "graph" vs "graph neural"
            out[r].append(term)
    return [tuple(t) for t in out]


def expand(candidates: sp.csr_matrix, known: sp.csr_matrix, neighbours: int = 10,
           weight: float = 1.0) -> sp.csr_matrix:
    """Lengthen short documents with their nearest known papers (document expansion): each candidate
    becomes itself plus `weight` x the similarity-weighted mean of its `neighbours` closest papers.
    Near-duplicates (the paper itself, when it is in `known`) are not counted as neighbours."""
    if neighbours <= 0 or known.shape[0] == 0 or candidates.shape[0] == 0:
        return candidates
    k = min(neighbours, known.shape[0])
    parts = []
    for start in range(0, candidates.shape[0], 256):  # bounded memory: 256 x corpus at a time
        block = candidates[start : start + 256]
        similarity = np.asarray((block @ known.T).todense(), dtype=np.float32)
        similarity[similarity > 0.999] = 0
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.take_along_axis(similarity, top, axis=1)
        rows = np.repeat(np.arange(block.shape[0]), k)
        parts.append(sp.csr_matrix((weights.ravel(), (rows, top.ravel())), shape=similarity.shape))
    mix = sp.vstack(parts, format="csr")
    return normalize(candidates + weight * normalize(mix @ known)).astype(np.float32)


def starter_order(candidates: sp.csr_matrix, clusters: int, seed: int = 0) -> np.ndarray:
    """Candidate columns ordered for a newcomer: the most central paper of each of `clusters`
    k-means clusters first (largest cluster first), then the next most central of each, and so on."""
    n = candidates.shape[0]
    if n <= 1:
        return np.arange(n)
    from sklearn.cluster import KMeans

    clusters = max(1, min(clusters, n))
    model = KMeans(n_clusters=clusters, n_init=3, random_state=seed).fit(candidates)
    centres = normalize(model.cluster_centers_)
    closeness = np.asarray(candidates @ centres.T)[np.arange(n), model.labels_]
    sizes = np.bincount(model.labels_, minlength=clusters)
    by_cluster = [sorted(np.flatnonzero(model.labels_ == c), key=lambda i: -closeness[i])
                  for c in np.argsort(-sizes, kind="stable")]
    order = []
    for depth in range(max(len(members) for members in by_cluster)):
        order += [members[depth] for members in by_cluster if depth < len(members)]
    return np.array(order, dtype=np.int64)


def rank(tastes: list[Taste], corpus: Corpus, candidates: sp.csr_matrix,
         params: Params = Params(), starter: np.ndarray | None = None) -> list[list[Pick]]:
    """Top-k picks for every subscriber, best first, with reasons; excluded columns never picked."""
    candidates = candidates.tocsr().astype(np.float32)
    results: list[list[Pick]] = [[] for _ in tastes]
    if candidates.shape[0] == 0:
        return results
    cold = [i for i, t in enumerate(tastes) if t.cold]
    if cold:
        order = starter if starter is not None else starter_order(candidates, max(t.k for t in tastes))
        for i in cold:
            excluded = set(tastes[i].excluded.tolist())
            chosen = [c for c in order if c not in excluded][: tastes[i].k]
            results[i] = [Pick(int(c), 0.0, Reason(KIND_STARTER)) for c in chosen]
    warm = [i for i, t in enumerate(tastes) if not t.cold]
    for start in range(0, len(warm), params.chunk):
        block = warm[start : start + params.chunk]
        for i, picks in zip(block, _rank_block([tastes[i] for i in block], corpus, candidates, params),
                            strict=True):
            results[i] = picks
    return results


def _rank_block(tastes: list[Taste], corpus: Corpus, candidates: sp.csr_matrix,
                params: Params) -> list[list[Pick]]:
    n_subs, n_cand = len(tastes), candidates.shape[0]
    known = corpus.known
    likes = _weights_matrix(tastes, "liked", "liked_weight", known.shape[0])
    dislikes = _weights_matrix(tastes, "disliked", "disliked_weight", known.shape[0])

    # Profile vectors: centroid per subscriber with likes, topic centroids, typed interests.
    has_likes = np.flatnonzero(likes.getnnz(axis=1) > 0)
    blocks = [likes[has_likes]]
    owners = [has_likes]
    kinds = [np.full(len(has_likes), 0, np.int8)]
    extra = [np.full(len(has_likes), -1, np.int64)]
    if params.use_topics and len(has_likes):
        topic_rows, topic_owners = _topic_rows(likes, corpus.topics, params)
        blocks.append(topic_rows)
        owners.append(topic_owners)
        kinds.append(np.full(len(topic_owners), 1, np.int8))
        extra.append(np.full(len(topic_owners), -1, np.int64))
    vote_rows = sp.vstack(blocks, format="csr") @ known  # weighted means of liked vectors
    n_vote_rows = vote_rows.shape[0]

    interest_blocks, interest_owners, interest_index = [], [], []
    for s, taste in enumerate(tastes):
        if taste.interests is not None and taste.interests.shape[0]:
            interest_blocks.append(taste.interests)
            interest_owners.append(np.full(taste.interests.shape[0], s))
            interest_index.append(np.arange(taste.interests.shape[0]))
    if interest_blocks:
        interest_rows = normalize(sp.vstack(interest_blocks, format="csr").astype(np.float32))
        owners.append(np.concatenate(interest_owners))
        kinds.append(np.full(interest_rows.shape[0], 2, np.int8))
        extra.append(np.concatenate(interest_index))
        vectors = sp.vstack([vote_rows, interest_rows], format="csr")
    else:
        vectors = vote_rows
    owner = np.concatenate(owners)
    kind = np.concatenate(kinds)
    interest_of = np.concatenate(extra)

    # Cosine with the background subtracted (Rocchio), kept sparse by linearity:
    # (v - g b)·x / |v - g b|, with |v - g b|^2 = |v|^2 - 2g v·b + g^2 |b|^2.
    raw = np.asarray((vectors @ candidates.T).todense(), dtype=np.float32)
    g = np.zeros(vectors.shape[0], np.float32)
    g[:n_vote_rows] = params.background
    b = corpus.background
    bx = np.asarray(candidates @ b).ravel()
    vb = np.asarray(vectors @ b).ravel()
    vv = np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel()
    norms = np.sqrt(np.maximum(vv - 2 * g * vb + g * g * float(b @ b), 1e-12))
    scores = (raw - g[:, None] * bx[None, :]) / norms[:, None]
    scores[kind == 1] *= params.topic_weight

    # Max-merge the rows of each subscriber.
    order = np.argsort(owner, kind="stable")
    owner, kind, interest_of, scores = owner[order], kind[order], interest_of[order], scores[order]
    vector_of_row = order
    starts = np.searchsorted(owner, np.arange(n_subs))
    best = np.full((n_subs, n_cand), -np.inf, dtype=np.float32)
    present = np.unique(owner)
    best[present] = np.maximum.reduceat(scores, starts[present], axis=0)

    has_dislikes = np.flatnonzero(dislikes.getnnz(axis=1) > 0)
    if len(has_dislikes) and params.dislike_penalty:
        negative = normalize(dislikes[has_dislikes] @ known)
        best[has_dislikes] -= params.dislike_penalty * np.asarray((negative @ candidates.T).todense())

    for s, taste in enumerate(tastes):
        if len(taste.excluded):
            best[s, taste.excluded] = -np.inf

    picks_per_sub: list[np.ndarray] = []
    for s, taste in enumerate(tastes):
        row = best[s]
        k = min(taste.k, int(np.isfinite(row).sum()))
        if k <= 0:
            picks_per_sub.append(np.empty(0, np.int64))
            continue
        top = np.argpartition(-row, k - 1)[:k] if k < n_cand else np.arange(n_cand)
        picks_per_sub.append(top[np.argsort(-row[top], kind="stable")][:k])

    # Explanations: which vector won each pick, the closest liked paper, the shared terms.
    pick_sub = np.repeat(np.arange(n_subs), [len(p) for p in picks_per_sub])
    pick_col = np.concatenate(picks_per_sub) if picks_per_sub else np.empty(0, np.int64)
    win_row = np.empty(len(pick_col), np.int64)
    for n, (s, c) in enumerate(zip(pick_sub, pick_col, strict=True)):
        lo, hi = starts[s], (starts[s + 1] if s + 1 < n_subs else len(owner))
        win_row[n] = lo + int(np.argmax(scores[lo:hi, c]))
    terms = _top_terms(vectors[vector_of_row[win_row]], candidates[pick_col], corpus.terms, n=8)

    # Closest liked paper per pick: one product of the liked rows with the picked columns.
    liked_rows = np.unique(likes.indices)
    picked_cols = np.unique(pick_col)
    closeness = np.asarray((known[liked_rows] @ candidates[picked_cols].T).todense())
    out: list[list[Pick]] = [[] for _ in tastes]
    for n, (s, c, w) in enumerate(zip(pick_sub, pick_col, win_row, strict=True)):
        taste = tastes[s]
        if kind[w] == 2:
            reason = Reason(KIND_INTEREST, interest=int(interest_of[w]), terms=terms[n])
        else:
            local = np.searchsorted(liked_rows, taste.liked)
            column = closeness[local, np.searchsorted(picked_cols, c)]
            closest = int(taste.liked[int(np.argmax(column))])
            reason = Reason(KIND_PROFILE if kind[w] == 0 else KIND_TOPIC, liked_row=closest, terms=terms[n])
        out[s].append(Pick(int(c), float(best[s, c]), reason))
    return out
