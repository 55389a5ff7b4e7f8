"""The tables every subscriber is ranked against, built once per pass: candidates lengthened with
their nearest known papers, the known x candidates similarity table, and what the blocks read."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from feedbot.ranking.inputs import Corpus
from feedbot.ranking.kernels import add_column_blocks, blocks_product, canonical, common_terms


def parallel_map(function, items: list) -> list:
    """`function` over `items` on a thread per core (the sparse kernels and numpy release the GIL)."""
    workers = min(os.cpu_count() or 1, len(items)) or 1
    if workers == 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, items))


def expand(candidates: sp.csr_matrix, known: sp.csr_matrix, neighbours: int = 10,
           weight: float = 1.0) -> sp.csr_matrix:
    """Lengthen short documents with their nearest known papers (document expansion): each candidate
    becomes itself plus `weight` x the similarity-weighted mean of its `neighbours` closest papers.
    Near-duplicates (the paper itself, when it is in `known`) are not counted as neighbours."""
    if neighbours <= 0 or known.shape[0] == 0 or candidates.shape[0] == 0:
        return candidates
    k = min(neighbours, known.shape[0])
    per_block = int(np.clip(2**24 // known.shape[0], 1, 256))  # bounded memory: 16 M similarities a block
    known_t = known.T.tocsr()  # once: a product with the transpose as it comes converts it on every block

    def nearest(start: int) -> sp.csr_matrix:
        block = candidates[start : start + per_block]
        similarity = np.asarray((block @ known_t).todense(), dtype=np.float32)
        similarity[similarity > 0.999] = 0
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.take_along_axis(similarity, top, axis=1)
        rows = np.repeat(np.arange(block.shape[0]), k)
        return sp.csr_matrix((weights.ravel(), (rows, top.ravel())), shape=similarity.shape)

    parts = parallel_map(nearest, list(range(0, candidates.shape[0], per_block)))
    mix = sp.vstack(parts, format="csr")
    return normalize(candidates + weight * normalize(mix @ known)).astype(np.float32)


def similarities(known: sp.csr_matrix, candidates: sp.csr_matrix) -> np.ndarray:
    """Dense known x candidates cosine table with one padding row, whole (the pass keeps the same
    values in column blocks, `Columns.build`, never holding it twice)."""
    table = np.empty((known.shape[0] + 1, candidates.shape[0]), dtype=np.float32)

    def fill(start: int) -> None:
        table[:-1, start : start + 128] = (known @ candidates[start : start + 128].T).toarray()

    parallel_map(fill, list(range(0, candidates.shape[0], 128)))
    table[-1] = -np.inf  # the row that index -1 (padding) reads
    return table


class Columns:
    """A known x candidates table (the cosines; the co-like counts) in float32, as contiguous
    blocks of columns. The per-block product reads the table row by row for every profile; a
    block of 64 columns (7.7 MB at 30,000 papers) stays in cache where the whole table does not."""

    width = 64

    def __init__(self, blocks: np.ndarray, n_rows: int, n_columns: int):
        self.blocks, self.n_rows, self.n_columns = blocks, n_rows, n_columns

    @classmethod
    def build(cls, known: sp.csr_matrix, candidates: sp.csr_matrix) -> Columns:
        """The table summed straight into its blocks, a slice of known rows per thread (a
        candidate's repeated terms summed first)."""
        n_blocks = -(-candidates.shape[0] // cls.width)
        out = cls(np.zeros((n_blocks, known.shape[0], cls.width), np.float32), known.shape[0], candidates.shape[0])
        if known.shape[1] != candidates.shape[1]:
            raise ValueError(f"known papers of {known.shape[1]} terms, candidates of {candidates.shape[1]}")
        known, by_term = known.tocsr().astype(np.float32, copy=False), canonical(candidates.T.tocsr())
        common, step = common_terms(by_term, n_blocks * cls.width), max(1, -(-known.shape[0] // 64))

        def fill(first: int) -> None:
            add_column_blocks(known, by_term, common, out.blocks, first, min(first + step, known.shape[0]))

        parallel_map(fill, list(range(0, known.shape[0], step)))
        return out

    def block_columns(self, j: int) -> np.ndarray:
        """Block j without its padding columns (known x up to `width` candidates), a view."""
        return self.blocks[j, :, : min(self.width, self.n_columns - j * self.width)]

    def toarray(self) -> np.ndarray:
        """The whole table, known x candidates (a copy)."""
        return np.concatenate([self.block_columns(j) for j in range(self.blocks.shape[0])], axis=1)

    def with_rows(self, rows: np.ndarray) -> Columns:
        """The table with `rows` (more known papers x candidates) appended; this one unchanged."""
        padded = np.zeros((rows.shape[0], self.blocks.shape[0] * self.width), self.blocks.dtype)
        padded[:, : self.n_columns] = rows
        extra = padded.reshape(rows.shape[0], -1, self.width).transpose(1, 0, 2)
        return Columns(np.concatenate([self.blocks, extra], axis=1), self.n_rows + rows.shape[0], self.n_columns)

    def product(self, coefficients: sp.csr_matrix) -> np.ndarray:
        """coefficients @ table, in the table's float32 (`kernels.blocks_product`)."""
        return blocks_product(coefficients, self.blocks, self.n_columns)

    def take(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """table[rows, columns], elementwise."""
        return self.blocks[columns // self.width, rows, columns % self.width]


@dataclass
class Shared:
    """What every block reads about the candidates and the corpus: computed once per pass."""

    table: Columns  # known x candidates: content cosine
    candidates_t: sp.csr_matrix  # terms x candidates, for the interest product
    candidates_b: np.ndarray  # each candidate's dot product with the background
    known_b: np.ndarray
    b_norm2: float
    candidates: sp.csr_matrix  # the candidates, each row's terms in order (float32): the why-line's words

    def with_known(self, known: sp.csr_matrix, candidates: sp.csr_matrix, background: np.ndarray) -> Shared:
        """The same tables with more known papers (L2-normalised rows) after the others."""
        rows = (known @ candidates.T).toarray().astype(np.float32)
        return replace(self, table=self.table.with_rows(rows),
                       known_b=np.concatenate([self.known_b, np.asarray(known @ background).ravel()]))

    @classmethod
    def build(cls, corpus: Corpus, candidates: sp.csr_matrix, table: Columns) -> Shared:
        ordered = candidates.astype(np.float32)  # a copy, sorted in place
        ordered.sum_duplicates()
        return cls(table, candidates.T.tocsr(), np.asarray(candidates @ corpus.background).ravel(),
                   np.asarray(corpus.known @ corpus.background).ravel(), float(corpus.background @ corpus.background),
                   ordered)
