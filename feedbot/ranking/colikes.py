"""The community signal: other people's co-likes, borrowed by a new paper from its nearest known papers.

A new paper c has no votes. Its neighbours are the known papers k most like it by content (at
most `colike_neighbours`, each at least `colike_min_similarity` alike), weighted by that raw
similarity s(c, k): not normalised, so a paper far from everything borrows next to nothing. For a
subscriber u who liked paper i, the other people who liked i vote for c through the neighbours
they also liked:

    community(u, c) = sum_i a(u, i) sum_{k != i} s(c, k) P_u(i, k) / sqrt((m_u(i) + shrink) (M_u(c) + shrink))

with a(u, i) the weight of u's like of i (summing to 1), P_u(i, k) the number of people other
than u who liked both i and k, m_u(i) the number of people other than u who liked i, and
M_u(c) = sum_k s(c, k) m_u(k) the other people's likes on the paper's neighbours. Without shrink
it is a cosine between i's other likers and the neighbourhood's (popular papers do not borrow
more for being popular); `shrink` pulls it towards 0 while few people stand behind it, and a like
counts only once `colike_min_likers` other people liked the same paper, so a lab of five borrows
little and a lone subscriber nothing. The subscriber's own 👍 never count: the
shared table holds everyone's counts, and each subscriber's own part is taken out exactly (two
small sparse products).

The shared part Q(i, c) = sum_{k != i} s(c, k) P(i, k) is computed as X'(X N) - diag(n) N in
blocks of candidates (X: people x known papers, N: the neighbour weights), so the known x known
co-like matrix is never formed. It is made in float64 and held in float32, which halves what
every block reads; a subscriber's own part is taken out in float64, and what is left of it within
the float32 sum's rounding counts as nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from feedbot.ranking.inputs import Params, Taste
from feedbot.ranking.kernels import canonical
from feedbot.ranking.tables import Columns, parallel_map

NOISE = 1e-9  # what is left of an exact cancellation in float64 is not a community
EPS32 = float(np.finfo(np.float32).eps)  # twice float32's rounding: the shared table is held in float32


@dataclass
class Colikes:
    """The tables every subscriber's community term is read from."""

    shared: Columns  # known x candidates, float32: Q(i, c) from everyone's 👍; only the rows up to the
    # last paper someone liked (the rest are 0: folded libraries and papers voted on since)
    neighbours: sp.csr_matrix  # known x candidates: s(c, k) for each candidate's neighbours, else 0
    mass: np.ndarray  # each candidate's sum_k s(c, k) n(k): everyone's likes on its neighbours
    likers: sp.csr_matrix  # people x known, 1 per 👍
    counts: np.ndarray  # people who liked each known paper
    params: Params

    def with_known(self, count: int) -> Colikes:
        """The same tables with `count` more known papers that no one liked and no candidate borrows from."""
        return Colikes(self.shared,
                       sp.vstack([self.neighbours, sp.csr_matrix((count, self.neighbours.shape[1]))], format="csr"),
                       self.mass, sp.hstack([self.likers, sp.csr_matrix((self.likers.shape[0], count))], format="csr"),
                       np.concatenate([self.counts, np.zeros(count)]), self.params)

    def own_rows(self, tastes: list[Taste]) -> sp.csr_matrix:
        """Each subscriber's own row of `likers` (empty when they are not in it)."""
        rows = np.array([t.liker_row for t in tastes], np.int64)
        member = rows >= 0
        picked = self.likers[np.where(member, rows, 0)].tocsr()
        return sp.diags(member.astype(np.float64)) @ picked

    def block(self, tastes: list[Taste], likes: sp.csr_matrix) -> BlockColikes:
        """A block of subscribers' own parts of the sums (rows of `likes`), made once for their
        scores and their why-lines."""
        own = self.own_rows(tastes)
        own_entries = own.tocoo()
        likes = canonical(likes)  # its keys ascending
        width = likes.shape[1]
        keys = np.repeat(np.arange(likes.shape[0], dtype=np.int64), np.diff(likes.indptr)) * width + likes.indices
        mine = np.isin(keys, own_entries.row.astype(np.int64) * width + own_entries.col).astype(np.float64)
        others = self.counts[likes.indices] - mine
        enough = others >= max(self.params.colike_min_likers, 1)
        values = np.where(enough, likes.data / np.sqrt(np.maximum(others + self.params.colike_shrink, 1e-12)), 0.0)
        return BlockColikes(self, keys, sp.csr_matrix((values, likes.indices, likes.indptr), shape=likes.shape),
                            sp.csr_matrix((values * mine, likes.indices, likes.indptr), shape=likes.shape),
                            (own @ self.neighbours).toarray())


