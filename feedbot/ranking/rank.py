"""Rank candidate papers for many subscribers at once. Pure: arrays in, picks out.

Each subscriber's taste becomes a few profile vectors over the TF-IDF space:
  * the Rocchio centroid of everything they liked (votes decayed by age) minus a background of
    the whole corpus, so words every paper uses do not count as taste;
  * one centroid per topic that holds a good share of their likes (topics are k-means clusters
    of the corpus), so a minor interest is not drowned by the dominant one;
  * one vector per typed interest.
Other subscribers' 👍 add a community signal: two known papers are co-liked when the same people
liked both (cosine between their columns of the subscribers x papers matrix); a new paper, which
has no votes yet, borrows the co-likes of its nearest known papers. That signal is folded into
the shared similarity table, so it costs no extra product per subscriber.
A paper scores by its best-matching vector (arxiv-sanity-lite's per-tag max-merge), minus a
penalty for resembling what they disliked. All subscribers' vectors are stacked into one sparse
matrix and multiplied with the candidates in chunks, then cut to top-k with `argpartition`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

KIND_PROFILE, KIND_TOPIC, KIND_INTEREST, KIND_STARTER = "liked", "topic", "interest", "starter"
KIND_COLIKE, KIND_AVOID = "colike", "avoid"


@dataclass(frozen=True)
class Params:
    background: float = 2.0  # weight of the corpus mean subtracted from vote profiles
    dislike_penalty: float = 0.5  # times the similarity to the disliked centroid
    # The penalty starts at half strength and grows to full over this many likes: early 👎 often
    # land in the subscriber's own field, and a full centroid penalty then pushes the field away.
    dislike_ramp: int = 30
    topic_min_likes: int = 2  # a topic gets its own vector from this many likes
    topic_min_share: float = 0.2  # ... holding at least this share of all likes
    max_topics: int = 3
    use_topics: bool = True
    topic_min_total: int = 20  # ... once there are this many likes in all (small libraries: one centroid)
    topic_weight: float = 0.9  # topic vectors are narrower, so their cosines run higher: damp them
    colike_weight: float = 0.6  # weight of the borrowed co-likes against the content cosine (tuned on split 0)
    colike_neighbours: int = 20  # known papers a new paper borrows co-likes from
    chunk: int = 3000  # subscribers per block of the batched product
    threads: int = 0  # blocks ranked at once (0: one per core)


@dataclass
class Taste:
    """One subscriber's inputs; rows index the `known` matrix, columns the candidates."""

    liked: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    liked_weight: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    disliked: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    disliked_weight: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    interests: sp.csr_matrix | None = None  # one L2-normalised row per typed interest
    excluded: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    k: int = 5
    liker_row: int = -1  # this subscriber's row in `Corpus.likers`: their own 👍 are no one else's

    @property
    def usable_interests(self) -> np.ndarray:
        """Indices of interests whose vector is not empty (all-stop-word text matches nothing)."""
        if self.interests is None or self.interests.shape[0] == 0:
            return np.empty(0, np.int64)
        return np.flatnonzero(np.diff(self.interests.tocsr().indptr) > 0)

    @property
    def cold(self) -> bool:
        """Nothing to rank by: no likes and no usable interest (dislikes alone are handled apart)."""
        return len(self.liked) == 0 and len(self.usable_interests) == 0


@dataclass(frozen=True)
class Reason:
    """Why a paper was picked: the vector that matched best, and the words it shares with it."""

    kind: str
    liked_row: int = -1  # row in `known` of the closest liked paper (kinds liked/topic)
    interest: int = -1  # index of the typed interest (kind interest)
    terms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scored:
    """A candidate column as the batched pass ranked it for one subscriber (recommend turns it into a Pick)."""

    column: int  # candidate column
    score: float
    reason: Reason


