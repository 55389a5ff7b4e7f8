"""The compiled loops give what the sparse products they replace give."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from feedbot.ranking.kernels import dense_product, like_norms, top_terms
from feedbot.ranking.reasons import first_max
from feedbot.ranking.tables import Columns


def dense_squares(weights: sp.spmatrix, vectors: sp.spmatrix) -> np.ndarray:
    product = weights.toarray().astype(np.float64) @ vectors.toarray().astype(np.float64)
    return (product * product).sum(axis=1)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 12), known=st.integers(1, 30),
       width=st.integers(1, 40), density=st.floats(0.0, 1.0), index=st.sampled_from([np.int32, np.int64]))
def test_like_norms_are_those_of_the_formed_product(seed, rows, known, width, density, index):
    rng = np.random.default_rng(seed)
    weights = sp.random(rows, known, density=density, format="csr", random_state=rng, dtype=np.float32)
    vectors = sp.random(known, width, density=density, format="csr", random_state=rng, dtype=np.float32)
    vectors.data -= 0.5  # of either sign: sums may cancel
    for matrix in (weights, vectors):
        matrix.indices, matrix.indptr = matrix.indices.astype(index), matrix.indptr.astype(index)
    got, none = like_norms(weights, vectors)
    assert got.dtype == np.float64 and got.shape == (rows,) and none.shape == (0,)
    np.testing.assert_allclose(got, dense_squares(weights, vectors), rtol=1e-12, atol=1e-15)


def test_like_norms_count_repeated_entries_as_the_product_does_and_clear_between_rows():
    # Row 0 names paper 1 twice (2 + 1 = 3 of it); row 1 shares no term with row 0; row 2 is empty;
    # row 3 repeats row 0's terms, which must start from zero again.
    weights = sp.csr_matrix((np.array([2, 1, 1, 1], np.float32), np.array([1, 1, 0, 1]), np.array([0, 2, 3, 3, 4])),
                            shape=(4, 2))
    vectors = sp.csr_matrix(np.array([[0, 0, 3], [1, 2, 0]], np.float32))
    assert like_norms(weights, vectors)[0].tolist() == [9 * (1 + 4), 9, 0, 1 + 4]
    assert like_norms(sp.csr_matrix((0, 2), dtype=np.float32), vectors)[0].shape == (0,)


def plain_top_terms(rows: sp.csr_matrix, columns: np.ndarray, candidates: sp.csr_matrix, n: int) -> list[list[int]]:
    out = []
    for r, c in enumerate(columns):
        products = rows[r].toarray().ravel().astype(np.float32) * candidates[c].toarray().ravel().astype(np.float32)
        positive = np.flatnonzero(products > 0)
        out.append(sorted(positive.tolist(), key=lambda t: (-products[t], t))[:n])
    return out


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 10), n_candidates=st.integers(1, 5),
       width=st.integers(1, 30), density=st.floats(0.0, 1.0), levels=st.integers(1, 4), n=st.integers(1, 7))
def test_top_terms_are_the_largest_positive_products_ties_by_term(seed, rows, n_candidates, width, density,
                                                                   levels, n):
    rng = np.random.default_rng(seed)
    def matrix(count: int) -> sp.csr_matrix:  # few distinct values, some <= 0: ties and skipped terms
        m = sp.random(count, width, density=density, format="csr", random_state=rng, dtype=np.float32)
        m.data = (np.floor(m.data * levels) / levels - 0.2).astype(np.float32)
        return m
    explainers, candidates = matrix(rows), matrix(n_candidates)
    columns = rng.integers(0, n_candidates, rows)
    got = top_terms(explainers, columns, candidates, n)
    assert got.shape == (rows, n)
    assert [[t for t in row if t >= 0] for row in got.tolist()] == plain_top_terms(explainers, columns, candidates, n)
    assert all((row[row >= 0] == row[: (row >= 0).sum()]).all() for row in got)  # the terms first, then -1
    def reversed_(m: sp.csr_matrix, split: int = 1) -> sp.csr_matrix:  # rows and terms back to front
        return sp.csr_matrix((np.repeat(m.data[::-1] / split, split), np.repeat(m.indices[::-1], split),
                              (m.indptr[-1] - m.indptr[::-1]) * split), shape=m.shape)
    flipped = (n_candidates - 1 - columns)[::-1].copy()
    # The same words from terms out of order, each split in two.
    assert np.array_equal(top_terms(reversed_(explainers, 2), flipped, reversed_(candidates), n)[::-1], got)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 12), inner=st.integers(1, 30),
       width=st.integers(1, 40), density=st.floats(0.0, 1.0))
def test_dense_product_is_the_sparse_product_to_the_bit(seed, rows, inner, width, density):
    rng = np.random.default_rng(seed)
    a = sp.random(rows, inner, density=density, format="csr", random_state=rng, dtype=np.float32)
    b = sp.random(inner, width, density=density, format="csr", random_state=rng, dtype=np.float32)
    b.data -= 0.5
    got = dense_product(a, b)
    assert got.dtype == np.float32 and np.array_equal(got, (a @ b).toarray())


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 10), known=st.integers(1, 25),
       width=st.integers(1, 40), density=st.floats(0.0, 1.0), topics=st.integers(0, 3))
def test_like_norms_are_those_of_each_row_and_each_groups_mean(seed, rows, known, width, density, topics):
    rng = np.random.default_rng(seed)
    likes = sp.random(rows, known, density=density, format="csr", random_state=rng, dtype=np.float32)
    likes.data[rng.random(likes.nnz) < 0.1] = 0  # a vote decayed to nothing
    vectors = sp.random(known, width, density=density, format="csr", random_state=rng, dtype=np.float32)
    vectors.data -= 0.5
    row = np.repeat(np.arange(rows), np.diff(likes.indptr))
    topic = rng.integers(-1, topics, likes.nnz)  # a row's groups are its own (a subscriber's topics); -1: none
    group = np.where(topic >= 0, row * topics + topic, -1)
    whole, groups = like_norms(likes, vectors, group, rows * topics)
    np.testing.assert_allclose(whole, dense_squares(likes, vectors), rtol=1e-10, atol=1e-13)
    for g in range(rows * topics):
        mine = group == g
        members = sp.csr_matrix((likes.data[mine], (np.zeros(mine.sum(), int), likes.indices[mine])), shape=(1, known))
        weight = float(likes.data[mine].astype(np.float64).sum())
        expected = dense_squares(members, vectors)[0] / weight**2 if weight > 0 else 0.0
        assert groups[g] == pytest.approx(expected, rel=1e-10, abs=1e-13)


def test_first_max_names_the_first_of_values_tied_within_the_share_given():
    # Runs [0.5, 0.5000000001, 0.2] and [0.3, 0.9]: exactly, the second of the first run wins;
    # within 1e-6 of the largest, the first does. A run's share applies to its own values only.
    values = np.array([0.5, 0.5000000001, 0.2, 0.3, 0.9])
    starts = np.array([0, 3])
    assert first_max(values, starts).tolist() == [1, 4]
    assert first_max(values, starts, 1e-6).tolist() == [0, 4]
    assert first_max(values, starts, np.array([0, 0, 0, 1.0, 1.0])).tolist() == [1, 3]
    assert first_max(-values, starts, 1e-6).tolist() == [2, 3]  # negative largest values too


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 12), known=st.integers(0, 40),
       n_candidates=st.integers(1, 150), density=st.floats(0.0, 1.0),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_the_table_product_gives_the_sparse_products_bits_block_by_block(seed, rows, known, n_candidates, density,
                                                                          dtype):
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((known, n_candidates)).astype(np.float32)
    n_blocks = -(-n_candidates // Columns.width)
    padded = np.zeros((known, n_blocks * Columns.width), np.float32)
    padded[:, :n_candidates] = table
    columns = Columns(np.ascontiguousarray(padded.reshape(known, n_blocks, Columns.width).transpose(1, 0, 2)),
                      known, n_candidates)
    coefficients = sp.random(rows, known, density=density, format="csr", random_state=rng, dtype=dtype)
    coefficients.data -= 0.3  # of either sign
    got = columns.product(coefficients)
    assert got.dtype == np.float32 and got.shape == (rows, n_candidates)
    assert np.array_equal(got, coefficients.astype(np.float32) @ table)  # the same sums, in the same order
    with pytest.raises(ValueError):
        columns.product(sp.csr_matrix((rows, known + 1), dtype=np.float32))
