"""The community signal: two known papers are co-liked when the same people liked both (cosine
between their columns of the subscribers x papers matrix); a new paper, which has no votes yet,
borrows the co-likes of its nearest known papers. Folded into the shared similarity table, so it
costs no extra product per subscriber."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from feedbot.ranking.tables import parallel_map


@dataclass
class Colikes:
    """The borrowed co-likes, and what it takes to tell each subscriber's own 👍 from other people's."""

    table: np.ndarray  # (known + 1) x candidates, weighted, last row zeros
    neighbours: sp.csr_matrix  # known x candidates: each candidate's neighbours, weights summing to 1
    inv_sqrt: np.ndarray  # 1 / sqrt(likers) of each known paper (0 when none)
    likers: sp.csr_matrix
    weight: float

    def reach(self, liker_rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """For (subscriber row in `likers`, candidate) pairs: the co-likes of the subscriber's own 👍
        with the candidate's neighbours, sum_k x(k) / sqrt(likers of k) s(k, c); 0 without a row."""
        out = np.zeros(len(liker_rows), np.float32)
        member = np.flatnonzero(liker_rows >= 0)
        if len(member):
            unique, which = np.unique(liker_rows[member], return_inverse=True)
            product = (self.likers[unique] @ sp.diags(self.inv_sqrt) @ self.neighbours).tocsr()
            out[member] = np.asarray(product[which, columns[member]]).ravel()
        return out


def colike_table(likers: sp.csr_matrix, table: np.ndarray, neighbours: int, weight: float) -> Colikes | None:
    """`weight` x how much each known paper is co-liked with each candidate's nearest known papers.

    co(i, c) = sum_k s(c, k) C(i, k) over the candidate's `neighbours` most similar known papers
    that someone liked (s: their similarities scaled to sum 1; C: cosine between the papers'
    columns of the subscribers x papers matrix). Computed as Xn' (Xn S) in blocks of candidates,
    so the known x known co-like matrix is never formed. One padding row of zeros at the end.
    """
    n_known, n_cand = table.shape[0] - 1, table.shape[1]
    likers = likers.tocsr().astype(np.float32)
    counts = np.asarray(likers.sum(axis=0)).ravel()
    liked = counts > 0
    k = min(neighbours, int(liked.sum()))
    if k == 0 or n_cand == 0:
        return None
    scaled = (likers @ sp.diags(np.where(liked, 1 / np.sqrt(np.maximum(counts, 1)), 0).astype(np.float32))).tocsr()
    scaled_t = scaled.T.tocsr()
    out = np.zeros((n_known + 1, n_cand), np.float32)
    inv_sqrt = np.where(liked, 1 / np.sqrt(np.maximum(counts, 1)), 0).astype(np.float32)

    def block(start: int) -> sp.csr_matrix:
        sims = table[:-1, start : start + 128].T.copy()  # candidates x known: each row contiguous
        sims[:, ~liked] = -1
        sims[sims > 0.999] = -1  # the paper itself, when it is known: its own votes are no neighbours' votes
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        values = np.maximum(np.take_along_axis(sims, top, axis=1), 0)
        columns = np.repeat(np.arange(sims.shape[0]), k)
        picked = sp.csr_matrix((values.ravel(), (top.ravel(), columns)), shape=sims.shape[::-1])
        picked = normalize(picked, norm="l1", axis=0)
        out[:-1, start : start + 128] = (scaled_t @ (scaled @ picked)).toarray()
        return picked

    parts = parallel_map(block, list(range(0, n_cand, 128)))
    out *= np.float32(weight)
    return Colikes(out, sp.hstack(parts, format="csr"), inv_sqrt, likers, weight)