@dataclass
class Corpus:
    """What ranking needs to know about the corpus, all derived from the fitted text model."""

    known: sp.csr_matrix  # L2-normalised vectors of papers that can have votes
    topics: np.ndarray  # topic of each known row
    background: np.ndarray  # mean of the known vectors (dense, vocabulary-sized)
    terms: np.ndarray | None = None  # vocabulary, for explanations
    likers: sp.csr_matrix | None = None  # every subscriber x known paper, 1 per 👍 (the community)

    @classmethod
    def build(cls, known: sp.csr_matrix, topics: np.ndarray | None = None,
              terms: np.ndarray | None = None, background: np.ndarray | None = None,
              likers: sp.csr_matrix | None = None) -> Corpus:
        """A corpus whose background is the mean of `known` unless given."""
        known = known.tocsr().astype(np.float32)
        if background is None:
            background = np.asarray(known.mean(axis=0)).ravel()
        if topics is None:
            topics = np.zeros(known.shape[0], dtype=np.int32)
        return cls(known, np.asarray(topics), np.asarray(background, dtype=np.float32), terms, likers)


def _map(function, items: list) -> list:
    """`function` over `items` on a thread per core (the sparse kernels and numpy release the GIL)."""
    workers = min(os.cpu_count() or 1, len(items)) or 1
    if workers == 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, items))


def _weights_matrix(tastes: list[Taste], rows_attr: str, weight_attr: str, n_known: int) -> sp.csr_matrix:
    """Subscribers × known papers, each row summing to 1 (the weighted mean's coefficients)."""
    indptr = np.zeros(len(tastes) + 1, dtype=np.int64)
    np.cumsum([len(getattr(t, rows_attr)) for t in tastes], out=indptr[1:])
    if indptr[-1] == 0:
        return sp.csr_matrix((len(tastes), n_known), dtype=np.float32)
    columns = np.concatenate([getattr(t, rows_attr) for t in tastes]).astype(np.int64)
    values = np.concatenate([getattr(t, weight_attr) for t in tastes]).astype(np.float32)
    matrix = sp.csr_matrix((values, columns, indptr), shape=(len(tastes), n_known))
    matrix.sum_duplicates()
    return normalize(matrix, norm="l1")


