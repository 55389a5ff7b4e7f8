"""The similarity table kept in column blocks and the co-like table read from them hold exactly
the values of the whole table and of the co-like table made from it (the definitions)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from feedbot.ranking import kernels, profiles, rank
from feedbot.ranking.colikes import colike_table
from feedbot.ranking.tables import Columns, similarities


def whole_colikes(likers: sp.csr_matrix, table: np.ndarray, params: rank.Params):
    """The co-like counts from the whole table (padding row last), one candidate at a time."""
    n_known = table.shape[0] - 1
    likers = likers.tocsr().astype(np.float64)
    likers.data[:] = 1
    counts = np.asarray(likers.sum(axis=0)).ravel()
    k = min(params.colike_neighbours, n_known)
    sims = table[:-1].T.copy()
    sims[sims > 0.999] = 0
    sims[sims < params.colike_min_similarity] = 0
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(sims, top, axis=1).astype(np.float64)
    picked = sp.csr_matrix((values.ravel(), (top.ravel(), np.repeat(np.arange(sims.shape[0]), k))),
                           shape=sims.shape[::-1])
    picked.eliminate_zeros()
    shared = (likers.T.tocsr() @ (likers @ picked)).toarray() - picked.multiply(counts[:, None]).toarray()
    return shared, picked, np.asarray(picked.T @ counts).ravel()


@pytest.mark.parametrize(("seed", "n_candidates", "common"),
                         [(0, 1, 0), (1, 63, 0), (2, 64, 0), (3, 200, 0), (4, 300, 0), (5, 200, 0.3), (6, 70, 0.9)])
def test_column_blocks_and_co_likes_hold_the_whole_tables_values(seed, n_candidates, common):
    """`common`: the share of candidates holding each of the first ten terms (added as dense rows
    past an eighth of the columns, the rest term by term)."""
    rng = np.random.default_rng(seed)
    vocabulary = 120
    known = normalize(sp.random(90, vocabulary, density=0.08, format="csr", random_state=rng, dtype=np.float32))
    frequent = sp.random(n_candidates, 10, density=common, format="csr", random_state=rng, dtype=np.float32)
    candidates = normalize(sp.hstack([frequent, sp.random(n_candidates, vocabulary - 10, density=0.08,
                                                          random_state=rng, dtype=np.float32)], format="csr"))
    candidates = sp.vstack([candidates, known[:3]], format="csr")  # known papers among the candidates
    likers = sp.random(40, 90, density=0.1, format="csr", random_state=rng, dtype=np.float32)
    likers = sp.csr_matrix(likers.multiply(np.arange(90) < 84))  # the last papers no one liked: no rows held
    likers.eliminate_zeros()
    whole = similarities(known, candidates)
    columns = Columns.build(known, candidates)
    assert (columns.n_rows, columns.n_columns) == (90, candidates.shape[0])
    assert np.array_equal(columns.toarray(), whole[:-1])
    params = rank.DEFAULT_PARAMS
    made = colike_table(likers, columns, params)
    shared, picked, mass = whole_colikes(likers, whole, params)
    assert made.shared.blocks.dtype == np.float32 and made.shared.n_rows == 84  # made in float64, held in float32
    assert np.array_equal(made.shared.toarray(), shared[:84].astype(np.float32)) and not shared[84:].any()
    assert (made.neighbours != picked).nnz == 0
    assert np.array_equal(made.mass, mass)


def test_document_expansion_over_a_large_corpus_in_smaller_blocks_gives_the_same_vectors():
    """Past 65,536 known papers expansion takes fewer than 256 candidates a block (bounded memory);
    each candidate's neighbours, and so its vector, are the same as in blocks of 256."""
    rng = np.random.default_rng(0)
    known = normalize(sp.random(140_000, 60, density=0.05, format="csr", random_state=rng, dtype=np.float32))
    candidates = normalize(sp.random(300, 60, density=0.05, format="csr", random_state=rng, dtype=np.float32))
    k = 10
    parts = []
    for start in range(0, candidates.shape[0], 256):
        block = candidates[start : start + 256]
        similarity = np.asarray((block @ known.T).todense(), dtype=np.float32)
        similarity[similarity > 0.999] = 0
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.take_along_axis(similarity, top, axis=1)
        parts.append(sp.csr_matrix((weights.ravel(), (np.repeat(np.arange(block.shape[0]), k), top.ravel())),
                                   shape=similarity.shape))
    reference = normalize(candidates + normalize(sp.vstack(parts, format="csr") @ known)).astype(np.float32)
    assert (rank.expand(candidates, known) != reference).nnz == 0


