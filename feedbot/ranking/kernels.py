"""Compiled loops (numba) for the pass's sums that sparse products do only by forming what is
thrown away: the squared norms of weighted sums of sparse rows, a product wanted dense, and the
largest products of two sparse rows. Each releases the GIL, so the blocks of a pass run them on
every core, and compiles once, cached on disk where numba finds a writable place (next to this
file, else the user's cache directory, or NUMBA_CACHE_DIR); with none, each process compiles them."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit


def compiled(function):
    """`function` compiled without the GIL, cached on disk when there is somewhere to cache it."""
    try:
        return njit(nogil=True, cache=True)(function)
    except RuntimeError:  # numba found no writable cache directory
        return njit(nogil=True)(function)


@compiled
def _part_squares(indptr, rows, weights, group, v_indptr, v_indices, v_data, width, n_groups):  # pragma: no cover
    whole_squares, group_squares = np.zeros(len(indptr) - 1), np.zeros(n_groups)
    part, whole = np.zeros(width), np.zeros(width)  # dense sums, cleared at the terms they touched
    in_part, in_whole = np.zeros(width, np.bool_), np.zeros(width, np.bool_)
    part_terms, whole_terms = np.empty(width, np.int64), np.empty(width, np.int64)
    for r in range(len(indptr) - 1):
        n_whole = 0
        a = indptr[r]
        while a < indptr[r + 1]:  # one part (the entries of one group) at a time
            g, n_part, weight_sum = group[a], 0, 0.0
            while a < indptr[r + 1] and group[a] == g:
                row, weight = rows[a], np.float64(weights[a])
                weight_sum += weight
                for b in range(v_indptr[row], v_indptr[row + 1]):
                    term = v_indices[b]
                    if not in_part[term]:
                        in_part[term] = True
                        part_terms[n_part] = term
                        n_part += 1
                    part[term] += weight * v_data[b]
                a += 1
            square = 0.0
            for i in range(n_part):  # the part's square, and the part added to the whole
                term = part_terms[i]
                square += part[term] * part[term]
                if not in_whole[term]:
                    in_whole[term] = True
                    whole_terms[n_whole] = term
                    n_whole += 1
                whole[term] += part[term]
                part[term] = 0.0
                in_part[term] = False
            if g >= 0 and weight_sum > 0:
                group_squares[g] = square / (weight_sum * weight_sum)
        square = 0.0
        for i in range(n_whole):
            term = whole_terms[i]
            square += whole[term] * whole[term]
            whole[term] = 0.0
            in_whole[term] = False
        whole_squares[r] = square
    return whole_squares, group_squares


def like_norms(likes: sp.csr_matrix, vectors: sp.csr_matrix, group: np.ndarray | None = None,
               n_groups: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Squared norms of each row's weighted sum of `vectors` (`likes`: its rows' weights), and of
    each group's weighted mean (`group`: each entry's, in CSR order; -1 in none). Each entry is
    summed once, in float64: a row's sum is the sum of its parts (its groups and the rest), and no
    sum is formed as a sparse row (a sparse product would hold every sum's terms, sized in a pass
    of its own)."""
    likes, vectors = likes.tocsr(), vectors.tocsr()
    group = np.full(likes.nnz, -1, np.int64) if group is None else np.asarray(group, np.int64)
    if likes.shape[1] != vectors.shape[0] or len(group) != likes.nnz or (len(group) and group.max() >= n_groups):
        raise ValueError(f"likes {likes.shape} of vectors {vectors.shape}, {len(group)} groups of {n_groups}")
    row = np.repeat(np.arange(likes.shape[0]), np.diff(likes.indptr))
    order = np.lexsort((group, row))
    return _part_squares(likes.indptr, likes.indices[order], likes.data[order], group[order],
                         vectors.indptr, vectors.indices, vectors.data, vectors.shape[1], n_groups)