def _topic_rows(likes: sp.csr_matrix, topics: np.ndarray,
                params: Params) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Per (subscriber, topic) weighted means for the topics that hold enough of their likes, their
    owners, and the topic row of each entry of `likes` in CSR order (-1: in no topic row)."""
    coo = likes.tocoo()
    n_topics = int(topics.max()) + 1 if len(topics) else 1
    counts = sp.csr_matrix((np.ones_like(coo.data), (coo.row, topics[coo.col])),
                           shape=(likes.shape[0], n_topics)).toarray()
    total = counts.sum(axis=1, keepdims=True)
    eligible = (counts >= params.topic_min_likes) & (counts >= params.topic_min_share * np.maximum(total, 1))
    eligible &= (eligible.sum(axis=1, keepdims=True) >= 2)  # one topic only: the centroid says it all
    eligible &= total >= params.topic_min_total
    if params.max_topics and eligible.any():
        order = np.argsort(-np.where(eligible, counts, -1), axis=1)[:, params.max_topics:]
        np.put_along_axis(eligible, order, False, axis=1)
    owners, chosen = np.nonzero(eligible)
    if len(owners) == 0:
        return sp.csr_matrix((0, likes.shape[1]), dtype=np.float32), owners, np.full(len(coo.data), -1, np.int64)
    pair = np.full(eligible.shape, -1, dtype=np.int64)
    pair[owners, chosen] = np.arange(len(owners))
    which = pair[coo.row, topics[coo.col]]
    keep = which >= 0
    rows = sp.csr_matrix((coo.data[keep], (which[keep], coo.col[keep])), shape=(len(owners), likes.shape[1]))
    return normalize(rows, norm="l1"), owners, which


def _top_terms(explainers: sp.csr_matrix, pick_col: np.ndarray, shared: _Shared, terms: np.ndarray | None,
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


def expand(candidates: sp.csr_matrix, known: sp.csr_matrix, neighbours: int = 10,
           weight: float = 1.0) -> sp.csr_matrix:
    """Lengthen short documents with their nearest known papers (document expansion): each candidate
    becomes itself plus `weight` x the similarity-weighted mean of its `neighbours` closest papers.
    Near-duplicates (the paper itself, when it is in `known`) are not counted as neighbours."""
    if neighbours <= 0 or known.shape[0] == 0 or candidates.shape[0] == 0:
        return candidates
    k = min(neighbours, known.shape[0])

    def nearest(start: int) -> sp.csr_matrix:  # bounded memory: 256 x corpus at a time
        block = candidates[start : start + 256]
        similarity = np.asarray((block @ known.T).todense(), dtype=np.float32)
        similarity[similarity > 0.999] = 0
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.take_along_axis(similarity, top, axis=1)
        rows = np.repeat(np.arange(block.shape[0]), k)
        return sp.csr_matrix((weights.ravel(), (rows, top.ravel())), shape=similarity.shape)

    parts = _map(nearest, list(range(0, candidates.shape[0], 256)))
    mix = sp.vstack(parts, format="csr")
    return normalize(candidates + weight * normalize(mix @ known)).astype(np.float32)


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


def rank(tastes: list[Taste], corpus: Corpus, candidates: sp.csr_matrix,
         params: Params = Params(), starter: np.ndarray | None = None) -> list[list[Scored]]:
    """Top-k picks for every subscriber, best first, with reasons; excluded columns never picked."""
    candidates = candidates.tocsr().astype(np.float32)
    results: list[list[Scored]] = [[] for _ in tastes]
    if candidates.shape[0] == 0:
        return results
    cold = [i for i, t in enumerate(tastes) if t.cold]
    if cold:
        order = starter if starter is not None else starter_order(candidates, max(t.k for t in tastes))
        for i in cold:
            results[i] = _starter_picks(tastes[i], corpus, candidates, order)
    warm = [i for i, t in enumerate(tastes) if not t.cold]
    table = _similarities(corpus.known, candidates) if warm else None
    colikes = None
    if warm and params.colike_weight and corpus.likers is not None:
        colikes = colike_table(corpus.likers, table, params.colike_neighbours, params.colike_weight)
        if colikes is not None:
            table[:-1] += colikes.table[:-1]
    blocks = [warm[start : start + params.chunk] for start in range(0, len(warm), params.chunk)]
    shared = _Shared.build(corpus, candidates, table) if warm else None
    del table  # the blocks read the column-blocked copy

    def run(block: list[int]) -> list[list[Scored]]:
        return _rank_block([tastes[i] for i in block], corpus, candidates, params, shared, colikes)

    # Blocks are independent and the sparse kernels release the GIL: use the cores there are.
    workers = min(params.threads or os.cpu_count() or 1, len(blocks)) or 1
    with ThreadPoolExecutor(workers) as pool:
        for block, picks in zip(blocks, pool.map(run, blocks), strict=True):
            for i, p in zip(block, picks, strict=True):
                results[i] = p
    return results


def _starter_picks(taste: Taste, corpus: Corpus, candidates: sp.csr_matrix, order: np.ndarray) -> list[Scored]:
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

    parts = _map(block, list(range(0, n_cand, 128)))
    out *= np.float32(weight)
    return Colikes(out, sp.hstack(parts, format="csr"), inv_sqrt, likers, weight)


def _similarities(known: sp.csr_matrix, candidates: sp.csr_matrix) -> np.ndarray:
    """Dense known x candidates cosine table, shared by scoring and explanations; one padding row.
    Built in blocks of candidates, so the sparse product never holds the whole table twice."""
    table = np.empty((known.shape[0] + 1, candidates.shape[0]), dtype=np.float32)

    def fill(start: int) -> None:
        table[:-1, start : start + 128] = (known @ candidates[start : start + 128].T).toarray()

    _map(fill, list(range(0, candidates.shape[0], 128)))
    table[-1] = -np.inf  # the row that index -1 (padding) reads
    return table


class _Columns:
    """The known x candidates table (padding row dropped) as contiguous blocks of columns. The
    per-block product reads the table row by row for every profile; a block of 64 columns
    (7.7 MB at 30,000 papers) stays in cache where the whole table does not."""

    width = 64

    def __init__(self, table: np.ndarray):
        self.n_rows, self.n_columns = table.shape[0] - 1, table.shape[1]
        n_blocks = -(-self.n_columns // self.width)
        self.blocks = np.zeros((n_blocks, self.n_rows, self.width), np.float32)
        for j in range(n_blocks):
            part = table[:-1, j * self.width : (j + 1) * self.width]
            self.blocks[j, :, : part.shape[1]] = part

    def product(self, coefficients: sp.csr_matrix) -> np.ndarray:
        """coefficients @ table, one block of columns at a time."""
        out = np.empty((coefficients.shape[0], self.n_columns), np.float32)
        for j, block in enumerate(self.blocks):
            columns = slice(j * self.width, min((j + 1) * self.width, self.n_columns))
            out[:, columns] = (coefficients @ block)[:, : columns.stop - columns.start]
        return out

    def take(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """table[rows, columns], elementwise."""
        return self.blocks[columns // self.width, rows, columns % self.width]


def _squared_norms(coefficients: sp.csr_matrix, known: sp.csr_matrix) -> np.ndarray:
    """|row @ known|^2 for each row of coefficients."""
    return _row_squares(coefficients @ known)


def _row_squares(matrix: sp.csr_matrix) -> np.ndarray:
    out = np.zeros(matrix.shape[0], np.float64)
    filled = np.diff(matrix.indptr) > 0
    if filled.any():
        out[filled] = np.add.reduceat(matrix.data * matrix.data, matrix.indptr[:-1][filled])
    return out


def _vote_norms(likes: sp.csr_matrix, has_likes: np.ndarray, n_topic_rows: int, topic_of_like: np.ndarray,
                known: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Squared norms of the centroid profiles (subscribers `has_likes`) and of the topic profiles.

    Each like is summed into a profile once: the likes are split into parts (one per topic row, one
    for each subscriber's remaining likes), a topic profile is its part divided by the part's weight
    and a centroid is the sum of its subscriber's parts, which are far shorter than the likes.
    """
    coo = likes.tocoo()
    in_topic = topic_of_like >= 0
    part = np.where(in_topic, topic_of_like, n_topic_rows + coo.row)
    n_parts = n_topic_rows + likes.shape[0]
    profiles = sp.csr_matrix((coo.data, (part, coo.col)), shape=(n_parts, likes.shape[1])) @ known
    squares = _row_squares(profiles)
    weight = np.bincount(part[in_topic], weights=coo.data[in_topic].astype(np.float64), minlength=n_topic_rows)
    topics = squares[:n_topic_rows] / np.where(weight > 0, weight, 1) ** 2
    centroids = squares[n_topic_rows + has_likes]  # right for those whose likes are all one part
    split = np.flatnonzero(np.isin(has_likes, np.unique(coo.row[in_topic])))
    if len(split):
        sums = sp.csr_matrix((np.ones(len(part), np.float32), (coo.row, part)), shape=(likes.shape[0], n_parts))
        sums.data[:] = 1
        centroids[split] = _row_squares(sums[has_likes[split]] @ profiles)
    return centroids, topics


