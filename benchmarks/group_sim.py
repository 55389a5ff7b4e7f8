"""Group digests: simulated CiteULike-t reading groups get 5 picks a day for 30 days.

A group is 3-8 users whose libraries overlap: each member saved at least two papers carrying the
group's tag, and the tag (underscores and dashes read as spaces) is the group's typed interest.
20 % of the items (drawn by the seed, as in benchmarks/citeulike.py) are the new papers, released
in 30 daily batches; the rest are old papers. Each member starts with up to 20 papers of their
library among the old ones as 👍 (an imported library). Every day feedbot.ranking.rank picks 5 of
that day's papers for the group (TF-IDF profiles, candidates expanded as in production; no
co-likes, so only the group's own votes and interest count), and every member votes on them:

- 👍 when the paper is in their library (their held-out part: the only new papers it holds);
- 👎 when it shares no tag with any paper of their starting library (clearly off their topics);
- no vote otherwise (near their field but not saved: people skip such papers rather than 👎).

Three rankers see the same group side by side, each with its own history of votes:
"group" (every member's votes combined by feedbot.ranking.groups.member_weights), "one member"
(only one member's votes, drawn by the seed: everyone else's are ignored) and "interests" (the
typed interest alone, no votes). hit_any is the share of picks at least one member liked;
members_served the share of members who liked at least one pick in a week (the four full weeks).
member_weights is tuned on seed 0 only (`--variants` compares formulas there); the report is
seeds 1, 2 and 3 with a paired bootstrap interval (over groups) of group / one member hit_any.

    nice -n 19 .venv/bin/python benchmarks/group_sim.py [--split-seed N ...] [--groups 1000] [--variants]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from sklearn.preprocessing import normalize  # noqa: E402

from benchmarks.citeulike import DATASET, item_tags, load, missing, split  # noqa: E402
from benchmarks.common import result_line  # noqa: E402
from benchmarks.feedback_sim import REPORT_SEEDS, TUNING_SEED  # noqa: E402
from benchmarks.quality_citeulike import paired_ratio  # noqa: E402
from feedbot.ranking import rank  # noqa: E402
from feedbot.ranking.groups import member_weights  # noqa: E402
from feedbot.ranking.textmodel import fit_topics, make_vectorizer  # noqa: E402

PICKS = 5
STARTING_LIKES = 20  # papers of a member's library they start with as 👍
MIN_SIZE, MAX_SIZE = 3, 8
PARAMS = replace(rank.Params(), colike_weight=0.0)
Weights = Callable[[list[tuple[int, int]]], dict[int, float]]
VARIANTS: dict[str, Weights] = {
    "net": partial(member_weights, dislike_weight=1.0, power=1.0),
    "net, power 0.5": partial(member_weights, dislike_weight=1.0, power=0.5),
    "net, power 2": partial(member_weights, dislike_weight=1.0, power=2.0),
    "likes - 0.5 dislikes": partial(member_weights, dislike_weight=0.5, power=1.0),
    "likes - 0.25 dislikes": partial(member_weights, dislike_weight=0.25, power=1.0),
    "likes - 0.1 dislikes": partial(member_weights, dislike_weight=0.1, power=1.0),
    "likes only": partial(member_weights, dislike_weight=0.0, power=1.0),
    "likes - 0.25 dislikes, power 0.75": partial(member_weights, dislike_weight=0.25, power=0.75),
    "likes - 0.25 dislikes, power 1.5": partial(member_weights, dislike_weight=0.25, power=1.5),
}


@dataclass
class Model:
    """The text model of the whole corpus, fitted once (as the worker fits every paper)."""

    vectors: sp.csr_matrix
    corpus: rank.Corpus
    vectorizer: object


@dataclass
class Group:
    members: list[int]
    interest: sp.csr_matrix  # the tag as a typed interest (one L2-normalised row)
    tag: str
    one: int  # the member whose votes alone the "one member" ranker sees


@dataclass
class Arm:
    """One ranker's view of one group: its votes so far (member, item, ±1) and what it showed."""

    size: int  # members in the group
    starting: int  # votes it started with (the members' libraries)
    votes: list[tuple[int, int, int]] = field(default_factory=list)
    hits: list[int] = field(default_factory=list)  # per pick: liked by at least one member
    served: list[set[int]] = field(default_factory=list)  # per day: the members who liked a pick


def fit_model(texts: list[str]) -> Model:
    vectorizer = make_vectorizer(ngram_range=(1, 1))  # bag-of-words input: word order is lost
    vectors = vectorizer.fit_transform(texts).tocsr().astype(np.float32)
    topics, _ = fit_topics(vectors)
    return Model(vectors, rank.Corpus.build(vectors, topics, vectorizer.get_feature_names_out()), vectorizer)


