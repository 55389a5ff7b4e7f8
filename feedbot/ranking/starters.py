"""Picks for someone with nothing to rank by: the most central paper of each of the day's main
topics, the ones closest to typed interests at onboarding, or away from what they disliked."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from feedbot.ranking.inputs import KIND_AVOID, KIND_STARTER, Corpus, Reason, Scored, Taste


def starter_order(candidates: sp.csr_matrix, clusters: int, seed: int = 0) -> np.ndarray:
    """Candidate columns ordered for a newcomer: the most central paper of each of `clusters`
    k-means clusters first (largest cluster first), then the next most central of each, and so on."""
    n = candidates.shape[0]
    if n <= 1:
        return np.arange(n)
    from sklearn.cluster import KMeans

    clusters = max(1, min(clusters, n))
    model = KMeans(n_clusters=clusters, n_init=3, random_state=seed).fit(candidates)
    centres = normalize(model.cluster_centers_)
    closeness = np.asarray(candidates @ centres.T)[np.arange(n), model.labels_]
    sizes = np.bincount(model.labels_, minlength=clusters)
    by_cluster = [sorted(np.flatnonzero(model.labels_ == c), key=lambda i: -closeness[i])
                  for c in np.argsort(-sizes, kind="stable")]
    order = []
    for depth in range(max(len(members) for members in by_cluster)):
        order += [members[depth] for members in by_cluster if depth < len(members)]
    return np.array(order, dtype=np.int64)


def interest_starters(candidates: sp.csr_matrix, interests: sp.csr_matrix | None, order: np.ndarray,
                      size: int) -> np.ndarray:
    """Papers to rate at onboarding: mostly the ones closest to the typed interests (taking each
    interest's best in turn), plus one or two from the diverse `order` that match none of them, so
    a wrong guess can be corrected. Without a usable interest, the diverse order as it is."""
    order = np.asarray(order, np.int64)
    usable = Taste(interests=interests).usable_interests if interests is not None else np.empty(0, np.int64)
    n = candidates.shape[0]
    if len(usable) == 0 or n == 0 or size <= 0:
        return order[:size]
    similarity = np.asarray((candidates @ normalize(interests.tocsr()[usable]).T).todense())
    elsewhere = 0 if size < 3 else 1 if size <= 5 else 2
    chosen: list[int] = []
    ranked = [np.argsort(-similarity[:, i], kind="stable") for i in range(similarity.shape[1])]
    depth = 0
    while len(chosen) < min(size - elsewhere, n) and depth < n:
        for ranking_of_interest in ranked:
            c = int(ranking_of_interest[depth])
            if similarity[c].max() > 0 and c not in chosen and len(chosen) < size - elsewhere:
                chosen.append(c)
        if all(similarity[r[depth], i] <= 0 for i, r in enumerate(ranked)):
            break  # nothing left that matches any interest
        depth += 1
    best = similarity.max(axis=1)
    far = best <= np.median(best)
    taken = set(chosen)
    rest = [int(c) for c in order if int(c) not in taken]
    chosen += ([c for c in rest if far[c]] + [c for c in rest if not far[c]])[: size - len(chosen)]
    return np.array(chosen[:size], np.int64)


def starter_picks(taste: Taste, corpus: Corpus, candidates: sp.csr_matrix, order: np.ndarray) -> list[Scored]:
    """Starter picks for someone with nothing to rank by. With only 👎, the starter order minus the
    half of the candidates most like what they disliked (then the least like it, if that runs short)."""
    excluded = set(taste.excluded.tolist())
    allowed = [int(c) for c in order if c not in excluded]
    if len(taste.disliked) == 0:
        return [Scored(c, 0.0, Reason(KIND_STARTER)) for c in allowed[: taste.k]]
    weights = normalize(taste.disliked_weight.reshape(1, -1).astype(np.float64), norm="l1")
    centroid = normalize(sp.csr_matrix(weights) @ corpus.known[taste.disliked])
    closeness = np.asarray((candidates @ centroid.T).todense()).ravel()
    far = closeness <= np.median(closeness)
    first = [c for c in allowed if far[c]]
    rest = sorted((c for c in allowed if not far[c]), key=lambda c: closeness[c])
    return [Scored(c, float(-closeness[c]), Reason(KIND_AVOID)) for c in (first + rest)[: taste.k]]