@dataclass
class BlockColikes:
    """A block's own parts of the co-like sums: b(u, i) = a(u, i) / sqrt(m_u(i) + shrink) for every
    like, its part on the subscriber's own 👍, and how far their own 👍 reach each candidate."""

    colikes: Colikes
    keys: np.ndarray  # subscriber * known + paper of every like, ascending: the entries of b and b_mine
    b: sp.csr_matrix  # block x known
    b_mine: sp.csr_matrix  # b on their own 👍, else 0
    own_reach: np.ndarray  # block x candidates: sum_k s(c, k) over their own 👍

    def scores(self) -> np.ndarray:
        """weight x community(u, c) for every subscriber of the block and every candidate."""
        colikes, own_reach = self.colikes, self.own_reach
        held = self.b[:, : colikes.shared.n_rows]
        everyone = colikes.shared.product(held)  # the table's float32: half the bytes to read
        out = everyone.astype(np.float64)
        out -= np.asarray(self.b_mine.sum(axis=1)) * own_reach
        out += (self.b_mine @ colikes.neighbours).toarray()
        # Every term of the float32 sum is >= 0, so its error is at most (terms + 2) x EPS32 x the sum:
        # what is left of the subscriber's own part taken out is not a community. (A worst case: with
        # thousands of 👍 it also zeroes real parts under about 1e-5, far below any content score.)
        rounding = (np.diff(held.indptr) + 2)[:, None] * EPS32 * everyone
        out[out < np.maximum(rounding, NOISE)] = 0
        out /= np.sqrt(np.maximum(colikes.mass[None, :] - own_reach + colikes.params.colike_shrink, 1e-12))
        return (out * colikes.params.colike_weight).astype(np.float32)

    def contributions(self, pair_sub: np.ndarray, pair_known: np.ndarray, pair_col: np.ndarray) -> np.ndarray:
        """For (subscriber in the block, liked known paper, candidate) triples: that like's part of
        community(u, c), the same sum as `scores` term by term."""
        colikes = self.colikes
        query = pair_sub.astype(np.int64) * self.b.shape[1] + pair_known
        b_at, mine_at = np.zeros(len(query)), np.zeros(len(query))
        if len(self.keys):
            at = np.minimum(np.searchsorted(self.keys, query), len(self.keys) - 1)
            found = self.keys[at] == query
            b_at[found], mine_at[found] = self.b.data[at[found]], self.b_mine.data[at[found]]
        own_reach = self.own_reach[pair_sub, pair_col]
        near = np.asarray(colikes.neighbours[pair_known, pair_col]).ravel()
        held = pair_known < colikes.shared.n_rows
        shared = np.where(held, colikes.shared.take(np.where(held, pair_known, 0), pair_col), 0.0)
        part = b_at * shared - mine_at * own_reach + mine_at * near
        mass = colikes.mass[pair_col] - own_reach + colikes.params.colike_shrink
        noise = np.maximum(2 * EPS32 * b_at * shared, NOISE)  # the float32 table's rounding, as in `scores`
        return np.where(part < noise, 0.0, part) / np.sqrt(np.maximum(mass, 1e-12))


def colike_table(likers: sp.csr_matrix, table: Columns, params: Params,
                 folded: np.ndarray | None = None) -> Colikes | None:
    """The shared co-like counts behind every candidate (None when nobody liked anything). Rows
    standing for a folded library (`folded`) are no candidate's neighbours: no one else liked them."""
    n_known, n_cand = table.n_rows, table.n_columns
    likers = likers.tocsr().astype(np.float64)
    likers.data[:] = 1
    counts = np.asarray(likers.sum(axis=0)).ravel()
    k = min(params.colike_neighbours, n_known)
    if likers.nnz == 0 or k == 0 or n_cand == 0:
        return None
    held = int(np.flatnonzero(counts)[-1]) + 1
    likers_t = likers.T.tocsr()[:held]
    shared = Columns(np.zeros((table.blocks.shape[0], held, table.width), np.float32), held, n_cand)

    def block(j: int) -> sp.csr_matrix:
        sims = table.block_columns(j).T.copy()  # candidates x known: each row contiguous
        sims[sims > 0.999] = 0  # the paper itself, when it is known: its own votes are no neighbours' votes
        sims[sims < params.colike_min_similarity] = 0
        if folded is not None:
            sims[:, folded] = 0
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        values = np.take_along_axis(sims, top, axis=1).astype(np.float64)
        columns = np.repeat(np.arange(sims.shape[0]), k)
        picked = sp.csr_matrix((values.ravel(), (top.ravel(), columns)), shape=sims.shape[::-1])
        picked.eliminate_zeros()
        part = (likers_t @ (likers @ picked)).toarray()
        own = picked.tocoo()  # minus diag(n) N, only where N is not 0 (no dense copy of it)
        mine = own.row < held
        part[own.row[mine], own.col[mine]] -= own.data[mine] * counts[own.row[mine]]
        shared.block_columns(j)[:] = part  # made in float64, held in float32
        return picked

    parts = parallel_map(block, list(range(table.blocks.shape[0])))
    neighbours = sp.hstack(parts, format="csr")
    return Colikes(shared, neighbours, np.asarray(neighbours.T @ counts).ravel(), likers, counts, params)