@pytest.mark.parametrize("case", ["mixed", "all in topic rows", "no topic rows", "some without likes"])
def test_a_centroids_product_from_its_topic_rows_is_the_product_of_its_likes(case):
    """A centroid's product is built from its topic rows' (each weighing as its likes together) and
    its likes in none: the product of all its likes, up to float32 rounding."""
    rng = np.random.default_rng(len(case))
    n_known, vocabulary = 60, 80
    known = normalize(sp.random(n_known, vocabulary, density=0.1, format="csr", random_state=rng, dtype=np.float32))
    candidates = normalize(sp.random(70, vocabulary, density=0.1, format="csr", random_state=rng, dtype=np.float32))
    table = Columns.build(known, candidates)
    likes = sp.random(9, n_known, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    if case == "some without likes":
        likes = sp.csr_matrix(likes.multiply(np.array([0, 1, 1, 0, 1, 1, 1, 0, 1], np.float32)[:, None]))
        likes.eliminate_zeros()
    likes = normalize(likes, norm="l1")
    has_likes = np.flatnonzero(likes.getnnz(axis=1) > 0)
    entries = likes.tocoo()  # CSR order
    topic = rng.integers(0 if case == "all in topic rows" else -1, 2, likes.nnz)  # -1: in no topic row
    in_topic = topic >= 0
    pairs, group = np.unique(entries.row[in_topic] * 2 + topic[in_topic], return_inverse=True)
    topic_of_like = np.full(likes.nnz, -1, np.int64)
    topic_of_like[in_topic] = group
    topic_rows = normalize(sp.csr_matrix((entries.data[in_topic], (group, entries.col[in_topic])),
                                         shape=(len(pairs), n_known)), norm="l1")
    topic_owners = pairs // 2
    whole = similarities(known, candidates)[:-1].astype(np.float64)
    direct = sp.vstack([likes[has_likes], topic_rows], format="csr").toarray().astype(np.float64) @ whole
    if case == "no topic rows":
        topic_rows, topic_owners, topic_of_like = topic_rows[:0], None, np.full(likes.nnz, -1, np.int64)
        direct = direct[: len(has_likes)]
    got = profiles._vote_products(likes, has_likes, topic_rows, topic_owners, topic_of_like, table)
    assert got.shape == direct.shape
    np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-6)
    assert np.abs(direct[: len(has_likes)]).max() > 0.01  # the centroids hold something to compare


def test_compiled_loops_refuse_inputs_that_would_read_or_write_out_of_bounds():
    """The compiled loops check no index: every shape they rely on is checked before them."""
    def matrix(rows: int, columns: int) -> sp.csr_matrix:
        return sp.random(rows, columns, density=0.5, format="csr", random_state=0, dtype=np.float32)

    known, candidates = matrix(5, 10), matrix(3, 10)
    by_term = candidates.T.tocsr()
    blocks = np.zeros((1, 5, Columns.width), np.float32)
    common = kernels.common_terms(by_term, Columns.width)
    kernels.add_column_blocks(known, by_term, common, blocks, 0, 5)  # the shapes that fit
    assert np.allclose(blocks[0, :, :3], (known @ candidates.T).toarray())
    bad_calls = [
        lambda: Columns.build(known, matrix(3, 8)),  # other terms
        lambda: kernels.add_column_blocks(known, by_term, common, blocks, 0, 6),  # past the rows
        lambda: kernels.add_column_blocks(matrix(3, 10), by_term, common, blocks, 0, 5),  # fewer known rows
        lambda: kernels.add_column_blocks(known, matrix(10, 70), kernels.common_terms(matrix(10, 70), 128), blocks,
                                          0, 5),  # more columns than the blocks hold
        lambda: kernels.add_column_blocks(known, by_term, kernels.common_terms(matrix(4, 3), 64), blocks, 0, 5),
        lambda: kernels.blocks_product(matrix(2, 5), blocks, Columns.width + 1),  # more columns than held
        lambda: Columns.build(known, candidates).product(sp.csr_matrix((2, 6), dtype=np.float32)),
        lambda: kernels.like_norms(matrix(2, 6), known),  # likes of rows known does not have
        lambda: kernels.like_norms(matrix(2, 5), known, np.full(5, 2), 2),  # a group past n_groups
        lambda: kernels.dense_product(matrix(2, 6), known),
        lambda: kernels.top_terms(matrix(2, 10), np.array([0, 3]), candidates, 3),  # no candidate 3
        lambda: kernels.top_terms(matrix(2, 10), np.array([0]), candidates, 3),  # a column short
        lambda: kernels.top_terms(matrix(2, 10), np.array([0, 1]), candidates, 0),
    ]
    for n, call in enumerate(bad_calls):
        with pytest.raises(ValueError):
            call()
            pytest.fail(f"call {n} ran")