def _centroid_scores(coefficients: sp.csr_matrix, vv: np.ndarray, table: _Columns, candidates_b: np.ndarray,
                     known_b: np.ndarray, background: float, b_norm2: float) -> np.ndarray:
    """Cosine of each weighted mean of known papers, background subtracted, with the candidates.

    By linearity the raw dot products come from the similarity table (no profile x candidate
    product), and |v - g b|^2 = |v|^2 - 2g v.b + g^2 |b|^2 needs only each profile's own norm `vv`.
    """
    if coefficients.shape[0] == 0:
        return np.zeros((0, table.n_columns), np.float32)
    raw = table.product(coefficients.astype(np.float32, copy=False))
    vb = coefficients @ known_b
    norms = np.sqrt(np.maximum(vv - 2 * background * vb + background**2 * b_norm2, 1e-12))
    if background:  # in place: these blocks are large
        raw -= np.float32(background) * candidates_b[None, :].astype(np.float32)
    raw *= (1.0 / norms).astype(np.float32)[:, None]
    return raw


@dataclass
class _Shared:
    """What every block reads about the candidates and the corpus: computed once per pass."""

    table: _Columns  # known x candidates: content cosine plus weighted co-likes
    candidates_t: sp.csr_matrix  # terms x candidates, for the interest product
    candidates_b: np.ndarray  # each candidate's dot product with the background
    known_b: np.ndarray
    b_norm2: float
    vocabulary: int
    term_keys: np.ndarray  # candidate * vocabulary + term of every candidate entry, sorted
    term_values: np.ndarray  # ... and its weight

    @classmethod
    def build(cls, corpus: Corpus, candidates: sp.csr_matrix, table: np.ndarray) -> _Shared:
        b = corpus.background
        ordered = candidates
        if not candidates.has_sorted_indices:
            ordered = candidates.copy()
            ordered.sort_indices()
        rows = np.repeat(np.arange(ordered.shape[0], dtype=np.int64), np.diff(ordered.indptr))
        return cls(_Columns(table), candidates.T.tocsr(), np.asarray(candidates @ b).ravel(),
                   np.asarray(corpus.known @ b).ravel(), float(b @ b), candidates.shape[1],
                   rows * candidates.shape[1] + ordered.indices, ordered.data.astype(np.float32))


