"""Each subscriber's taste as profile rows scored against every candidate: the centroid of their
likes (background subtracted), a centroid per topic that holds enough of them, one row per typed
interest; max-merged per subscriber, minus a penalty for resembling what they disliked.

Vote rows never form a profile vector: by linearity their dot products come from the shared
similarity table, and their norms from the likes themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from feedbot.ranking.inputs import Corpus, Params, Taste
from feedbot.ranking.kernels import dense_product, like_norms
from feedbot.ranking.tables import Columns, Shared

ROW_CENTROID, ROW_TOPIC, ROW_INTEREST = 0, 1, 2


@dataclass
class Profiles:
    """A block's profile rows: vote rows (centroids, then topics) numbered first, then interests."""

    likes: sp.csr_matrix  # subscribers x known, each row summing to 1
    vote_scores: np.ndarray  # vote rows x candidates
    interest_scores: np.ndarray  # interest rows x candidates
    interest_rows: sp.csr_matrix | None  # the interest vectors (for the why-line's terms)
    owner: np.ndarray  # subscriber (in the block) of each row
    kind: np.ndarray  # ROW_* of each row
    interest_of: np.ndarray  # the typed interest's index for interest rows, else -1

    @property
    def n_vote(self) -> int:
        return self.vote_scores.shape[0]

    def scores_at(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Score of each profile row at its column."""
        out = np.empty(len(rows), np.float32)
        vote = rows < self.n_vote
        out[vote] = self.vote_scores[rows[vote], columns[vote]]
        out[~vote] = self.interest_scores[rows[~vote] - self.n_vote, columns[~vote]]
        return out


def weights_matrix(tastes: list[Taste], rows_attr: str, weight_attr: str, n_known: int) -> sp.csr_matrix:
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


def build(tastes: list[Taste], corpus: Corpus, params: Params, shared: Shared) -> Profiles:
    """Every profile row of a block of subscribers, scored against all candidates."""
    known = corpus.known
    likes = weights_matrix(tastes, "liked", "liked_weight", known.shape[0])
    has_likes = np.flatnonzero(likes.getnnz(axis=1) > 0)
    coefficients, owners = [likes[has_likes]], [has_likes]
    topic_of_like, n_topic_rows = np.full(likes.nnz, -1, np.int64), 0
    if params.use_topics and len(has_likes):
        topic_rows, topic_owners, topic_of_like = _topic_rows(likes, corpus.topics, params, like_counts(tastes))
        coefficients.append(topic_rows)
        owners.append(topic_owners)
        n_topic_rows = len(topic_owners)
    n_centroids = len(has_likes)
    coefficients = sp.vstack(coefficients, format="csr")
    centroid_norms, topic_norms = like_norms(likes, known, topic_of_like, n_topic_rows)
    raw = _vote_products(likes, has_likes, coefficients[n_centroids:], owners[-1] if n_topic_rows else None,
                         topic_of_like, shared.table)
    vote_scores = centroid_scores(coefficients, np.concatenate([centroid_norms[has_likes], topic_norms]), raw,
                                  shared.candidates_b, shared.known_b, params.background, shared.b_norm2)
    vote_scores[n_centroids:] *= params.topic_weight
    n_vote = coefficients.shape[0]
    kinds = [np.full(n_centroids, ROW_CENTROID, np.int8), np.full(n_vote - n_centroids, ROW_TOPIC, np.int8)]
    extra = [np.full(n_vote, -1, np.int64)]
    interest_rows, interest_scores = _interest_rows(tastes, shared, owners, kinds, extra)
    return Profiles(likes, vote_scores, interest_scores, interest_rows, np.concatenate(owners),
                    np.concatenate(kinds), np.concatenate(extra))


def _interest_rows(tastes: list[Taste], shared: Shared, owners: list, kinds: list,
                   extra: list) -> tuple[sp.csr_matrix | None, np.ndarray]:
    """The usable typed interests as rows (appending their owners, kinds and indices), and their
    scores. The block's interests are stacked once; the empty rows (all stop words) are dropped there."""
    none = None, np.zeros((0, shared.candidates_t.shape[1]), np.float32)
    have = [s for s, t in enumerate(tastes) if t.interests is not None and t.interests.shape[0]]
    if not have:
        return none
    stacked = sp.vstack([tastes[s].interests for s in have], format="csr")
    lengths = np.array([tastes[s].interests.shape[0] for s in have])
    usable = np.flatnonzero(np.diff(stacked.indptr) > 0)
    if not len(usable):
        return none
    interest_rows = normalize(stacked[usable].astype(np.float32))
    owners.append(np.repeat(have, lengths)[usable])
    kinds.append(np.full(len(usable), ROW_INTEREST, np.int8))
    extra.append((np.arange(len(stacked.indptr) - 1) - np.repeat(np.cumsum(lengths) - lengths, lengths))[usable])
    return interest_rows, dense_product(interest_rows, shared.candidates_t)


def best_scores(profiles: Profiles, n_subs: int) -> np.ndarray:
    """Each subscriber's best row score per candidate. Rows are max-merged slot by slot (every
    subscriber's first row, then second, ...), so no stacked copy of all the scores is formed."""
    owner, n_vote = profiles.owner, profiles.n_vote
    slot = slots(owner, n_subs)[0]
    best = np.full((n_subs, profiles.vote_scores.shape[1]), -np.inf, dtype=np.float32)
    for j in range(int(slot.max()) + 1 if len(slot) else 0):
        for rows, array, shift in ((np.flatnonzero(slot[:n_vote] == j), profiles.vote_scores, 0),
                                   (np.flatnonzero(slot[n_vote:] == j), profiles.interest_scores, n_vote)):
            if len(rows):
                subs = owner[rows + shift]
                best[subs] = np.maximum(best[subs], array[rows])
    return best


def slots(owner: np.ndarray, n_subs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's place among its owner's rows; the rows in owner order; where each owner's start."""
    order = np.argsort(owner, kind="stable")
    starts = np.searchsorted(owner[order], np.arange(n_subs + 1))
    slot = np.empty(len(owner), np.int64)
    slot[order] = np.arange(len(owner)) - starts[owner[order]]
    return slot, order, starts


def penalise_dislikes(best: np.ndarray, tastes: list[Taste], corpus: Corpus, params: Params,
                      shared: Shared) -> None:
    """Subtract, in place, the penalty for resembling each subscriber's 👎 (ramped by their likes)."""
    dislikes = weights_matrix(tastes, "disliked", "disliked_weight", corpus.known.shape[0])
    has_dislikes = np.flatnonzero(dislikes.getnnz(axis=1) > 0)
    if not len(has_dislikes) or not params.dislike_penalty:
        return
    dislike_rows = dislikes[has_dislikes]
    penalty = centroid_scores(dislike_rows, like_norms(dislike_rows, corpus.known)[0],
                              shared.table.product(dislike_rows), shared.candidates_b, shared.known_b, 0.0,
                              shared.b_norm2)
    strength = np.full(len(has_dislikes), params.dislike_penalty, np.float32)
    if params.dislike_ramp:
        likes_count = np.array([tastes[s].n_likes for s in has_dislikes])
        strength *= (0.5 + 0.5 * np.minimum(1.0, likes_count / params.dislike_ramp)).astype(np.float32)
    penalty *= strength[:, None]
    best[has_dislikes] -= penalty


def like_counts(tastes: list[Taste]) -> np.ndarray | None:
    """The likes each entry of the block's likes matrix stands for, in its CSR order (None: one each,
    no library folded in the block). A paper liked twice over (a group's own import and its members'
    👍) is one like, as it is one entry."""
    if all(t.liked_count is None for t in tastes):
        return None
    owner = np.repeat(np.arange(len(tastes)), [len(t.liked) for t in tastes])
    columns = np.concatenate([t.liked for t in tastes]).astype(np.int64)
    values = np.concatenate([np.ones(len(t.liked)) if t.liked_count is None else t.liked_count for t in tastes])
    order = np.lexsort((columns, owner))  # CSR order: by subscriber, then by row
    owner, columns, values = owner[order], columns[order], values[order].astype(np.float64)
    first = np.ones(len(columns), bool)
    first[1:] = (owner[1:] != owner[:-1]) | (columns[1:] != columns[:-1])
    return np.maximum.reduceat(values, np.flatnonzero(first)) if len(values) else values


def _topic_rows(likes: sp.csr_matrix, topics: np.ndarray, params: Params,
                entry_counts: np.ndarray | None = None) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Per (subscriber, topic) weighted means for the topics that hold enough of their likes, their
    owners, and the topic row of each entry of `likes` in CSR order (-1: in no topic row). A folded
    library row counts as the likes it stands for (`entry_counts`)."""
    coo = likes.tocoo()
    n_topics = int(topics.max()) + 1 if len(topics) else 1
    ones = np.ones_like(coo.data) if entry_counts is None else entry_counts.astype(coo.data.dtype)
    counts = sp.csr_matrix((ones, (coo.row, topics[coo.col])),
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
        return sp.csr_matrix((0, likes.shape[1]), dtype=np.float32), owners, np.full(len(coo.data), -1, np.int64)
    pair = np.full(eligible.shape, -1, dtype=np.int64)
    pair[owners, chosen] = np.arange(len(owners))
    which = pair[coo.row, topics[coo.col]]
    keep = which >= 0
    rows = sp.csr_matrix((coo.data[keep], (which[keep], coo.col[keep])), shape=(len(owners), likes.shape[1]))
    return normalize(rows, norm="l1"), owners, which


def _vote_products(likes: sp.csr_matrix, has_likes: np.ndarray, topic_rows: sp.csr_matrix,
                   topic_owners: np.ndarray | None, topic_of_like: np.ndarray, table: Columns) -> np.ndarray:
    """The similarity table's product with the centroids (`likes[has_likes]`) then the topic rows,
    each like read once: a centroid is the sum of its topic rows, each weighing as its likes
    together, and of its likes in no topic row (most of a centroid's likes are in its topic rows)."""
    if topic_owners is None:
        return table.product(likes[has_likes])
    inside = topic_of_like >= 0
    outside = likes.copy()
    outside.data[inside] = 0
    outside.eliminate_zeros()
    n_centroids = len(has_likes)
    raw = table.product(sp.vstack([outside[has_likes], topic_rows], format="csr"))
    weight = np.bincount(topic_of_like[inside], weights=likes.data[inside], minlength=len(topic_owners))
    sums = sp.csr_matrix((weight.astype(np.float32), (np.searchsorted(has_likes, topic_owners),
                                                      np.arange(len(topic_owners)))),
                         shape=(n_centroids, len(topic_owners)))
    raw[:n_centroids] += sums @ raw[n_centroids:]
    return raw


def centroid_scores(coefficients: sp.csr_matrix, vv: np.ndarray, raw: np.ndarray, candidates_b: np.ndarray,
                    known_b: np.ndarray, background: float, b_norm2: float) -> np.ndarray:
    """Cosine of each weighted mean of known papers, background subtracted, with the candidates,
    from their dot products `raw` (in place).

    By linearity the raw dot products come from the similarity table (no profile x candidate
    product), and |v - g b|^2 = |v|^2 - 2g v.b + g^2 |b|^2 needs only each profile's own norm `vv`.
    """
    if coefficients.shape[0] == 0:
        return raw
    vb = coefficients @ known_b
    norms = np.sqrt(np.maximum(vv - 2 * background * vb + background**2 * b_norm2, 1e-12))
    if background:  # in place: these blocks are large
        raw -= np.float32(background) * candidates_b[None, :].astype(np.float32)
    raw *= (1.0 / norms).astype(np.float32)[:, None]
    return raw
