"""Ranking quality on CiteULike-t: recall@10/20/50/100 and nDCG@10 of held-out "new" papers.

20 % of items are held out as new papers (drawn by the split seed); 400 users (drawn by the user
seed) with >= 1 training and >= 1 held-out item get a profile from their training items; every
method ranks all held-out items for them. Every user's training library stands for the other
subscribers' 👍 (feedbot's co-likes). Parameters are tuned on split seed 0 only; the default report
is the mean over split seeds 1, 2 and 3, with paired bootstrap intervals against arxiv-sanity-lite.
Methods, in the same run on the same users: random, centroid cosine,
arxiv-sanity-lite's per-user LinearSVC(C=0.01, class_weight='balanced') with all other training
items as negatives, and feedbot's ranker (feedbot.ranking.rank, over feedbot's own vectorizer). 95 % bootstrap
intervals over users. Needs ../shared/datasets/citeulike-t.

With `--community N` (repeatable; a number or "all") only N other users' libraries stand for the
other subscribers, and feedbot is reported against its own content-only ranker at each N (the
slow baselines are not run): how the community term behaves in small deployments.

    .venv/bin/python benchmarks/quality_citeulike.py [--split-seed N ...] [--user-seed 1] [--users 400] [--variants]
    .venv/bin/python benchmarks/quality_citeulike.py --community 0 --community 5 --community 50 --community all
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from sklearn.preprocessing import normalize  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402

from benchmarks.citeulike import load, split  # noqa: E402
from benchmarks.common import ROOT, result_line  # noqa: E402
from feedbot.ranking import rank  # noqa: E402
from feedbot.ranking.textmodel import fit_topics, make_vectorizer  # noqa: E402

CUTS = (10, 20, 50, 100)
TUNING_SPLIT = 0  # parameters are chosen on this split only
REPORT_SPLITS = (1, 2, 3)
VARIANT_WEIGHTS = (0.3, 0.6, 1.0)
VARIANT_SHRINKS = (5.0, 20.0)
VARIANT_MIN_LIKERS = (2, 3)
DEFAULT = rank.Params()


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


def picks_to_scores(picks: list[list[rank.Scored]], n: int) -> np.ndarray:
    scores = np.full((len(picks), n), -np.inf, dtype=np.float32)
    for row, user_picks in enumerate(picks):
        for rank_position, pick in enumerate(user_picks):
            scores[row, pick.column] = len(user_picks) - rank_position
    return scores


def bootstrap(values: np.ndarray, seed: int = 2, rounds: int = 1000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (rounds, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def paired_ratio(ours: list[np.ndarray], theirs: list[np.ndarray], seed: int = 2,
                 rounds: int = 1000) -> tuple[float, float, float]:
    """Ratio of the mean over splits of per-user means, with a 95 % interval from resampling the
    users of each split (the same users for both methods: a paired bootstrap)."""
    rng = np.random.default_rng(seed)
    ratio = float(np.mean([o.mean() for o in ours]) / max(np.mean([t.mean() for t in theirs]), 1e-12))
    a, b = np.zeros(rounds), np.zeros(rounds)
    for o, t in zip(ours, theirs, strict=True):
        draw = rng.integers(0, len(o), (rounds, len(o)))
        a += o[draw].mean(axis=1)
        b += t[draw].mean(axis=1)
    ratios = a / np.maximum(b, 1e-12)
    return ratio, float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def community(data, held: np.ndarray, train_position: np.ndarray, users: np.ndarray, size: str,
              seed: int) -> tuple[sp.csr_matrix | None, bool]:
    """The other subscribers' 👍: every user's training library (`size` "all", the evaluated users
    included: each one's own row is theirs, left out exactly), or the libraries of `size` users
    drawn (by `seed`) among those not evaluated. Returns the likers and whether the evaluated
    users have rows in it."""
    if size == "all":
        chosen = np.arange(len(data.libraries))
    else:
        others = np.setdiff1d(np.arange(len(data.libraries)), users)
        chosen = np.random.default_rng(seed).choice(others, size=min(int(size), len(others)), replace=False)
    if len(chosen) == 0:
        return None, False
    rows = [train_position[lib[~held[lib]]] for lib in (data.libraries[u] for u in chosen)]
    likers = sp.csr_matrix((np.ones(sum(map(len, rows)), np.float32), np.concatenate(rows),
                            np.r_[0, np.cumsum([len(r) for r in rows])]), shape=(len(rows), int((~held).sum())))
    return likers, size == "all"


def evaluate(data, split_seed: int, user_seed: int, n_users: int, variants: dict[str, rank.Params],
             show: bool = True, asl_cache: Path | None = None, communities: tuple[str, ...] = ("all",),
             baselines: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Every method on one split (held-out items drawn by `split_seed`, users by `user_seed`);
    feedbot's variants once per community size (named "variant N=size" unless the only one is "all")."""
    held = split(data, seed=split_seed)
    train_items, test_items = np.flatnonzero(~held), np.flatnonzero(held)
    eligible = [u for u, lib in enumerate(data.libraries) if (~held[lib]).any() and held[lib].any()]
    users = np.random.default_rng(user_seed).choice(eligible, size=min(n_users, len(eligible)), replace=False)
    test_position = {item: n for n, item in enumerate(test_items)}
    relevant = [{test_position[i] for i in data.libraries[u] if held[i]} for u in users]
    train_position = np.full(len(held), -1, np.int64)
    train_position[train_items] = np.arange(len(train_items))
    liked = [train_position[data.libraries[u][~held[data.libraries[u]]]] for u in users]
    if show:
        print(f"\nsplit seed {split_seed}, user seed {user_seed}: {len(test_items):,} of {len(data.texts):,} items "
              f"held out as new; {len(users)} users, median {int(np.median([len(x) for x in liked]))} training "
              f"items; communities: {', '.join(communities)} other libraries")

    vectorizer = make_vectorizer(ngram_range=(1, 1))  # bag-of-words input: word order is lost
    known = vectorizer.fit_transform([data.texts[i] for i in train_items]).tocsr()
    candidates = vectorizer.transform([data.texts[i] for i in test_items]).tocsr()
    topics, _ = fit_topics(known)

    results: dict[str, dict[str, np.ndarray]] = {}
    timings: dict[str, float] = {}

    def run(name, function):
        start = time.perf_counter()
        scores = function()
        timings[name] = time.perf_counter() - start
        results[name] = metrics(scores, relevant)

    if baselines:
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

        cache = None if asl_cache is None else asl_cache / f"asl-split{split_seed}-users{user_seed}x{n_users}.npy"
        if cache is not None and cache.exists():
            results["asl"], timings["asl"] = metrics(np.load(cache), relevant), 0.0
        else:
            def asl_kept():
                scores = asl()
                if cache is not None:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    np.save(cache, scores)
                return scores

            run("asl", asl_kept)
    expanded = rank.expand(candidates, known, 10)

    def feedbot(params: rank.Params, likers: sp.csr_matrix | None, with_rows: bool):
        corpus = rank.Corpus.build(known, topics, likers=likers)
        tastes = [rank.Taste(liked=items, liked_weight=np.ones(len(items), np.float32), k=max(CUTS),
                             liker_row=int(u) if with_rows else -1) for u, items in zip(users, liked, strict=True)]
        return picks_to_scores(rank.rank(tastes, corpus, expanded, params), len(test_items))

    for size in communities:
        likers, with_rows = community(data, held, train_position, users, size, seed=100 + split_seed)
        for name, params in variants.items():
            if params.colike_weight == 0 and name in results:
                continue  # content only: the same at every community size
            label = name if communities == ("all",) or params.colike_weight == 0 else f"{name} N={size}"
            run(label, lambda p=params, x=likers, w=with_rows: feedbot(p, x, w))
    if show:
        table(results, timings)
    return results


def table(results: dict[str, dict[str, np.ndarray]], timings: dict[str, float] | None = None) -> None:
    first = next(iter(results.values()))
    print(f"{'method':<28}" + "".join(f"{m:>22}" for m in first) + ("" if timings is None else f"{'seconds':>9}"))
    for name, values in results.items():
        cells = ""
        for metric in values:
            low, high = bootstrap(values[metric])
            cells += f"{values[metric].mean():>8.3f} [{low:.3f}, {high:.3f}]"
        print(f"{name:<28}{cells}" + ("" if timings is None else f"{timings[name]:>9.1f}"))


def community_curve(data, splits: list[int], args, variants: dict[str, rank.Params]) -> None:
    """feedbot against its content-only ranker for each community size, with paired intervals."""
    sizes = tuple(args.community)
    started = time.perf_counter()
    runs = [evaluate(data, seed, args.user_seed, args.users, variants, communities=sizes, baselines=False)
            for seed in splits]
    base = "feedbot content only"
    print(f"\nmean over split seeds {splits} ({args.users} users each, user seed {args.user_seed}); "
          f"ratio to {base} with a paired 95 % bootstrap interval")
    metrics_names = list(runs[0][base])
    print(f"{'method':<40}" + "".join(f"{m:>26}" for m in metrics_names))
    for name in runs[0]:
        cells = ""
        for metric in metrics_names:
            ours = [r[name][metric] for r in runs]
            ratio, low, high = paired_ratio(ours, [r[base][metric] for r in runs])
            cells += f"{np.mean([o.mean() for o in ours]):>7.3f} {ratio:.3f}x [{low:.2f}, {high:.2f}]"
        print(f"{name:<40}{cells}")
    found = {}
    for size in sizes:
        name = f"feedbot N={size}"
        for metric, key in (("ndcg@10", "ndcg10"), ("recall@50", "recall50")):
            ratio, low, high = paired_ratio([r[name][metric] for r in runs], [r[base][metric] for r in runs])
            print(f"feedbot N={size} / content only {metric}: {ratio:.3f} [{low:.3f}, {high:.3f}]")
            found[f"n{size}_{key}_vs_content"] = f"{ratio:.3f}"
    print(f"ran in {time.perf_counter() - started:.0f} s")
    print(result_line("quality_community", **found, splits="+".join(map(str, splits))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-seed", type=int, action="append",
                        help=f"held-out split to report on (repeatable; default {REPORT_SPLITS}; "
                             f"{TUNING_SPLIT} is the one parameters were tuned on)")
    parser.add_argument("--user-seed", type=int, default=1)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--variants", action="store_true", help="also score ranker variants (tuning)")
    parser.add_argument("--asl-cache", action="store_true",
                        help="tuning only: reuse arxiv-sanity-lite's scores from an earlier run (benchmarks/out)")
    parser.add_argument("--community", action="append", metavar="N",
                        help="only N other users' libraries stand for the other subscribers (a number or 'all'; "
                             "repeatable): reports feedbot against its content-only ranker at each N, "
                             "without the slow baselines")
    args = parser.parse_args()
    splits = args.split_seed or list(REPORT_SPLITS)
    if TUNING_SPLIT in splits:
        print(f"note: split seed {TUNING_SPLIT} is the tuning split; its figures are not a fair report")

    variants = {"feedbot": DEFAULT, "feedbot content only": replace(DEFAULT, colike_weight=0.0)}
    if args.variants:  # the split-0 grid the co-like parameters were chosen from
        for weight in VARIANT_WEIGHTS:
            for shrink in VARIANT_SHRINKS:
                variants[f"feedbot co-likes x{weight} shrink {shrink}"] = replace(
                    DEFAULT, colike_weight=weight, colike_shrink=shrink)
        for least in VARIANT_MIN_LIKERS:
            variants[f"feedbot co-likes min likers {least}"] = replace(DEFAULT, colike_min_likers=least)
        variants["feedbot co-likes, 50 neighbours"] = replace(DEFAULT, colike_neighbours=50)
        variants["feedbot no topics"] = replace(DEFAULT, use_topics=False)
    data = load()
    if args.community:
        community_curve(data, splits, args, variants)
        return
    started = time.perf_counter()
    cache = ROOT / "benchmarks" / "out" if args.asl_cache else None
    runs = [evaluate(data, seed, args.user_seed, args.users, variants, asl_cache=cache) for seed in splits]

    print(f"\nmean over split seeds {splits} ({args.users} users each, user seed {args.user_seed}); "
          "ratio to arxiv-sanity-lite with a paired 95 % bootstrap interval")
    metrics_names = list(runs[0]["asl"])
    print(f"{'method':<28}" + "".join(f"{m:>26}" for m in metrics_names))
    for name in runs[0]:
        cells = ""
        for metric in metrics_names:
            ours = [r[name][metric] for r in runs]
            ratio, low, high = paired_ratio(ours, [r["asl"][metric] for r in runs])
            cells += f"{np.mean([o.mean() for o in ours]):>7.3f} {ratio:.3f}x [{low:.2f}, {high:.2f}]"
        print(f"{name:<28}{cells}")
    ratios = {metric: paired_ratio([r["feedbot"][metric] for r in runs], [r["asl"][metric] for r in runs])
              for metric in ("ndcg@10", "recall@10", "recall@50")}
    for metric, (ratio, low, high) in ratios.items():
        print(f"feedbot / arxiv-sanity-lite {metric}: {ratio:.3f} [{low:.3f}, {high:.3f}]")
    mean = {name: float(np.mean([r[name]["recall@50"].mean() for r in runs])) for name in runs[0]}
    print(f"ran in {time.perf_counter() - started:.0f} s")
    # Ratios as strings with three decimals: result_line's three significant digits would print
    # 1.049 as 1.05, on the right side of the 1.05 goal.
    print(result_line(
        "quality", ndcg10_vs_asl=f"{ratios['ndcg@10'][0]:.3f}", recall10_vs_asl=f"{ratios['recall@10'][0]:.3f}",
        recall50_vs_asl=f"{ratios['recall@50'][0]:.3f}",
        feedbot_ndcg10=round(float(np.mean([r["feedbot"]["ndcg@10"].mean() for r in runs])), 4),
        asl_ndcg10=round(float(np.mean([r["asl"]["ndcg@10"].mean() for r in runs])), 4),
        feedbot=round(mean["feedbot"], 4), asl=round(mean["asl"], 4), centroid=round(mean["centroid"], 4),
        ratio_vs_asl=f"{mean['feedbot'] / mean['asl']:.3f}", splits="+".join(map(str, splits))))


if __name__ == "__main__":
    main()
