"""Imported libraries folded into a few term-space rows per subscriber.

A library adds hundreds of papers a subscriber likes that are never listed; a row of the
similarity table for each would make the tables grow with every library imported. A profile is a
weighted mean of liked papers, so by linearity the papers of one (subscriber, topic) group can
stand as one row, their mean, weighing as much as they do together: the centroid and the topic
rows are unchanged by the folding, but for the mean's smallest terms, pruned to keep the table's
product cheap. Each row keeps the real paper of the group closest to it, for the why-line.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from feedbot.ranking.inputs import Corpus, Taste
from feedbot.ranking.kernels import canonical
from feedbot.ranking.tables import parallel_map

FOLD_TERMS = 400  # terms kept of each folded mean (its largest)


@dataclass
class Folded:
    """The folded rows: mean vectors, topics, whose they are and which paper each names."""

    vectors: sp.csr_matrix  # one row per (owner, topic) group: the members' mean, pruned
    topics: np.ndarray
    owner: np.ndarray  # the owner of each row, as given
    representative: np.ndarray  # the member (library row, as given) closest to each row's mean
    group_of: np.ndarray  # the row each folded like went to, in the order given
    size: np.ndarray  # likes folded into each row


def fold(library: sp.csr_matrix, owner: np.ndarray, paper: np.ndarray, topics: np.ndarray,
         terms: int = FOLD_TERMS, chunk: int = 2000, log2_weight: np.ndarray | None = None) -> Folded:
    """Fold the likes (owner, paper: a row of `library`) into one row per (owner, topic of the
    paper), a few thousand rows at a time so no unpruned means are held together. Each row is the
    mean of its likes weighted by 2 ** `log2_weight` (their votes' weights up to a factor per row:
    decay scales an owner's votes alike as time passes, so vote hours over the half-life in hours
    will do); alike when None. Taken from each row's largest, the weights cannot all underflow."""
    owner, paper = np.asarray(owner, np.int64), np.asarray(paper, np.int64)
    key = owner * (int(topics.max(initial=0)) + 1) + topics[paper]
    keys, group_of = np.unique(key, return_inverse=True)
    group_of = group_of.ravel()
    size = np.bincount(group_of, minlength=len(keys))
    share = np.ones(len(paper))
    if log2_weight is not None:
        largest = np.full(len(keys), -np.inf)
        np.maximum.at(largest, group_of, log2_weight)
        share = np.exp2(np.asarray(log2_weight, np.float64) - largest[group_of])
    share = share / np.bincount(group_of, weights=share, minlength=len(keys))[group_of]
    order = np.argsort(group_of, kind="stable")
    starts = np.searchsorted(group_of[order], np.arange(len(keys) + 1))

    def fold_chunk(first: int) -> tuple[sp.csr_matrix, np.ndarray]:
        """Rows first… of the fold (their pruned means) and the paper each names."""
        last = min(first + chunk, len(keys))
        likes = order[starts[first] : starts[last]]
        mix = sp.csr_matrix((share[likes].astype(np.float32),
                             (group_of[likes] - first, paper[likes])), shape=(last - first, library.shape[0]))
        means = prune((mix @ library).tocsr(), terms)
        local = group_of[likes] - first
        closeness = row_dots(library, paper[likes], means, local)
        best = np.lexsort((-closeness, local))  # by group, closest first
        heads = best[np.searchsorted(local[best], np.arange(last - first))]
        return means, paper[likes[heads]]

    parts = parallel_map(fold_chunk, list(range(0, len(keys), chunk)))
    representative = np.concatenate([named for _, named in parts] + [np.empty(0, np.int64)])
    vectors = sp.vstack([means for means, _ in parts], format="csr") if parts else \
        sp.csr_matrix((0, library.shape[1]), dtype=np.float32)
    return Folded(vectors.astype(np.float32), topics[representative], owner[order[starts[:-1]]] if len(keys) else
                  np.empty(0, np.int64), representative, group_of, size)


@dataclass
class LibraryRows:
    """Folded rows as the shared tables take them: by owner (ascending), then topic."""

    vectors: sp.csr_matrix
    topics: np.ndarray
    owner: np.ndarray  # the owner of each row
    named: np.ndarray  # the paper id each row names (its member closest to the mean)
    key: np.ndarray  # owner << 32 | paper of every folded like, sorted
    row: np.ndarray  # ... the row it was folded into

    @classmethod
    def empty(cls, vocabulary: int) -> LibraryRows:
        nothing = np.empty(0, np.int64)
        return cls(sp.csr_matrix((0, vocabulary), dtype=np.float32), np.empty(0, np.int32), nothing, nothing,
                   nothing, nothing)