def _segments(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For runs of the given lengths laid end to end: each element's run, and its place in the run."""
    run = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return run, np.arange(len(run)) - starts[run]


def _rank_block(tastes: list[Taste], corpus: Corpus, candidates: sp.csr_matrix, params: Params,
                shared: _Shared, colikes: Colikes | None = None) -> list[list[Scored]]:
    n_subs, n_cand = len(tastes), candidates.shape[0]
    known, table = corpus.known, shared.table
    likes = _weights_matrix(tastes, "liked", "liked_weight", known.shape[0])
    dislikes = _weights_matrix(tastes, "disliked", "disliked_weight", known.shape[0])

    # Profile rows: a centroid per subscriber with likes, topic centroids, typed interests.
    has_likes = np.flatnonzero(likes.getnnz(axis=1) > 0)
    coefficients, owners = [likes[has_likes]], [has_likes]
    vv = None
    if params.use_topics and len(has_likes):
        topic_rows, topic_owners, topic_of_like = _topic_rows(likes, corpus.topics, params)
        coefficients.append(topic_rows)
        owners.append(topic_owners)
        if len(topic_owners):
            vv = np.concatenate(_vote_norms(likes, has_likes, len(topic_owners), topic_of_like, known))
    n_centroids = len(has_likes)
    coefficients = sp.vstack(coefficients, format="csr")
    vote_scores = _centroid_scores(coefficients, _squared_norms(coefficients, known) if vv is None else vv, table,
                                   shared.candidates_b, shared.known_b, params.background, shared.b_norm2)
    vote_scores[n_centroids:] *= params.topic_weight
    n_vote = coefficients.shape[0]
    kinds = [np.zeros(n_centroids, np.int8), np.ones(n_vote - n_centroids, np.int8)]
    extra = [np.full(n_vote, -1, np.int64)]
    interest_rows, interest_scores = None, np.zeros((0, n_cand), np.float32)
    usable = [t.usable_interests for t in tastes]
    with_interests = [s for s in range(n_subs) if len(usable[s])]
    if with_interests:
        stacked = sp.vstack([tastes[s].interests.tocsr() for s in with_interests], format="csr")
        offsets = np.cumsum([0] + [tastes[s].interests.shape[0] for s in with_interests[:-1]])
        wanted_rows = np.concatenate([offset + usable[s] for offset, s in zip(offsets, with_interests, strict=True)])
        interest_rows = normalize(stacked[wanted_rows].astype(np.float32))
        counts = [len(usable[s]) for s in with_interests]
        owners.append(np.repeat(with_interests, counts))
        kinds.append(np.full(interest_rows.shape[0], 2, np.int8))
        extra.append(np.concatenate([usable[s] for s in with_interests]))
        interest_scores = (interest_rows @ shared.candidates_t).toarray().astype(np.float32, copy=False)
    owner, kind, interest_of = np.concatenate(owners), np.concatenate(kinds), np.concatenate(extra)

    def row_scores(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Score of each profile row (vote rows numbered first, then interest rows) at its column."""
        out = np.empty(len(rows), np.float32)
        vote = rows < n_vote
        out[vote] = vote_scores[rows[vote], columns[vote]]
        out[~vote] = interest_scores[rows[~vote] - n_vote, columns[~vote]]
        return out

    # Max-merge each subscriber's rows, slot by slot (a subscriber's first row, second row, ...),
    # so no stacked copy of all the scores is formed.
    order = np.argsort(owner, kind="stable")
    starts = np.searchsorted(owner[order], np.arange(n_subs + 1))
    slot = np.empty(len(owner), np.int64)
    slot[order] = np.arange(len(owner)) - starts[owner[order]]
    best = np.full((n_subs, n_cand), -np.inf, dtype=np.float32)
    for j in range(int(slot.max()) + 1 if len(slot) else 0):
        for rows, array, shift in ((np.flatnonzero(slot[:n_vote] == j), vote_scores, 0),
                                   (np.flatnonzero(slot[n_vote:] == j), interest_scores, n_vote)):
            if len(rows):
                subs = owner[rows + shift]
                best[subs] = np.maximum(best[subs], array[rows])

    has_dislikes = np.flatnonzero(dislikes.getnnz(axis=1) > 0)
    if len(has_dislikes) and params.dislike_penalty:
        dislike_rows = dislikes[has_dislikes]
        penalty = _centroid_scores(dislike_rows, _squared_norms(dislike_rows, known), table, shared.candidates_b,
                                   shared.known_b, 0.0, shared.b_norm2)
        strength = np.full(len(has_dislikes), params.dislike_penalty, np.float32)
        if params.dislike_ramp:
            likes_count = np.array([len(tastes[s].liked) for s in has_dislikes])
            strength *= (0.5 + 0.5 * np.minimum(1.0, likes_count / params.dislike_ramp)).astype(np.float32)
        penalty *= strength[:, None]
        best[has_dislikes] -= penalty
        del penalty

    # Top-k per subscriber, never an excluded column: one argpartition over the whole block.
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
    pick_col = top[pick_sub, pick_slot]
    pick_score = top_scores[pick_sub, pick_slot]
    del best, top, top_scores
    n_picks = len(pick_col)

    # Why: the row that won (the first of the subscriber's rows, in order, to reach the best score).
    rows_per_sub = np.diff(starts)
    pair_pick, pair_slot = _segments(rows_per_sub[pick_sub])
    pair_row = order[starts[pick_sub[pair_pick]] + pair_slot]
    win_row = np.full(n_picks, -1, np.int64)
    if len(pair_row):
        row_score = row_scores(pair_row, pick_col[pair_pick])
        with_rows = np.flatnonzero(rows_per_sub[pick_sub] > 0)
        pick_start = np.cumsum(rows_per_sub[pick_sub]) - rows_per_sub[pick_sub]
        win_row[with_rows] = pair_row[_first_max(row_score, pick_start[with_rows])]

    # ... the closest liked paper (or the interest), the terms they share.
    liked_counts = np.array([len(t.liked) for t in tastes])
    liked_start = np.cumsum(liked_counts) - liked_counts
    all_liked = np.concatenate([t.liked for t in tastes]).astype(np.int64) if liked_counts.sum() else \
        np.empty(0, np.int64)
    per_pick = liked_counts[pick_sub]
    pair_pick, pair_place = _segments(per_pick)
    pair_at = liked_start[pick_sub[pair_pick]] + pair_place
    pair_known = all_liked[pair_at]
    pair_col = pick_col[pair_pick]
    closeness = table.take(pair_known, pair_col)
    with_liked = np.flatnonzero(per_pick > 0)
    pick_start = np.cumsum(per_pick) - per_pick
    by_colike = np.zeros(n_picks, bool)
    if colikes is not None and len(pair_known):
        # The community is the reason when the likes' borrowed co-likes outweigh their content score.
        # Only other people's co-likes between two different papers count as the community's
        # reason: the subscriber's own 👍 and a candidate's nearness to a paper they liked do not.
        everyone = colikes.table[pair_known, pair_col]
        liker_rows = np.array([t.liker_row for t in tastes], np.int64)
        pick_liker = liker_rows[pick_sub]
        own_reach = colikes.reach(pick_liker, pick_col)
        pair_liker = pick_liker[pair_pick]
        mine = np.zeros(len(pair_known), np.float32)
        member = pair_liker >= 0
        mine[member] = np.asarray(colikes.likers[pair_liker[member], pair_known[member]]).ravel()
        near = np.asarray(colikes.neighbours[pair_known, pair_col]).ravel().astype(np.float32)
        inv_sqrt = colikes.inv_sqrt[pair_known]
        shared_part = (everyone - np.float32(colikes.weight) * (
            mine * inv_sqrt * own_reach[pair_pick] + near * (1 - mine * inv_sqrt**2))).astype(np.float32)
        weight = np.concatenate([t.liked_weight for t in tastes]).astype(np.float32)[pair_at]
        starts_with = pick_start[with_liked]
        total = np.zeros(n_picks, np.float32)
        total[with_liked] = np.add.reduceat(weight, starts_with)
        weight /= np.maximum(total, 1e-30)[pair_pick]
        content = closeness - everyone
        community, by_content = np.zeros(n_picks, np.float32), np.zeros(n_picks, np.float32)
        community[with_liked] = np.add.reduceat(weight * shared_part, starts_with)
        by_content[with_liked] = np.add.reduceat(weight * content, starts_with)  # the plain cosine
        by_colike = community > np.maximum(by_content, 1e-4)  # float noise is not a community
        # Name the liked paper behind the reason: by other people's co-likes, or else by content
        # alone (a paper linked to the pick only through co-likes shares no word with it).
        closeness = np.where(by_colike[pair_pick], shared_part, content)
    closest = np.full(n_picks, -1, np.int64)
    if len(with_liked):
        closest[with_liked] = pair_known[_first_max(closeness, pick_start[with_liked])]
    by_interest = kind[win_row] == 2
    by_colike &= ~by_interest
    parts = [known[closest[~by_interest]]]
    if by_interest.any():
        parts.append(interest_rows[win_row[by_interest] - n_vote])
    order_back = np.argsort(np.concatenate([np.flatnonzero(~by_interest), np.flatnonzero(by_interest)]))
    explainers = sp.vstack(parts, format="csr")[order_back]
    terms = _top_terms(explainers, pick_col, shared, corpus.terms)

    out: list[list[Scored]] = [[] for _ in tastes]
    for n, (s, c, w, score) in enumerate(zip(pick_sub.tolist(), pick_col.tolist(), win_row.tolist(),
                                             pick_score.tolist(), strict=True)):
        if kind[w] == 2:
            reason = Reason(KIND_INTEREST, interest=int(interest_of[w]), terms=terms[n])
        elif by_colike[n]:
            reason = Reason(KIND_COLIKE, liked_row=int(closest[n]))
        else:
            reason = Reason(KIND_PROFILE if kind[w] == 0 else KIND_TOPIC, liked_row=int(closest[n]), terms=terms[n])
        out[s].append(Scored(c, score, reason))
    return out


def _first_max(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of the first largest value of each run (runs start at `starts`, non-empty, laid end to end)."""
    run_max = np.maximum.reduceat(values, starts)
    lengths = np.diff(np.append(starts, len(values)))
    at_max = values >= np.repeat(run_max, lengths)
    position = np.where(at_max, np.arange(len(values)), len(values))
    return np.minimum.reduceat(position, starts)
