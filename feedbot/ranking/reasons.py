"""Why each pick was picked: the profile row that won it, the liked paper (or the typed interest)
closest to it or, when the community outweighs the content, the liked paper whose co-likers lead
to it; and the words the pick shares with that paper or interest."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from feedbot.ranking.colikes import Colikes
from feedbot.ranking.inputs import (
    KIND_COLIKE,
    KIND_INTEREST,
    KIND_PROFILE,
    KIND_TOPIC,
    Corpus,
    Reason,
    Taste,
)
from feedbot.ranking.profiles import ROW_CENTROID, ROW_INTEREST, Profiles, slots
from feedbot.ranking.tables import Shared


def explain(tastes: list[Taste], profiles: Profiles, pick_sub: np.ndarray, pick_col: np.ndarray,
            community_score: np.ndarray, pick_score: np.ndarray, corpus: Corpus, shared: Shared,
            colikes: Colikes | None) -> list[Reason]:
    """The reason of each pick (subscriber in the block, candidate column, the community's part of
    its score, its whole score)."""
    win_row = winning_rows(profiles, pick_sub, pick_col, len(tastes))
    closest, by_colike = closest_liked(tastes, profiles.likes, pick_sub, pick_col, pick_score - community_score,
                                       community_score, shared, colikes)
    by_interest = (profiles.kind[win_row] == ROW_INTEREST) & ~by_colike
    parts = [corpus.known[closest[~by_interest]]]
    if by_interest.any():
        parts.append(profiles.interest_rows[win_row[by_interest] - profiles.n_vote])
    order_back = np.argsort(np.concatenate([np.flatnonzero(~by_interest), np.flatnonzero(by_interest)]))
    explainers = sp.vstack(parts, format="csr")[order_back]
    terms = top_terms(explainers, pick_col, shared, corpus.terms)
    reasons = []
    for n, w in enumerate(win_row.tolist()):
        if by_colike[n]:
            reasons.append(Reason(KIND_COLIKE, liked_row=int(closest[n])))
        elif by_interest[n]:
            reasons.append(Reason(KIND_INTEREST, interest=int(profiles.interest_of[w]), terms=terms[n]))
        else:
            kind = KIND_PROFILE if profiles.kind[w] == ROW_CENTROID else KIND_TOPIC
            reasons.append(Reason(kind, liked_row=int(closest[n]), terms=terms[n]))
    return reasons


def winning_rows(profiles: Profiles, pick_sub: np.ndarray, pick_col: np.ndarray, n_subs: int) -> np.ndarray:
    """The row that won each pick: the first of its subscriber's rows, in order, to reach the best score."""
    _, order, starts = slots(profiles.owner, n_subs)
    rows_per_sub = np.diff(starts)
    pair_pick, pair_slot = segments(rows_per_sub[pick_sub])
    pair_row = order[starts[pick_sub[pair_pick]] + pair_slot]
    win_row = np.full(len(pick_col), -1, np.int64)
    if len(pair_row):
        row_score = profiles.scores_at(pair_row, pick_col[pair_pick])
        with_rows = np.flatnonzero(rows_per_sub[pick_sub] > 0)
        pick_start = np.cumsum(rows_per_sub[pick_sub]) - rows_per_sub[pick_sub]
        win_row[with_rows] = pair_row[first_max(row_score, pick_start[with_rows])]
    return win_row