class FoldCache:
    """The folded rows of the last builds of the shared tables, kept for the next: a build refolds
    only the owners whose folded likes (papers and vote times) changed since, so a sweep's tables
    cost what changed, not every library again (20 s at 20,000 libraries of 300). Rows are kept
    for the last `size` versions (database, text model, half-life), so builds on both sides of a
    refit do not refold everyone in turn. Owners are told apart by a 64-bit hash of their likes.
    One build folds at a time (the lock is held while `vectors_of` reads)."""

    def __init__(self, terms: int = FOLD_TERMS, size: int = 2) -> None:
        self.terms = terms  # kept of each row's mean (`fold`)
        self.size = size
        self._lock = threading.Lock()
        self._held: OrderedDict[tuple, tuple[LibraryRows, np.ndarray, np.ndarray]] = OrderedDict()  # rows,
        # their owners (sorted) and each owner's hash, by version
        self.refolded = 0  # owners the last call folded

    def rows(self, version: tuple, owner: np.ndarray, paper: np.ndarray, log2_weight: np.ndarray,
             vectors_of: Callable[[np.ndarray], tuple[sp.csr_matrix, np.ndarray]],
             vocabulary: int) -> LibraryRows:
        """The rows of the likes (owner, paper id, weight as `fold` takes it; one entry per pair),
        refolding only what changed; `vectors_of(paper ids)` gives their vectors and topics."""
        owner, paper = np.asarray(owner, np.int64), np.asarray(paper, np.int64)
        if len(owner) and not (owner.min() >= -(2**31) and owner.max() < 2**31 and paper.min() >= 0
                               and paper.max() < 2**32):
            raise ValueError("owners must fit in 32 signed bits and papers in 32 unsigned bits")
        log2_weight = np.asarray(log2_weight, np.float64) + 0.0  # -0.0 as 0.0: the same weight, the same hash
        if len(owner) and (owner[1:] < owner[:-1]).any():  # by owner; a hash is a sum: their likes in any order
            order = np.argsort(owner, kind="stable")
            owner, paper, log2_weight = owner[order], paper[order], log2_weight[order]
        starts = np.flatnonzero(np.diff(owner, prepend=owner[:1] - 1)) if len(owner) else np.empty(0, np.int64)
        owners = owner[starts]
        hashes = _owner_hashes(paper, log2_weight, starts)
        with self._lock:
            held, held_owners, held_hashes = self._held.get(version) or \
                (LibraryRows.empty(vocabulary), np.empty(0, np.int64), np.empty(0, np.uint64))
            at = np.minimum(np.searchsorted(held_owners, owners), max(len(held_owners) - 1, 0))
            same = (held_owners[at] == owners) & (held_hashes[at] == hashes) if len(held_owners) else \
                np.zeros(len(owners), bool)
            changed = np.flatnonzero(np.isin(owner, owners[~same]))
            changed = changed[np.argsort((owner[changed] << 32) | paper[changed], kind="stable")]  # owner, paper
            fresh = _fold_rows(owner[changed], paper[changed], log2_weight[changed], vectors_of, vocabulary,
                               self.terms)
            rows = _merge(held, owners[same], fresh)
            self._held[version] = (rows, owners, hashes)  # kept only once folded; the latest last
            self._held.move_to_end(version)
            while len(self._held) > self.size:
                self._held.popitem(last=False)
            self.refolded = int((~same).sum())
            return rows


FOLDS = FoldCache()


