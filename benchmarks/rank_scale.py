"""Scale of the batched ranking pass: 100,000 subscribers x 1,000 new papers, 50k-term vocabulary.

Synthetic but realistic: 30,000 known papers and 1,000 new ones written from 300 latent topics
(about 120 distinct terms each, Zipf-distributed); every subscriber follows 1-3 topics, has
5-200 votes (a fifth of them 👎) on papers of those topics and 1-3 typed interests; the co-likes
come from about 50 of each subscriber's 👍 (4.2 M in all). Times feedbot.ranking.rank (with
document expansion, co-likes and explanations) and reports peak RSS; as the
baseline, an arxiv-sanity-lite-style loop (one LinearSVC per subscriber over the known papers)
is timed on a sample in the same run and extrapolated to all subscribers, as is a loop calling
feedbot's own ranker one subscriber at a time.

With `--imported N`, N of the subscribers have also imported a library of `--library` papers (300)
drawn from `--imported-papers` (1,000,000) papers known only from libraries, of the topics they
follow: each imported paper is a 👍 of theirs. As feedbot does, each library is folded into a row
per subscriber and topic (`feedbot.ranking.libraries`): the library papers get no row of the
tables and lend no co-likes, the subscribers' other 👍 still do; candidates are lengthened with the
listed papers only (document expansion). The folded rows are kept between passes (`FoldCache`),
as a worker keeps them between builds of its tables: every library is folded once before the pass
(timed apart: `first_fold_seconds`, what a worker's first build or a refit of the text model
pays), then `--changed` (1 %) of the libraries lose a paper, and the timed pass refolds those,
reading their papers' vectors from a file (as the worker reads them from its database): like the
worker, the pass holds the listed papers' vectors and the folded rows, not a million library
papers'. Peak RSS is the pass's own (the high-water mark is reset before it), with the inputs it holds.

    .venv/bin/python benchmarks/rank_scale.py [--subscribers 100000] [--papers 1000] [--imported 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from sklearn.preprocessing import normalize  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402

from benchmarks.common import result_line  # noqa: E402
from feedbot.ranking import rank  # noqa: E402
from feedbot.ranking.libraries import FoldCache, fold_corpus  # noqa: E402

VOCABULARY = 50_000
PARAMS = rank.Params()
TOPICS = 300


def peak_mb() -> float:
    """The process's peak RSS since it started or since `reset_peak`."""
    status = Path("/proc/self/status")
    if status.exists():
        return int(status.read_text().split("VmHWM:")[1].split()[0]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Start the peak RSS afresh from the RSS now (Linux), so a step's own peak can be read."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def documents(rng: np.random.Generator, count: int, topic_terms: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """`count` L2-normalised TF-IDF-like rows, each from one or two latent topics."""
    topic = rng.integers(0, TOPICS, count)
    second = np.where(rng.random(count) < 0.3, rng.integers(0, TOPICS, count), topic)
    rows, cols = [], []
    for n in range(count):
        own = rng.choice(topic_terms[topic[n]], size=80, replace=False)
        other = rng.choice(topic_terms[second[n]], size=20, replace=False)
        common = rng.zipf(1.3, size=20) % VOCABULARY
        terms = np.unique(np.concatenate([own, other, common]))
        rows.append(np.full(len(terms), n))
        cols.append(terms)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    values = rng.random(len(rows)).astype(np.float32) + 0.2
    return normalize(sp.csr_matrix((values, (rows, cols)), shape=(count, VOCABULARY))), topic


def library_documents(rng: np.random.Generator, count: int,
                      topic_terms: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """`documents` drawn alike, vectorised (terms drawn with replacement, repeats merged), for a
    million library papers in seconds rather than minutes."""
    topic = rng.integers(0, TOPICS, count)
    second = np.where(rng.random(count) < 0.3, rng.integers(0, TOPICS, count), topic)
    parts = []
    for start in range(0, count, 50_000):
        t, t2 = topic[start : start + 50_000], second[start : start + 50_000]
        n = len(t)
        cols = np.concatenate([topic_terms[t[:, None], rng.integers(0, 600, (n, 80))],
                               topic_terms[t2[:, None], rng.integers(0, 600, (n, 20))],
                               rng.zipf(1.3, (n, 20)) % VOCABULARY], axis=1).astype(np.int32)
        cols.sort(axis=1)
        fresh = np.ones(cols.shape, bool)
        fresh[:, 1:] = cols[:, 1:] != cols[:, :-1]
        indptr = np.concatenate([[0], np.cumsum(fresh.sum(axis=1))])
        values = rng.random(int(indptr[-1])).astype(np.float32) + 0.2
        parts.append(normalize(sp.csr_matrix((values, cols[fresh], indptr), shape=(n, VOCABULARY))))
    return sp.vstack(parts, format="csr"), topic


class LibraryFile:
    """The rows of `matrix` from `first` on, in a file read row by row (positioned reads, no
    mapping: what is read is all the process holds); `without` is the matrix with those rows empty."""

    def __init__(self, matrix: sp.csr_matrix, first: int, directory: tempfile.TemporaryDirectory):
        self.directory, self.first, self.width = directory, first, matrix.shape[1]
        self.indptr = matrix.indptr[first:].astype(np.int64) - matrix.indptr[first]
        path = Path(directory.name) / "library.bin"
        head = int(matrix.indptr[first])
        with path.open("wb") as out:
            out.write(matrix.indices[head:].astype(np.int32).tobytes())
            out.write(matrix.data[head:].astype(np.float32).tobytes())
        self.nnz = int(self.indptr[-1])
        self.fd = os.open(path, os.O_RDONLY)
        indptr = np.concatenate([matrix.indptr[: first + 1], np.full(matrix.shape[0] - first, head)])
        self.without = sp.csr_matrix((matrix.data[:head].copy(), matrix.indices[:head].copy(), indptr),
                                     shape=matrix.shape)

    def rows(self, rows: np.ndarray) -> sp.csr_matrix:
        """The vectors of these rows (each at least `first`), read from the file."""
        local = np.asarray(rows, np.int64) - self.first
        if len(local) and not (local.min() >= 0 and local.max() < len(self.indptr) - 1):
            raise ValueError("rows outside the file")
        starts, ends = self.indptr[local], self.indptr[local + 1]
        indices, data = [np.empty(0, np.int32)], [np.empty(0, np.float32)]
        for begin, count in zip(starts.tolist(), (ends - starts).tolist(), strict=True):
            indices.append(np.frombuffer(os.pread(self.fd, 4 * count, 4 * begin), np.int32))
            data.append(np.frombuffer(os.pread(self.fd, 4 * count, 4 * (self.nnz + begin)), np.float32))
        indptr = np.concatenate([[0], np.cumsum(ends - starts)])
        return sp.csr_matrix((np.concatenate(data), np.concatenate(indices), indptr), shape=(len(local), self.width))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--papers", type=int, default=1_000)
    parser.add_argument("--known", type=int, default=30_000)
    parser.add_argument("--community-likes", type=int, default=50, help="mean 👍 per subscriber in the co-likes")
    parser.add_argument("--sample", type=int, default=200, help="subscribers timed in the loop baselines (0: none)")
    parser.add_argument("--imported", type=int, default=0, help="subscribers who imported a library")
    parser.add_argument("--library", type=int, default=300, help="papers in each imported library")
    parser.add_argument("--imported-papers", type=int, default=1_000_000,
                        help="distinct papers the libraries draw from")
    parser.add_argument("--changed", type=float, default=0.01,
                        help="share of the libraries changed since the last pass (refolded in the pass)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    start = time.perf_counter()
    topic_terms = np.array([rng.choice(VOCABULARY, size=600, replace=False) for _ in range(TOPICS)])
    known, known_topic = documents(rng, args.known, topic_terms)
    candidates, _ = documents(rng, args.papers, topic_terms)
    by_topic = [np.flatnonzero(known_topic == t) for t in range(TOPICS)]
    tastes = []
    for _ in range(args.subscribers):
        follows = rng.choice(TOPICS, size=rng.integers(1, 4), replace=False)
        pool = np.concatenate([by_topic[t] for t in follows])
        votes = rng.choice(pool, size=min(len(pool), int(rng.integers(5, 201))), replace=False)
        negative = rng.random(len(votes)) < 0.2
        interests = sp.csr_matrix(known[rng.choice(pool, size=len(follows))].multiply(
            known[rng.choice(pool, size=len(follows))] > 0))
        tastes.append(rank.Taste(
            liked=votes[~negative], liked_weight=np.ones((~negative).sum(), np.float32),
            disliked=votes[negative], disliked_weight=np.ones(negative.sum(), np.float32),
            interests=normalize(interests + sp.random(len(follows), VOCABULARY, density=5 / VOCABULARY,
                                                      format="csr", random_state=rng, dtype=np.float32)),
            excluded=rng.choice(args.papers, size=5, replace=False), k=5,
        ))
    imported: dict[int, np.ndarray] = {}  # subscriber -> the known rows of their library
    if args.imported:
        library, library_topic = library_documents(rng, args.imported_papers, topic_terms)
        library_by_topic = [np.flatnonzero(library_topic == t) + args.known for t in range(TOPICS)]
        for n in rng.choice(args.subscribers, size=args.imported, replace=False):
            taste = tastes[n]
            follows = np.unique(known_topic[taste.liked]) if len(taste.liked) else rng.choice(TOPICS, size=1)
            pool = np.concatenate([library_by_topic[t] for t in follows])
            imported_rows = rng.choice(pool, size=min(len(pool), args.library), replace=False)
            taste.liked = np.concatenate([taste.liked, imported_rows])
            taste.liked_weight = np.ones(len(taste.liked), np.float32)
            imported[int(n)] = imported_rows
        known = sp.vstack([known, library], format="csr")
        known_topic = np.concatenate([known_topic, library_topic])
        del library
    terms = np.array([f"term{i}" for i in range(VOCABULARY)])
    # The community: every subscriber's 👍, about `--community-likes` each, on papers of their topics.
    rows, cols = [], []
    for n, taste in enumerate(tastes):
        take = taste.liked[: int(rng.integers(args.community_likes // 2, args.community_likes * 3 // 2 + 1))]
        if n in imported:  # every imported 👍 is a community 👍
            take = np.union1d(take, imported[n])
        taste.liker_row = n
        rows.append(np.full(len(take), n))
        cols.append(take)
    likers = sp.csr_matrix((np.ones(sum(map(len, rows)), np.float32), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(len(tastes), known.shape[0]))
    corpus = rank.Corpus.build(known, known_topic % 64, terms, likers=likers)
    known = corpus.known  # the same papers: one copy
    votes = sum(len(t.liked) + len(t.disliked) for t in tastes)
    print(f"synthetic inputs: {args.subscribers:,} subscribers ({votes:,} votes; co-likes from {likers.nnz:,} 👍), "
          f"{args.imported:,} of them with a library of {args.library} papers, {known.shape[0]:,} known and "
          f"{args.papers:,} new papers, {VOCABULARY:,} terms; built in {time.perf_counter() - start:.0f} s, "
          f"RSS so far {peak_mb():.0f} MB")

    folds, first_fold_seconds, first_fold_mb = FoldCache(), 0.0, 0.0
    is_library = np.arange(known.shape[0]) >= args.known
    library_file = None
    if args.imported:  # as the imports and the last pass left them: every library folded
        reset_peak()
        start = time.perf_counter()
        fold_corpus(corpus, tastes, is_library, folds=folds)
        first_fold_seconds, first_fold_mb = time.perf_counter() - start, peak_mb()
        # From here on the library papers' vectors are in a file, read for the libraries refolded (as
        # the worker reads them from its database): the pass holds the listed papers' vectors only.
        library_file = LibraryFile(corpus.known, args.known, tempfile.TemporaryDirectory())
        corpus.known = known = library_file.without
        for n in rng.choice(sorted(imported), size=int(len(imported) * args.changed), replace=False):
            taste = tastes[n]  # since then, one of their library papers 👎'd or its import undone
            drop = np.flatnonzero(np.isin(taste.liked, imported[n]))[0]
            taste.liked, taste.liked_weight = np.delete(taste.liked, drop), np.delete(taste.liked_weight, drop)
        print(f"libraries folded once: {first_fold_seconds:.1f} s, peak RSS {first_fold_mb:.0f} MB; then "
              f"{args.changed:.0%} of them changed")

    reset_peak()
    before = peak_mb()
    start = time.perf_counter()
    expanded = rank.expand(candidates, known[: args.known])  # as feedbot does: the listed papers only
    expand_seconds = time.perf_counter() - start
    if args.imported:
        corpus, tastes, _ = fold_corpus(corpus, tastes, is_library, folds=folds, vectors_of=library_file.rows)
    fold_seconds = time.perf_counter() - start - expand_seconds
    picks = rank.rank(tastes, corpus, expanded, PARAMS)
    batched_seconds = time.perf_counter() - start
    peak = peak_mb()
    assert all(len(p) == 5 for p in picks)
    assert all(p.reason.terms for p in picks[0] if p.reason.kind != rank.KIND_COLIKE)  # co-likes share no word

    print(f"feedbot batched pass: {batched_seconds:.1f} s, peak RSS {peak:.0f} MB (inputs alone {before:.0f} MB), "
          f"{corpus.known.shape[0]:,} rows of the tables (expansion {expand_seconds:.1f} s, folding "
          f"{fold_seconds:.1f} s for {folds.refolded:,} changed libraries, ranking "
          f"{batched_seconds - expand_seconds - fold_seconds:.1f} s)", flush=True)
    if not args.sample:  # no loop baselines: the pass's own figures only
        print(result_line("rank_scale", subscribers=args.subscribers, papers=args.papers, imported=args.imported,
                          known=known.shape[0], rows=corpus.known.shape[0],
                          seconds=round(batched_seconds, 1), peak_mb=round(peak),
                          fold_seconds=round(fold_seconds, 1), refolded=folds.refolded,
                          first_fold_seconds=round(first_fold_seconds, 1)))
        return
    sample = tastes[: args.sample]
    prepared = rank.prepare(corpus, expanded, PARAMS)  # shared, so the loop pays only per-subscriber work
    start = time.perf_counter()
    for taste in sample:
        rank.rank_block([taste], prepared)
    own_loop = (time.perf_counter() - start) / len(sample) * args.subscribers

    start = time.perf_counter()
    asl_sample = sample[: max(10, args.sample // 5)]
    for taste in asl_sample:
        y = np.zeros(known.shape[0])
        y[taste.liked] = 1
        clf = LinearSVC(C=0.01, class_weight="balanced", tol=1e-6, max_iter=10000).fit(known, y)
        scores = clf.decision_function(candidates)
        np.argpartition(-scores, 5)[:5]
    asl_loop = (time.perf_counter() - start) / len(asl_sample) * args.subscribers

    print(f"\n{'method':<46}{'seconds':>10}{'speedup':>9}")
    print(f"{'feedbot batched pass (all subscribers)':<46}{batched_seconds:>10.1f}{'1.0':>9}")
    print(f"{'feedbot ranker, one subscriber at a time*':<46}{own_loop:>10.0f}{own_loop / batched_seconds:>9.1f}")
    print(f"{'arxiv-sanity-lite LinearSVC per subscriber*':<46}{asl_loop:>10.0f}{asl_loop / batched_seconds:>9.1f}")
    print(f"* timed on {len(sample)} (LinearSVC: {len(asl_sample)}) subscribers and extrapolated to "
          f"{args.subscribers:,}")
    print(f"peak RSS {peak:.0f} MB (inputs alone {before:.0f} MB)")
    print(result_line("rank_scale", subscribers=args.subscribers, papers=args.papers, imported=args.imported,
                      known=known.shape[0], rows=corpus.known.shape[0],
                      seconds=round(batched_seconds, 1), peak_mb=round(peak),
                      speedup_vs_loop=round(asl_loop / batched_seconds, 1),
                      speedup_vs_own_loop=round(own_loop / batched_seconds, 1)))


if __name__ == "__main__":
    main()