def closest_liked(tastes: list[Taste], likes: sp.csr_matrix, pick_sub: np.ndarray, pick_col: np.ndarray,
                  content_score: np.ndarray, community_score: np.ndarray, shared: Shared,
                  colikes: Colikes | None) -> tuple[np.ndarray, np.ndarray]:
    """For each pick, the liked paper to name (known row, -1 when none), and whether the community
    is the reason: other people's co-likes outweigh the content score. The paper named is then the
    like whose other likers lead to the pick, else the like closest to it by content (a paper
    linked to the pick only through co-likes shares no word with it)."""
    n_picks = len(pick_col)
    liked_counts = np.array([len(t.liked) for t in tastes])
    liked_start = np.cumsum(liked_counts) - liked_counts
    all_liked = np.concatenate([t.liked for t in tastes]).astype(np.int64) if liked_counts.sum() else \
        np.empty(0, np.int64)
    per_pick = liked_counts[pick_sub]
    pair_pick, pair_place = segments(per_pick)
    pair_known = all_liked[liked_start[pick_sub[pair_pick]] + pair_place]
    pair_col = pick_col[pair_pick]
    closeness = shared.table.take(pair_known, pair_col)
    with_liked = np.flatnonzero(per_pick > 0)
    pick_start = np.cumsum(per_pick) - per_pick
    by_colike = (community_score > np.maximum(content_score, 1e-4)) & (per_pick > 0)
    if colikes is not None and by_colike.any():
        part = colikes.contributions(tastes, likes, pick_sub[pair_pick], pair_known, pair_col)
        closeness = np.where(by_colike[pair_pick], part, closeness)
    closest = np.full(n_picks, -1, np.int64)
    if len(with_liked):
        closest[with_liked] = pair_known[first_max(closeness, pick_start[with_liked])]
    return closest, by_colike


def top_terms(explainers: sp.csr_matrix, pick_col: np.ndarray, shared: Shared, terms: np.ndarray | None,
              n: int = 6) -> list[tuple[str, ...]]:
    """For each explainer row and the candidate it explains, up to n terms with the largest product,
    best first (ties by term index). The candidate's weights are looked up, not copied per pick."""
    if terms is None or explainers.shape[0] == 0:
        return [()] * explainers.shape[0]
    if not explainers.has_canonical_format:
        explainers = explainers.copy()
        explainers.sum_duplicates()
    row = np.repeat(np.arange(explainers.shape[0]), np.diff(explainers.indptr))
    query = pick_col[row].astype(np.int64) * shared.vocabulary + explainers.indices
    at = np.minimum(np.searchsorted(shared.term_keys, query), max(len(shared.term_keys) - 1, 0))
    hit = shared.term_keys[at] == query if len(shared.term_keys) else np.zeros(len(query), bool)
    value = explainers.data[hit].astype(np.float32) * shared.term_values[at[hit]]
    row, col = row[hit], explainers.indices[hit]
    positive = value > 0
    row, col, value = row[positive], col[positive], value[positive]
    # One stable sort on (row, -value): positive float32 bits order like the values.
    key = (row.astype(np.uint64) << np.uint64(32)) | (~value.view(np.uint32)).astype(np.uint64)
    order = np.argsort(key, kind="stable")
    row, col = row[order], col[order]
    rank_in_row = np.arange(len(row)) - np.searchsorted(row, row)
    keep = rank_in_row < n
    table = np.full((explainers.shape[0], n), -1, dtype=np.int64)
    table[row[keep], rank_in_row[keep]] = col[keep]
    return [tuple(terms[r[r >= 0]].tolist()) for r in table]


def distinct_terms(terms: tuple[str, ...], n: int = 3) -> list[str]:
    """The first n terms that do not repeat one another ("graph" vs "graph neural")."""
    out: list[str] = []
    for term in terms:
        if len(out) < n and not any(term in t or t in term for t in out):
            out.append(term)
    return out


def segments(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For runs of the given lengths laid end to end: each element's run, and its place in the run."""
    run = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return run, np.arange(len(run)) - starts[run]


def first_max(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of the first largest value of each run (runs start at `starts`, non-empty, laid end to end)."""
    run_max = np.maximum.reduceat(values, starts)
    lengths = np.diff(np.append(starts, len(values)))
    at_max = values >= np.repeat(run_max, lengths)
    position = np.where(at_max, np.arange(len(values)), len(values))
    return np.minimum.reduceat(position, starts)