def _owner_hashes(paper: np.ndarray, log2_weight: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Each owner's likes (a run from `starts`) as one 64-bit number: a sum of mixed (paper,
    weight) words, so any paper or time added, removed or changed changes it."""
    if not len(starts):
        return np.empty(0, np.uint64)
    with np.errstate(over="ignore"):
        x = paper.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ log2_weight.view(np.uint64)
        x ^= x >> np.uint64(31)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(29)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(32)
        return np.add.reduceat(x, starts) + np.diff(np.append(starts, len(paper))).astype(np.uint64)


def _fold_rows(owner: np.ndarray, paper: np.ndarray, log2_weight: np.ndarray,
               vectors_of: Callable[[np.ndarray], tuple[sp.csr_matrix, np.ndarray]], vocabulary: int,
               terms: int) -> LibraryRows:
    """`fold` of these likes (given by owner, then paper), as rows by owner then topic."""
    if not len(owner):
        return LibraryRows.empty(vocabulary)
    papers = np.unique(paper)
    vectors, topics = vectors_of(papers)
    folded = fold(vectors, owner, np.searchsorted(papers, paper), topics, terms, log2_weight=log2_weight)
    return LibraryRows(folded.vectors, folded.topics, folded.owner, papers[folded.representative],
                       (owner << 32) | paper, folded.group_of)


def _merge(previous: LibraryRows, kept_owners: np.ndarray, fresh: LibraryRows) -> LibraryRows:
    """The rows of `kept_owners` from `previous` and all of `fresh` (other owners), by owner."""
    kept = np.flatnonzero(np.isin(previous.owner, kept_owners))
    owner = np.concatenate([previous.owner[kept], fresh.owner])
    order = np.argsort(owner, kind="stable")  # each part is by owner, then topic: kept within owners
    place = np.empty(len(order), np.int64)
    place[order] = np.arange(len(order))
    renumbered = np.full(len(previous.owner), -1, np.int64)
    renumbered[kept] = place[: len(kept)]
    likes = renumbered[previous.row] >= 0  # the likes of the rows kept
    key = np.concatenate([previous.key[likes], fresh.key])
    row = np.concatenate([renumbered[previous.row[likes]], place[len(kept):][fresh.row]])
    by_key = np.argsort(key, kind="stable")  # two sorted runs
    return LibraryRows(sp.vstack([previous.vectors[kept], fresh.vectors], format="csr")[order],
                       np.concatenate([previous.topics[kept], fresh.topics])[order], owner[order],
                       np.concatenate([previous.named[kept], fresh.named])[order], key[by_key], row[by_key])


DENSE_AT = 100  # likes per folded row from which their closeness is read from dense blocks of means


def row_dots(library: sp.csr_matrix, papers: np.ndarray, means: sp.csr_matrix, row_of: np.ndarray,
             block: int = 256, dense_at: int | None = None, decimals: int | None = 6) -> np.ndarray:
    """library[papers[i]] · means[row_of[i]] for every i (`row_of` ascending), rounded to
    `decimals` so ties do not hang on a float sum's last bit. With many likes per row, the means
    are made dense `block` rows at a time and read at each paper's terms (each like's mean copied
    out as a sparse row of hundreds of terms would take gigabytes); with few, that copy is cheaper
    than the dense blocks, and is made a slice of likes at a time. Both ways multiply in float64
    and add the products one by one in term order, so they give the same bits (which way runs
    depends on the rows folded beside, and a refold folds a library alone)."""
    out = np.zeros(len(papers), np.float64)
    if len(papers) < (DENSE_AT if dense_at is None else dense_at) * means.shape[0]:
        for start in range(0, len(papers), 20_000):
            part = slice(start, start + 20_000)
            products = canonical(library[papers[part]]).astype(np.float64).multiply(means[row_of[part]]).tocsr()
            out[part] = _row_sums(products.indptr, products.data)
    else:
        bounds = np.searchsorted(row_of, np.arange(0, means.shape[0] + block, block))
        for n, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            if start == end:
                continue
            dense = means[n * block : (n + 1) * block].toarray()
            rows = canonical(library[papers[start:end]])
            owner = np.repeat(row_of[start:end] - n * block, np.diff(rows.indptr))
            out[start:end] = _row_sums(rows.indptr, rows.data.astype(np.float64) * dense[owner, rows.indices])
    return out if decimals is None else np.round(out, decimals)


def _row_sums(indptr: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each row's values added one after another (`np.bincount`), not pairwise as `sum` adds them."""
    return np.bincount(np.repeat(np.arange(len(indptr) - 1), np.diff(indptr)), weights=values,
                       minlength=len(indptr) - 1)


def prune(rows: sp.csr_matrix, terms: int) -> sp.csr_matrix:
    """Each row's `terms` largest entries (ties by term index), the rest dropped. Only the rows
    longer than that are sorted, on one key: row, then the value's bits (positive floats order
    like their bits), a stable sort keeping the term order among ties."""
    rows.sum_duplicates()
    lengths = np.diff(rows.indptr)
    long = np.flatnonzero(lengths > terms)
    if not len(long):
        return rows
    at = np.concatenate([np.arange(rows.indptr[r], rows.indptr[r + 1]) for r in long])
    row = np.repeat(long, lengths[long]).astype(np.uint64)
    bits = (~rows.data[at].astype(np.float32).view(np.uint32)).astype(np.uint64)
    order = at[np.argsort((row << np.uint64(32)) | bits, kind="stable")]
    rank = np.arange(len(order)) - np.repeat(np.cumsum(lengths[long]) - lengths[long], lengths[long])
    drop = np.zeros(rows.nnz, bool)
    drop[order[rank >= terms]] = True
    kept = np.minimum(lengths, terms)
    return sp.csr_matrix((rows.data[~drop], rows.indices[~drop], np.concatenate([[0], np.cumsum(kept)])),
                         shape=rows.shape)


