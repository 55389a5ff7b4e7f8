"""Rank candidate papers for many subscribers at once. Pure: arrays in, picks out.

Each subscriber's taste becomes a few profile rows (`profiles`): the Rocchio centroid of what
they liked minus the corpus background, a centroid per topic holding a good share of their likes,
one row per typed interest. A paper scores by its best-matching row (arxiv-sanity-lite's per-tag
max-merge), minus a penalty for resembling what they disliked, plus other people's co-likes
borrowed from the paper's nearest known papers (`colikes`; never the subscriber's own 👍). The
tables every subscriber is ranked against are built once (`prepare`); then all subscribers are
ranked in blocks against them, cut to top-k with `argpartition` and explained (`reasons`).
Newcomers with nothing to rank by get starter picks (`starters`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from feedbot.ranking import profiles, reasons
from feedbot.ranking.colikes import Colikes, colike_table
from feedbot.ranking.inputs import (
    DEFAULT_PARAMS,
    KIND_AVOID,
    KIND_COLIKE,
    KIND_INTEREST,
    KIND_PROFILE,
    KIND_STARTER,
    KIND_TOPIC,
    Corpus,
    Params,
    Reason,
    Scored,
    Taste,
)
from feedbot.ranking.starters import interest_starters, starter_order, starter_picks
from feedbot.ranking.tables import Columns, Shared, expand

__all__ = ["DEFAULT_PARAMS", "KIND_AVOID", "KIND_COLIKE", "KIND_INTEREST", "KIND_PROFILE", "KIND_STARTER",
           "KIND_TOPIC", "Corpus", "Params", "Prepared", "Reason", "Scored", "Taste", "expand", "extend",
           "interest_starters", "prepare", "rank", "rank_prepared", "starter_order"]


@dataclass
class Prepared:
    """The tables every subscriber of a pass is ranked against: built once, read by every block
    (and, cached, by every `/digest` until the corpus changes or other people's votes are
    `recommend.MAX_LAG_SECONDS` old)."""

    corpus: Corpus
    candidates: sp.csr_matrix
    params: Params
    shared: Shared | None  # None without candidates or known papers
    colikes: Colikes | None


def prepare(corpus: Corpus, candidates: sp.csr_matrix, params: Params = DEFAULT_PARAMS) -> Prepared:
    """The content similarity table, the co-like counts behind each candidate, and what the blocks
    read about them."""
    candidates = candidates.tocsr().astype(np.float32)
    if candidates.shape[0] == 0:
        return Prepared(corpus, candidates, params, None, None)
    table = Columns.build(corpus.known, candidates)
    colikes = None
    if params.colike_weight and corpus.likers is not None:
        colikes = colike_table(corpus.likers, table, params, corpus.folded)
    return Prepared(corpus, candidates, params, Shared.build(corpus, candidates, table), colikes)


def extend(prepared: Prepared, known: sp.csr_matrix, topics: np.ndarray) -> Prepared:
    """The same tables with more known papers after the others (papers voted on since they were
    built): their similarity rows added, and, as of the tables, no one's co-likes on them."""
    corpus, count = prepared.corpus, known.shape[0]
    if count == 0:
        return prepared
    known = known.tocsr().astype(np.float32)
    likers = corpus.likers
    if likers is not None:
        likers = sp.hstack([likers, sp.csr_matrix((likers.shape[0], count), dtype=likers.dtype)], format="csr")
    folded = None if corpus.folded is None else np.concatenate([corpus.folded, np.zeros(count, bool)])
    grown = Corpus(sp.vstack([corpus.known, known], format="csr"), np.concatenate([corpus.topics, topics]),
                   corpus.background, corpus.terms, likers, folded)
    shared = prepared.shared
    return Prepared(grown, prepared.candidates, prepared.params,
                    shared.with_known(known, prepared.candidates, corpus.background) if shared is not None else None,
                    prepared.colikes.with_known(count) if prepared.colikes is not None else None)