def form_groups(data, tags: tuple[list[str], list[np.ndarray]], model: Model, held: np.ndarray,
                n_groups: int, rng: np.random.Generator, min_library: int) -> list[Group]:
    """Up to `n_groups` groups, one per tag (drawn by `rng`) shared by enough users: members saved
    at least two papers with the tag, have old papers to start from and new ones to like."""
    names, of_item = tags
    users_of: dict[int, list[int]] = {}
    for u, library in enumerate(data.libraries):
        if len(library) < min_library or held[library].all() or not held[library].any():
            continue
        found, counts = np.unique(np.concatenate([of_item[i] for i in library]), return_counts=True)
        for tag in found[counts >= 2].tolist():
            users_of.setdefault(tag, []).append(u)
    shared = sorted(t for t, users in users_of.items() if len(users) >= MAX_SIZE)
    groups = []
    for tag in rng.permutation(shared).tolist():
        text = names[tag].replace("_", " ").replace("-", " ")
        interest = normalize(model.vectorizer.transform([text]).astype(np.float32))
        if interest.nnz == 0:  # no word of the tag is in the vocabulary: not a usable interest
            continue
        size = int(rng.integers(MIN_SIZE, MAX_SIZE + 1))
        members = sorted(rng.choice(users_of[tag], size=size, replace=False).tolist())
        groups.append(Group(members, interest.tocsr(), names[tag], int(rng.choice(members))))
        if len(groups) == n_groups:
            break
    return groups


def taste(weights: dict[int, float], interest: sp.csr_matrix | None = None) -> rank.Taste:
    """A group's rank.Taste: positive weights are its likes, negative ones its dislikes."""
    liked = sorted(p for p, w in weights.items() if w > 0)
    disliked = sorted(p for p, w in weights.items() if w < 0)
    return rank.Taste(liked=np.array(liked, np.int64), liked_weight=np.array([weights[p] for p in liked], np.float32),
                      disliked=np.array(disliked, np.int64),
                      disliked_weight=np.array([-weights[p] for p in disliked], np.float32),
                      interests=interest, k=PICKS)


def simulate(data, tags, model: Model, seed: int, n_groups: int, n_days: int, min_library: int,
             variants: dict[str, Weights]) -> dict[str, list[Arm]]:
    """One run: new papers, groups, starting likes and release order drawn by `seed`. Returns each
    ranker's arms (one per group, in group order)."""
    rng = np.random.default_rng(seed)
    held = split(data, seed=seed)
    groups = form_groups(data, tags, model, held, n_groups, rng, min_library)
    new_of = {u: set(data.libraries[u][held[data.libraries[u]]].tolist()) for g in groups for u in g.members}
    start_of, topics_of = {}, {}
    for u in new_of:
        old = data.libraries[u][~held[data.libraries[u]]]
        start_of[u] = rng.choice(old, size=min(STARTING_LIKES, len(old)), replace=False).tolist()
        topics_of[u] = set(np.concatenate([tags[1][i] for i in start_of[u]]).tolist())
    batches = np.array_split(rng.permutation(np.flatnonzero(held)), n_days)
    print(f"seed {seed}: {len(groups)} groups of {MIN_SIZE}-{MAX_SIZE} (mean "
          f"{np.mean([len(g.members) for g in groups]):.1f} members), {int(held.sum()):,} new papers over "
          f"{n_days} days (~{len(batches[0])}/day)", flush=True)

    rankers = [*variants, "one member", "interests"]
    arms = {}
    for name in rankers:
        starting = [[(u, i, 1) for u in g.members if name != "one member" or u == g.one for i in start_of[u]]
                    for g in groups]
        arms[name] = [Arm(len(g.members), len(votes), votes) for g, votes in zip(groups, starting, strict=True)]
    for d, batch in enumerate(batches):
        candidates = rank.expand(model.vectors[batch], model.vectors)
        prepared = rank.prepare(model.corpus, candidates, PARAMS)
        tastes = []
        for name in rankers:
            weigh = variants.get(name, member_weights)
            for arm, g in zip(arms[name], groups, strict=True):
                votes = [] if name == "interests" else [(i, v) for _, i, v in arm.votes]
                tastes.append(taste(weigh(votes), g.interest))
        picks = iter(rank.rank_prepared(prepared, tastes))
        for name in rankers:
            for arm, g in zip(arms[name], groups, strict=True):
                shown = [int(batch[s.column]) for s in next(picks)]
                likers = [{u for u in g.members if i in new_of[u]} for i in shown]
                arm.hits += [bool(who) for who in likers]
                arm.served.append(set().union(*likers))
                for u in g.members if name != "one member" else [g.one]:
                    for i, who in zip(shown, likers, strict=True):
                        if u in who:
                            arm.votes.append((u, i, 1))
                        elif not topics_of[u] & set(tags[1][i].tolist()):
                            arm.votes.append((u, i, -1))
        if (d + 1) % 10 == 0 or d + 1 == n_days:
            print(f"  day {d + 1:>2}: " + "  ".join(f"{n} {hit_any(arms[n]).mean():.3f}" for n in rankers), flush=True)
    return arms