def fold_corpus(
    corpus: Corpus, tastes: list[Taste], library: np.ndarray, terms: int = FOLD_TERMS, folds: FoldCache | None = None,
    vectors_of: Callable[[np.ndarray], sp.csr_matrix] | None = None,
) -> tuple[Corpus, list[Taste], np.ndarray]:
    """The corpus with its `library` rows (papers only liked, never listed) left out and each
    subscriber's likes of them folded into rows of their own, after the kept rows; the tastes
    pointing at those rows (each weighing as much as its likes together); and the known row of the
    paper each new row names. The likers lose the library papers: no one's neighbours any more.
    `folds` keeps the rows of the tastes (by their place) whose library likes did not change since
    its last call (with its own `terms`); none: all folded afresh. `vectors_of(rows)` reads the
    library papers' vectors from elsewhere (as a worker reads them from its database: only those
    it refolds), their rows of `corpus.known` then left empty; none: those rows."""
    vectors_of = vectors_of or (lambda papers: corpus.known[papers])
    was_library = np.asarray(library, bool)
    library = was_library.copy()
    counts = np.array([len(t.liked) for t in tastes], np.int64)
    liked = np.concatenate([t.liked for t in tastes] + [np.empty(0, np.int64)]).astype(np.int64)
    liked_weight = np.concatenate([t.liked_weight for t in tastes] + [np.empty(0, np.float32)])
    library[np.concatenate([t.disliked for t in tastes] + [np.empty(0, np.int64)]).astype(np.int64)] = False
    kept = np.flatnonzero(~library)  # a 👎 needs the paper's own row
    new_row = np.full(len(library), -1, np.int64)
    new_row[kept] = np.arange(len(kept))
    entry_owner = np.repeat(np.arange(len(tastes)), counts)
    mine = library[liked]
    owner, paper = entry_owner[mine], liked[mine]
    folds = FoldCache(terms) if folds is None else folds
    weight = np.maximum(liked_weight[mine], np.finfo(np.float64).tiny)  # a weight decayed to 0 still has a logarithm
    folded = folds.rows(("corpus",), owner, paper, np.log2(weight),
                        lambda papers: (vectors_of(papers), corpus.topics[papers]), corpus.known.shape[1])
    # Each subscriber's likes become their own likes kept, then the rows their library likes went to.
    at = folded.row[np.searchsorted(folded.key, (owner << 32) | paper)]
    size = np.bincount(at, minlength=len(folded.owner))  # every row holds some of these likes
    rows = np.arange(len(size))
    row_weight = np.bincount(at, weights=liked_weight[mine], minlength=len(rows))
    row_owner = folded.owner[rows]
    n_kept = len(kept)
    entries = np.concatenate([np.flatnonzero(~mine), len(liked) + np.arange(len(rows))])
    order = entries[np.argsort(np.concatenate([entry_owner[~mine], row_owner]), kind="stable")]
    all_rows = np.concatenate([new_row[liked], n_kept + rows])[order]
    all_weights = np.concatenate([liked_weight, row_weight]).astype(np.float32)[order]
    all_counts = np.concatenate([np.ones(len(liked)), size]).astype(np.float32)[order]
    library_likes = np.bincount(owner, minlength=len(tastes))
    bounds = np.cumsum(counts - library_likes + np.bincount(row_owner, minlength=len(tastes)))[:-1]
    has_library = library_likes > 0
    out = [] if not tastes else [replace(t, liked=r, disliked=new_row[t.disliked]) if not folds_in else
           replace(t, liked=r, liked_weight=w, liked_count=c, disliked=new_row[t.disliked])
           for t, folds_in, r, w, c in zip(tastes, has_library, np.split(all_rows, bounds),
                                            np.split(all_weights, bounds), np.split(all_counts, bounds), strict=True)]
    likers = corpus.likers
    n_folded = len(folded.owner)
    if likers is not None:  # the kept papers' columns, renumbered, then none on the folded rows
        likers = likers.tocsr()
        stays = new_row[likers.indices] >= 0
        likers = sp.csr_matrix((likers.data[stays], new_row[likers.indices[stays]],
                                np.concatenate([[0], np.cumsum(stays)])[likers.indptr]),
                               shape=(likers.shape[0], n_kept + n_folded))
    marks = np.zeros(n_kept + n_folded, bool)
    marks[n_kept:] = True
    disliked = was_library[kept]  # library papers someone 👎'd keep their row: their vectors read as the others'
    if disliked.any():
        read = sp.vstack([corpus.known[kept[~disliked]], vectors_of(kept[disliked]).astype(corpus.known.dtype)],
                         format="csr")
        kept_vectors = read[np.argsort(np.concatenate([np.flatnonzero(~disliked), np.flatnonzero(disliked)]))]
    else:
        kept_vectors = corpus.known[kept]
    grown = Corpus(sp.vstack([kept_vectors, folded.vectors], format="csr"),
                   np.concatenate([corpus.topics[kept], folded.topics]), corpus.background, corpus.terms, likers,
                   marks)
    return grown, out, np.concatenate([kept, folded.named])