@compiled
def _top_terms(e_indptr, e_indices, e_data, columns, c_indptr, c_indices, c_data, n):  # pragma: no cover - compiled
    out = np.full((len(e_indptr) - 1, n), -1, np.int64)
    values = np.empty(n, np.float32)
    for r in range(len(e_indptr) - 1):
        lo, hi = c_indptr[columns[r]], c_indptr[columns[r] + 1]
        found = 0
        for a in range(e_indptr[r], e_indptr[r + 1]):
            term = e_indices[a]
            lo += np.searchsorted(c_indices[lo:hi], term)  # the row's terms ascend: search on from the last
            if lo == hi:
                break
            if c_indices[lo] != term:
                continue
            value = e_data[a] * c_data[lo]
            if not value > 0 or (found == n and not value > values[n - 1]):
                continue
            i = min(found, n - 1)  # the new value's place: after every value at least as large
            while i > 0 and value > values[i - 1]:
                values[i], out[r, i] = values[i - 1], out[r, i - 1]
                i -= 1
            values[i], out[r, i] = value, term
            found = min(found + 1, n)
    return out


def top_terms(rows: sp.csr_matrix, columns: np.ndarray, candidates: sp.csr_matrix, n: int) -> np.ndarray:
    """For each row and the candidate `columns[i]` it goes with: the `n` terms with the largest
    positive product (float32), best first, ties by term; -1 pads. (Rows and candidates are read
    with their terms in order, each once: copies are made so when they are not.)"""
    rows, candidates, columns = canonical(rows.tocsr()), canonical(candidates.tocsr()), np.asarray(columns, np.int64)
    if len(columns) != rows.shape[0] or n < 1 or (len(columns) and not 0 <= columns.min() <= columns.max()
                                                  < candidates.shape[0]) or rows.shape[1] != candidates.shape[1]:
        raise ValueError(f"{len(columns)} columns of {candidates.shape} for rows {rows.shape}, n={n}")
    return _top_terms(rows.indptr, rows.indices, rows.data.astype(np.float32), columns,
                      candidates.indptr, candidates.indices, candidates.data.astype(np.float32), n)


@compiled
def _dense_product(a_indptr, a_indices, a_data, b_indptr, b_indices, b_data, out):  # pragma: no cover - compiled
    for r in range(len(a_indptr) - 1):
        for i in range(a_indptr[r], a_indptr[r + 1]):
            row, weight = a_indices[i], a_data[i]
            for j in range(b_indptr[row], b_indptr[row + 1]):
                out[r, b_indices[j]] += weight * b_data[j]


@compiled
def _column_blocks(k_indptr, k_indices, k_data, t_indptr, t_indices, t_data, dense_of, dense, first, last,
                   blocks):  # pragma: no cover - compiled
    n_blocks, width = blocks.shape[0], blocks.shape[2]
    row = np.zeros(n_blocks * width, np.float32)  # one row summed whole, then laid out in the blocks
    for r in range(first, last):
        for a in range(k_indptr[r], k_indptr[r + 1]):
            term, value = k_indices[a], k_data[a]
            if dense_of[term] >= 0:  # a term most columns hold: added whole (a 0 adds nothing)
                terms_row = dense[dense_of[term]]
                for c in range(len(terms_row)):
                    row[c] += value * terms_row[c]
            else:
                for b in range(t_indptr[term], t_indptr[term + 1]):
                    row[t_indices[b]] += value * t_data[b]
        for j in range(n_blocks):
            for c in range(width):
                blocks[j, r, c] += row[j * width + c]
                row[j * width + c] = 0


