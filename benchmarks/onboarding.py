"""Onboarding starters on CiteULike-t: how many of the first five papers shown did the user save?

For each user, the typed interests are their three most frequent tags over their training items
(tag-item.dat; "-" and "_" read as spaces). The held-out items of a split (the quality benchmark's
protocol) are the new papers to choose from. Interest-led starters (feedbot.ranking.interest_starters:
the closest to the interests plus one from elsewhere) are compared, on the same users in the same
run, with the diverse set a newcomer without interests gets (the most central paper of each of five
k-means clusters). Hit rate = held-out items the user saved among the five / 5. Report: mean over
split seeds 1, 2 and 3 (400 users each, user seed 1). Needs ../shared/datasets/citeulike-t.

    .venv/bin/python benchmarks/onboarding.py [--split-seed N ...] [--user-seed 1] [--users 400] [--tags 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.citeulike import DATASET, load, split  # noqa: E402
from benchmarks.common import result_line  # noqa: E402
from benchmarks.quality_citeulike import REPORT_SPLITS, bootstrap  # noqa: E402
from feedbot.ranking import rank  # noqa: E402
from feedbot.ranking.textmodel import make_vectorizer  # noqa: E402

SIZE = 5


def item_tags(n_items: int) -> list[list[str]]:
    """Tag names of every item."""
    names = (DATASET / "tags.dat").read_text(encoding="utf-8").split("\n")
    tags: list[list[str]] = [[] for _ in range(n_items)]
    for tag, line in enumerate((DATASET / "tag-item.dat").read_text().splitlines()):
        for item in line.split()[1:]:
            tags[int(item)].append(names[tag])
    return tags


def evaluate(data, tags, split_seed: int, user_seed: int, n_users: int, n_tags: int) -> dict[str, np.ndarray]:
    held = split(data, seed=split_seed)
    train_items, test_items = np.flatnonzero(~held), np.flatnonzero(held)
    eligible = [u for u, lib in enumerate(data.libraries) if (~held[lib]).any() and held[lib].any()]
    users = np.random.default_rng(user_seed).choice(eligible, size=min(n_users, len(eligible)), replace=False)
    vectorizer = make_vectorizer(ngram_range=(1, 1))
    vectorizer.fit([data.texts[i] for i in train_items])
    candidates = vectorizer.transform([data.texts[i] for i in test_items]).tocsr()
    diverse = rank.starter_order(candidates, SIZE)
    typed = []
    for u in users:
        counts = Counter(t for i in data.libraries[u] if not held[i] for t in tags[i])
        typed.append([t.replace("-", " ").replace("_", " ") for t, _ in counts.most_common(n_tags)])
    vectors = vectorizer.transform([t for ts in typed for t in ts]).tocsr()
    start = np.r_[0, np.cumsum([len(ts) for ts in typed])]
    hits = {"interest": np.zeros(len(users)), "diverse": np.zeros(len(users)), "no usable tag": np.zeros(len(users))}
    for n, u in enumerate(users):
        saved = set(np.flatnonzero(np.isin(test_items, data.libraries[u])).tolist())
        interests = vectors[start[n] : start[n + 1]]
        chosen = rank.interest_starters(candidates, interests, diverse, SIZE)
        hits["interest"][n] = len(saved & set(chosen.tolist())) / SIZE
        hits["diverse"][n] = len(saved & set(diverse[:SIZE].tolist())) / SIZE
        hits["no usable tag"][n] = interests.getnnz() == 0
    print(f"split seed {split_seed}: {len(users)} users, {len(test_items):,} new papers; interest-led "
          f"{hits['interest'].mean():.3f}, diverse {hits['diverse'].mean():.3f}; "
          f"{hits['no usable tag'].mean():.1%} of users had no tag the vocabulary knows")
    return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-seed", type=int, action="append", help=f"default {REPORT_SPLITS}")
    parser.add_argument("--user-seed", type=int, default=1)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--tags", type=int, default=3, help="most frequent tags typed as interests")
    args = parser.parse_args()
    splits = args.split_seed or list(REPORT_SPLITS)
    started = time.perf_counter()
    data = load()
    tags = item_tags(len(data.texts))
    runs = [evaluate(data, tags, seed, args.user_seed, args.users, args.tags) for seed in splits]
    interest = np.concatenate([r["interest"] for r in runs])
    diverse = np.concatenate([r["diverse"] for r in runs])
    print(f"\nmean over split seeds {splits}: share of the first {SIZE} papers shown that the user saved")
    for name, values in (("interest-led starters", interest), ("diverse starters", diverse)):
        low, high = bootstrap(values)
        print(f"{name:<24}{values.mean():.4f} [{low:.4f}, {high:.4f}]")
    low, high = bootstrap(interest - diverse)
    print(f"paired difference {(interest - diverse).mean():+.4f} [{low:+.4f}, {high:+.4f}]; "
          f"ratio {interest.mean() / max(diverse.mean(), 1e-9):.1f}x; ran in {time.perf_counter() - started:.0f} s")
    print(result_line("onboarding", interest_hit=round(float(interest.mean()), 4),
                      diverse_hit=round(float(diverse.mean()), 4),
                      ratio=round(float(interest.mean() / max(diverse.mean(), 1e-9)), 2)))


if __name__ == "__main__":
    main()