def rank(tastes: list[Taste], corpus: Corpus, candidates: sp.csr_matrix,
         params: Params = DEFAULT_PARAMS, starter: np.ndarray | None = None) -> list[list[Scored]]:
    """Top-k picks for every subscriber, best first, with reasons; excluded columns never picked."""
    return rank_prepared(prepare(corpus, candidates, params), tastes, starter)


def rank_prepared(prepared: Prepared, tastes: list[Taste], starter: np.ndarray | None = None) -> list[list[Scored]]:
    """`rank` against tables built before."""
    candidates, params = prepared.candidates, prepared.params
    results: list[list[Scored]] = [[] for _ in tastes]
    if candidates.shape[0] == 0:
        return results
    cold = [i for i, t in enumerate(tastes) if t.cold]
    if cold:
        order = starter if starter is not None else starter_order(candidates, max(t.k for t in tastes))
        for i in cold:
            results[i] = starter_picks(tastes[i], prepared.corpus, candidates, order)
    warm = [i for i, t in enumerate(tastes) if not t.cold]
    blocks = [warm[start : start + params.chunk] for start in range(0, len(warm), params.chunk)]

    def run(block: list[int]) -> list[list[Scored]]:
        return rank_block([tastes[i] for i in block], prepared)

    # Blocks are independent and the sparse kernels release the GIL: use the cores there are.
    workers = min(params.threads or os.cpu_count() or 1, len(blocks)) or 1
    with ThreadPoolExecutor(workers) as pool:
        for block, picks in zip(blocks, pool.map(run, blocks), strict=True):
            for i, p in zip(block, picks, strict=True):
                results[i] = p
    return results


def rank_block(tastes: list[Taste], prepared: Prepared) -> list[list[Scored]]:
    """One block of subscribers with something to rank by: score, cut to top-k, explain."""
    corpus, params, shared = prepared.corpus, prepared.params, prepared.shared
    rows = profiles.build(tastes, corpus, params, shared)
    best = profiles.best_scores(rows, len(tastes))
    profiles.penalise_dislikes(best, tastes, corpus, params, shared)
    community = block = None
    if prepared.colikes is not None:
        block = prepared.colikes.block(tastes, rows.likes)
        community = block.scores()
        best += community
    pick_sub, pick_col, pick_score = top_k(best, tastes)
    del best
    community_score = community[pick_sub, pick_col] if community is not None else np.zeros(len(pick_col), np.float32)
    why = reasons.explain(tastes, rows, pick_sub, pick_col, community_score, pick_score, corpus, shared, block)
    out: list[list[Scored]] = [[] for _ in tastes]
    for s, c, score, reason in zip(pick_sub.tolist(), pick_col.tolist(), pick_score.tolist(), why, strict=True):
        out[s].append(Scored(c, score, reason))
    return out


def top_k(best: np.ndarray, tastes: list[Taste]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each subscriber's top-k columns, best first, never an excluded one: one argpartition over
    the block. Returns the picks' subscriber (in the block), column and score, subscriber by subscriber."""
    n_subs, n_cand = best.shape
    excluded_rows = np.repeat(np.arange(n_subs), [len(t.excluded) for t in tastes])
    if len(excluded_rows):
        best[excluded_rows, np.concatenate([t.excluded for t in tastes])] = -np.inf
    wanted = np.minimum(np.array([t.k for t in tastes]), n_cand)
    k_max = int(wanted.max())
    top = np.argpartition(-best, k_max - 1, axis=1)[:, :k_max] if k_max < n_cand else \
        np.tile(np.arange(n_cand), (n_subs, 1))
    top_scores = np.take_along_axis(best, top, axis=1)
    ranked = np.argsort(-top_scores, axis=1, kind="stable")
    top, top_scores = np.take_along_axis(top, ranked, axis=1), np.take_along_axis(top_scores, ranked, axis=1)
    keep = (np.arange(k_max)[None, :] < wanted[:, None]) & np.isfinite(top_scores)
    pick_sub, pick_slot = np.nonzero(keep)
    return pick_sub, top[pick_sub, pick_slot], top_scores[pick_sub, pick_slot]