def hit_any(arms: list[Arm]) -> np.ndarray:
    """Per group: the share of its picks at least one member liked."""
    return np.array([np.mean(a.hits) if a.hits else 0.0 for a in arms])


def members_served(arms: list[Arm]) -> np.ndarray:
    """Per group: the mean over full weeks of the share of members who liked a pick that week."""
    out = []
    for arm in arms:
        weeks = [set().union(*arm.served[w : w + 7]) for w in range(0, len(arm.served) - 6, 7)]
        out.append(np.mean([len(w) / arm.size for w in weeks]) if weeks else 0.0)
    return np.array(out)


def report(runs: list[dict[str, list[Arm]]], names: list[str], against: str = "one member") -> None:
    """hit_any, members_served, the votes cast on picks (those the ranker sees) and the paired ratio
    of hit_any to `against`."""
    print(f"\n{'ranker':<34}{'hit_any':>9}{'members_served':>16}{'👍/group':>10}{'👎/group':>10}"
          f"{f'vs {against}':>26}")
    for name in names:
        ratio, low, high = paired_ratio([hit_any(r[name]) for r in runs], [hit_any(r[against]) for r in runs])
        likes, dislikes = (np.mean([np.mean([sum(v == sign for *_, v in a.votes[a.starting:]) for a in r[name]])
                                    for r in runs]) for sign in (1, -1))
        print(f"{name:<34}{np.mean([hit_any(r[name]).mean() for r in runs]):>9.3f}"
              f"{np.mean([members_served(r[name]).mean() for r in runs]):>16.3f}{likes:>10.1f}{dislikes:>10.1f}"
              f"{f'{ratio:.3f} [{low:.3f}, {high:.3f}]':>26}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-seed", type=int, action="append",
                        help=f"seed of new papers, groups, starting likes and release order (repeatable; "
                             f"default {REPORT_SEEDS}; {TUNING_SEED} is the one member_weights was tuned on)")
    parser.add_argument("--groups", type=int, default=1000, help="groups per seed (one per tag)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--min-library", type=int, default=20, help="smallest library a member has")
    parser.add_argument("--variants", action="store_true",
                        help=f"compare member_weights formulas on seed {TUNING_SEED} (the tuning seed)")
    parser.add_argument("--dataset", type=Path, default=DATASET, help="the citeulike-t folder")
    args = parser.parse_args()
    if (why := missing(args.dataset)) is not None:
        print(f"{why}; nothing to measure")
        return
    seeds = [TUNING_SEED] if args.variants else args.split_seed or list(REPORT_SEEDS)
    if TUNING_SEED in seeds and not args.variants:
        print(f"note: seed {TUNING_SEED} is the tuning seed; its figures are not a fair report")
    variants = VARIANTS if args.variants else {"group": member_weights}
    started = time.perf_counter()
    data, tags = load(args.dataset), item_tags(args.dataset)
    model = fit_model(data.texts)
    print(f"text model: {model.vectors.shape[0]:,} papers, {model.vectors.shape[1]:,} terms "
          f"({time.perf_counter() - started:.0f} s)")
    runs = [simulate(data, tags, model, seed, args.groups, args.days, args.min_library, variants) for seed in seeds]
    print(f"\nseeds {'+'.join(map(str, seeds))}: mean over seeds of the mean over groups; "
          "ratio to one member with a paired bootstrap 95 % interval over groups")
    report(runs, [*variants, "one member", "interests"])
    if args.variants:
        report(runs, list(variants), against="net")
    print(f"ran in {time.perf_counter() - started:.0f} s")
    if args.variants:
        return
    ratio, low, high = paired_ratio([hit_any(r["group"]) for r in runs], [hit_any(r["one member"]) for r in runs])
    print(result_line("group", **{name: round(float(np.mean([metric(r[arm]).mean() for r in runs])), 3)
                                  for name, metric, arm in (("hit_any", hit_any, "group"),
                                                            ("hit_any_one_member", hit_any, "one member"),
                                                            ("hit_any_interests", hit_any, "interests"),
                                                            ("members_served", members_served, "group"))},
                      ratio=f"{ratio:.3f}", ratio_low=f"{low:.3f}", ratio_high=f"{high:.3f}",
                      splits="+".join(map(str, seeds))))


if __name__ == "__main__":
    main()
