"""Why each pick was picked: the profile row that won it, the liked paper (or the typed interest)
closest to it or, when the community outweighs the content, the liked paper whose co-likers lead
to it; and the words the pick shares with that paper or interest."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from feedbot.ranking import kernels
from feedbot.ranking.colikes import BlockColikes
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

TIED = 1e-6  # co-like parts this close (relative) are equal but for the float32 table's rounding


def explain(tastes: list[Taste], profiles: Profiles, pick_sub: np.ndarray, pick_col: np.ndarray,
            community_score: np.ndarray, pick_score: np.ndarray, corpus: Corpus, shared: Shared,
            community: BlockColikes | None) -> list[Reason]:
    """The reason of each pick (subscriber in the block, candidate column, the community's part of
    its score, its whole score). The community is the reason where other people's co-likes
    outweigh the content score; a typed interest where its row won; else the liked papers."""
    win_row = winning_rows(profiles, pick_sub, pick_col, len(tastes))
    has_likes = np.array([len(t.liked) > 0 for t in tastes], bool)[pick_sub]
    by_colike = (community_score > np.maximum(pick_score - community_score, 1e-4)) & has_likes
    by_interest = (profiles.kind[win_row] == ROW_INTEREST) & ~by_colike
    by_content = ~by_interest & ~by_colike
    closest = closest_liked(tastes, pick_sub, pick_col, ~by_interest, by_colike, shared, community)
    parts = [corpus.known[closest[by_content]]]
    if by_interest.any():
        parts.append(profiles.interest_rows[win_row[by_interest] - profiles.n_vote])
    worded = np.concatenate([np.flatnonzero(by_content), np.flatnonzero(by_interest)])
    terms: list[tuple[str, ...]] = [()] * len(pick_col)
    for n, words in zip(worded.tolist(), top_terms(sp.vstack(parts, format="csr"), pick_col[worded], shared,
                                                     corpus.terms), strict=True):
        terms[n] = words
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


def closest_liked(tastes: list[Taste], pick_sub: np.ndarray, pick_col: np.ndarray, named: np.ndarray,
                  by_colike: np.ndarray, shared: Shared, community: BlockColikes | None) -> np.ndarray:
    """For each pick in `named`, the liked paper to name (known row; -1 for the others and when
    none): for a pick `by_colike`, the like whose other likers lead to it most, else the like
    closest to it by content (a paper linked to the pick only through co-likes shares no word with it)."""
    liked_counts = np.array([len(t.liked) for t in tastes])
    liked_start = np.cumsum(liked_counts) - liked_counts
    all_liked = np.concatenate([t.liked for t in tastes]).astype(np.int64) if liked_counts.sum() else \
        np.empty(0, np.int64)
    per_pick = np.where(named, liked_counts[pick_sub], 0)
    pair_pick, pair_place = segments(per_pick)
    pair_known = all_liked[liked_start[pick_sub[pair_pick]] + pair_place]
    pair_col = pick_col[pair_pick]
    closeness = np.empty(len(pair_pick), np.float64)
    by_others = by_colike[pair_pick] if community is not None else np.zeros(len(pair_pick), bool)
    content = np.flatnonzero(~by_others)
    closeness[content] = shared.table.take(pair_known[content], pair_col[content])
    if by_others.any():
        by = np.flatnonzero(by_others)
        closeness[by] = community.contributions(pick_sub[pair_pick[by]], pair_known[by], pair_col[by])
    closest = np.full(len(pick_col), -1, np.int64)
    with_liked = np.flatnonzero(per_pick > 0)
    if len(with_liked):
        # Likes whose co-like parts are equal but for the float32 table's rounding are tied: the first is named.
        closest[with_liked] = pair_known[first_max(closeness, (np.cumsum(per_pick) - per_pick)[with_liked],
                                                   np.where(by_others, TIED, 0.0))]
    return closest


def top_terms(explainers: sp.csr_matrix, pick_col: np.ndarray, shared: Shared, terms: np.ndarray | None,
              n: int = 6) -> list[tuple[str, ...]]:
    """For each explainer row and the candidate it explains, up to n terms with the largest product,
    best first (ties by term index). The candidate's weights are looked up, not copied per pick."""
    if terms is None or explainers.shape[0] == 0:
        return [()] * explainers.shape[0]
    table = kernels.top_terms(explainers, pick_col, shared.candidates, n)
    found = (table >= 0).sum(axis=1).tolist()  # each row's terms fill its first places
    return [tuple(names[:count]) for names, count in zip(terms[table].tolist(), found, strict=True)]


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


def first_max(values: np.ndarray, starts: np.ndarray, within: np.ndarray | float = 0.0) -> np.ndarray:
    """Index of the first largest value of each run (runs start at `starts`, non-empty, laid end to
    end); a value `within` that share of its run's largest counts as the largest too."""
    run_max = np.maximum.reduceat(values, starts)
    lengths = np.diff(np.append(starts, len(values)))
    best = np.repeat(run_max, lengths)
    at_max = values >= best - np.abs(best) * within
    position = np.where(at_max, np.arange(len(values)), len(values))
    return np.minimum.reduceat(position, starts)
