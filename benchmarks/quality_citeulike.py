"""Ranking quality on CiteULike-t: recall@20/50/100 and nDCG@10 of held-out "new" papers.

20 % of items (seed 0) are held out as new papers; 400 users (seed 1) with >= 1 training and
>= 1 held-out item get a profile from their training items; every method ranks all held-out items
for them. Methods, in the same run on the same users: random, centroid cosine, arxiv-sanity-lite's
per-user LinearSVC(C=0.01, class_weight='balanced') with all other training items as negatives,
and feedbot's ranker (feedbot.ranking.rank, over feedbot's own vectorizer). 95 % bootstrap
intervals over users. Needs ../shared/datasets/citeulike-t.

    .venv/bin/python benchmarks/quality_citeulike.py [--users 400] [--variants]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from sklearn.preprocessing import normalize  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402

from benchmarks.citeulike import load, split  # noqa: E402
from benchmarks.common import result_line  # noqa: E402
from feedbot import ranking  # noqa: E402
from feedbot.textmodel import fit_topics, make_vectorizer  # noqa: E402

CUTS = (20, 50, 100)
DEFAULT = ranking.Params()


def metrics(scores: np.ndarray, relevant: list[set[int]]) -> dict[str, np.ndarray]:
    """Per-user recall@k (denominator: the user's held-out count) and nDCG@10."""
    top = np.argsort(-scores, axis=1)[:, : max(CUTS)]
    out = {f"recall@{k}": np.array([len(rel & set(row[:k])) / len(rel) for row, rel in zip(top, relevant, strict=True)])
           for k in CUTS}
    discounts = 1 / np.log2(np.arange(2, 12))
    out["ndcg@10"] = np.array([
        sum(discounts[i] for i, c in enumerate(row[:10]) if c in rel) / discounts[: min(10, len(rel))].sum()
        for row, rel in zip(top, relevant, strict=True)
    ])
    return out


def picks_to_scores(picks: list[list[ranking.Pick]], n: int) -> np.ndarray:
    scores = np.full((len(picks), n), -np.inf, dtype=np.float32)
    for row, user_picks in enumerate(picks):
        for rank_position, pick in enumerate(user_picks):
            scores[row, pick.column] = len(user_picks) - rank_position
    return scores


def bootstrap(values: np.ndarray, seed: int = 2, rounds: int = 1000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (rounds, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--variants", action="store_true", help="also score ranker variants (tuning)")
    args = parser.parse_args()

    data = load()
    held = split(data)
    train_items, test_items = np.flatnonzero(~held), np.flatnonzero(held)
    eligible = [u for u, lib in enumerate(data.libraries) if (~held[lib]).any() and held[lib].any()]
    users = np.random.default_rng(1).choice(eligible, size=min(args.users, len(eligible)), replace=False)
    test_position = {item: n for n, item in enumerate(test_items)}
    relevant = [{test_position[i] for i in data.libraries[u] if held[i]} for u in users]
    train_position = {item: n for n, item in enumerate(train_items)}
    liked = [np.array([train_position[i] for i in data.libraries[u] if not held[i]]) for u in users]
    print(f"CiteULike-t: {len(data.texts):,} items, {len(test_items):,} held out as new; "
          f"{len(users)} users, median {int(np.median([len(x) for x in liked]))} training items")

    vectorizer = make_vectorizer(ngram_range=(1, 1))  # bag-of-words input: word order is lost
    start = time.perf_counter()
    known = vectorizer.fit_transform([data.texts[i] for i in train_items]).tocsr()
    candidates = vectorizer.transform([data.texts[i] for i in test_items]).tocsr()
    topics, _ = fit_topics(known)
    print(f"vectorizer: {len(vectorizer.vocabulary_):,} terms, fitted in {time.perf_counter() - start:.1f} s")

    results: dict[str, dict[str, np.ndarray]] = {}
    timings: dict[str, float] = {}

    def run(name, function):
        start = time.perf_counter()
        scores = function()
        timings[name] = time.perf_counter() - start
        results[name] = metrics(scores, relevant)

    rng = np.random.default_rng(3)
    run("random", lambda: rng.random((len(users), len(test_items))))

    likes = sp.csr_matrix((np.ones(sum(map(len, liked))), np.concatenate(liked),
                           np.r_[0, np.cumsum([len(x) for x in liked])]), shape=(len(users), known.shape[0]))

    run("centroid", lambda: (normalize(likes @ known) @ candidates.T).toarray())

    def asl():
        scores = np.empty((len(users), len(test_items)), dtype=np.float32)
        for row, items in enumerate(liked):
            y = np.zeros(known.shape[0])
            y[items] = 1
            clf = LinearSVC(C=0.01, class_weight="balanced", tol=1e-6, max_iter=10000).fit(known, y)
            scores[row] = clf.decision_function(candidates)
        return scores

    run("asl", asl)

    def feedbot(params=DEFAULT, neighbours=10):
        corpus = ranking.Corpus.build(known, topics)
        tastes = [ranking.Taste(liked=items, liked_weight=np.ones(len(items), np.float32), k=max(CUTS))
                  for items in liked]
        expanded = ranking.expand(candidates, known, neighbours)
        return picks_to_scores(ranking.rank(tastes, corpus, expanded, params), len(test_items))

    run("feedbot", feedbot)
    if args.variants:
        run("feedbot no expansion", lambda: feedbot(neighbours=0))
        run("feedbot no topics", lambda: feedbot(ranking.Params(use_topics=False)))
        run("feedbot topics from 4", lambda: feedbot(ranking.Params(topic_min_total=4)))
        for background in (1.0, 3.0):
            run(f"feedbot bg={background}", lambda b=background: feedbot(ranking.Params(background=b)))

    print(f"\n{'method':<22}" + "".join(f"{m:>22}" for m in results["random"]) + f"{'seconds':>9}")
    for name, values in results.items():
        cells = ""
        for metric in values:
            low, high = bootstrap(values[metric])
            cells += f"{values[metric].mean():>8.3f} [{low:.3f}, {high:.3f}]"
        print(f"{name:<22}{cells}{timings[name]:>9.1f}")
    mean = {name: values["recall@50"].mean() for name, values in results.items()}
    paired = results["feedbot"]["recall@50"] - results["asl"]["recall@50"]
    low, high = bootstrap(paired)
    print(f"\nfeedbot - asl recall@50 per user: {paired.mean():+.4f} [{low:+.4f}, {high:+.4f}]")
    print(result_line("quality", **{"recall@50": ""}, feedbot=round(mean["feedbot"], 4),
                      asl=round(mean["asl"], 4), centroid=round(mean["centroid"], 4),
                      ratio_vs_asl=round(mean["feedbot"] / mean["asl"], 3)).replace("recall@50= ", "recall@50 "))


if __name__ == "__main__":
    main()