def common_terms(by_term: sp.csr_matrix, n_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """The terms held by an eighth of the `n_columns` (the blocks' columns, padding included) or
    more (the common words: most of a table's work) as dense rows `n_columns` wide, and each
    term's row among them (-1: none)."""
    common = np.flatnonzero(np.diff(by_term.indptr) * 8 >= n_columns)
    dense_of = np.full(by_term.shape[0], -1, np.int64)
    dense_of[common] = np.arange(len(common))
    dense = np.zeros((len(common), n_columns), np.float32)
    dense[:, : by_term.shape[1]] = by_term[common].toarray()
    return dense_of, dense


def add_column_blocks(known: sp.csr_matrix, by_term: sp.csr_matrix, common: tuple[np.ndarray, np.ndarray],
                      blocks: np.ndarray, first: int, last: int) -> None:
    """Add known[first:last] @ by_term (terms x columns) into `blocks` (column blocks x known x
    width, float32), summed in each row's term order as a sparse product sums: the same bits, with
    no sparse result formed and made dense block by block. The `common_terms` are added whole."""
    known, by_term = known.tocsr(), by_term.tocsr()
    dense_of, dense = common
    width = blocks.shape[0] * blocks.shape[2]
    if (known.shape[1] != by_term.shape[0] or not 0 <= first <= last <= min(blocks.shape[1], known.shape[0])
            or by_term.shape[1] > width or len(dense_of) != by_term.shape[0] or dense.shape[1] > width
            or (len(dense_of) and dense_of.max() >= len(dense))):
        raise ValueError(f"rows {first}:{last} of {known.shape} x {by_term.shape} into {blocks.shape}")
    _column_blocks(known.indptr, known.indices, known.data.astype(np.float32, copy=False), by_term.indptr,
                   by_term.indices, by_term.data.astype(np.float32, copy=False), dense_of, dense, first, last, blocks)


@compiled
def _blocks_product(indptr, rows, data, blocks, n_columns, out):  # pragma: no cover - compiled
    n_blocks, width = blocks.shape[0], blocks.shape[2]
    sums = np.zeros((out.shape[0], width), np.float32)
    for j in range(n_blocks):
        block = blocks[j]
        for k in range(len(indptr) - 1):  # each row of the block read once, in order
            known_row = block[k]
            for a in range(indptr[k], indptr[k + 1]):
                weight, into = data[a], sums[rows[a]]
                for c in range(width):
                    into[c] += weight * known_row[c]
        for r in range(out.shape[0]):
            for c in range(min(width, n_columns - j * width)):
                out[r, j * width + c] = sums[r, c]
                sums[r, c] = 0


def blocks_product(coefficients: sp.csr_matrix, blocks: np.ndarray, n_columns: int) -> np.ndarray:
    """coefficients @ the table held in column `blocks` (blocks x rows x width, float32), float32.
    Each block is read once, row after row, its products summed into each coefficient row's
    columns (a product row by row reads a table row per coefficient, from memory rather than
    cache); a row's terms are added in the order of their index, as a sparse product adds a
    canonical row's: the same bits."""
    if coefficients.shape[1] != blocks.shape[1] or n_columns > blocks.shape[0] * blocks.shape[2]:
        raise ValueError(f"{coefficients.shape[1]} coefficients a row, {n_columns} columns, for blocks {blocks.shape}")
    by_row = coefficients.tocsc()
    out = np.empty((coefficients.shape[0], n_columns), np.float32)
    _blocks_product(by_row.indptr, by_row.indices, by_row.data.astype(np.float32, copy=False), blocks, n_columns,
                    out)
    return out


def canonical(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Each row's terms in order, each once (a copy when they were not)."""
    if not matrix.has_canonical_format:
        matrix = matrix.copy()
        matrix.sum_duplicates()
    return matrix


def dense_product(a: sp.csr_matrix, b: sp.csr_matrix) -> np.ndarray:
    """a @ b as a dense float32 array, summed straight into it in the order a sparse product sums
    (no sparse result is formed only to be made dense)."""
    a, b = a.tocsr(), b.tocsr()
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"a product of {a.shape} and {b.shape}")
    out = np.zeros((a.shape[0], b.shape[1]), np.float32)
    _dense_product(a.indptr, a.indices, a.data.astype(np.float32), b.indptr, b.indices, b.data.astype(np.float32),
                   out)
    return out
