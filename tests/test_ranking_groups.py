"""A group's taste from its members' votes (feedbot.ranking.groups.member_weights), and a group
ranked from it."""

import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.group_sim import taste
from feedbot.ranking import rank
from feedbot.ranking.groups import member_weights
from tests.conftest import ROOT
from tests.test_ranking_cases import fields_corpus

LIKE, DISLIKE = 1, -1
votes_lists = st.lists(st.tuples(st.integers(0, 12), st.sampled_from([LIKE, DISLIKE])), max_size=60)
dislike_weights = st.floats(0, 3)
powers = st.floats(0.1, 3)


def test_a_paper_most_members_liked_outweighs_one_liked_by_one():
    weights = member_weights([(1, LIKE), (1, LIKE), (1, LIKE), (2, LIKE), (3, LIKE), (3, DISLIKE)])
    assert weights[1] > weights[2] > weights[3] > 0  # another member's 👎 takes a little off a 👍


def test_a_paper_only_disliked_gets_a_negative_weight():
    weights = member_weights([(5, DISLIKE), (5, DISLIKE), (6, DISLIKE)])
    assert weights.keys() == {5, 6} and weights[5] < weights[6] < 0


def test_with_dislikes_weighing_as_much_as_likes_a_split_paper_is_left_out():
    assert member_weights([(3, LIKE), (3, DISLIKE), (4, LIKE)], dislike_weight=1.0) == {4: 1.0}


def test_no_votes_no_weights():
    assert member_weights([]) == {}


@given(votes_lists, dislike_weights, powers)
def test_weights_are_finite_and_only_for_voted_papers(votes, dislike_weight, power):
    weights = member_weights(votes, dislike_weight=dislike_weight, power=power)
    assert all(math.isfinite(w) and w != 0 for w in weights.values())
    assert set(weights) <= {paper for paper, _ in votes}


@given(st.lists(votes_lists, min_size=1, max_size=8), st.randoms(use_true_random=False), dislike_weights, powers)
def test_the_order_of_members_and_of_their_votes_does_not_matter(members, random, dislike_weight, power):
    in_order = [vote for member in members for vote in member]
    shuffled = list(members)
    random.shuffle(shuffled)
    mixed = [vote for member in shuffled for vote in member]
    random.shuffle(mixed)
    first = member_weights(in_order, dislike_weight=dislike_weight, power=power)
    second = member_weights(mixed, dislike_weight=dislike_weight, power=power)
    assert first.keys() == second.keys()
    assert all(math.isclose(first[p], second[p]) for p in first)


@given(votes_lists, st.integers(0, 12), dislike_weights, powers)
def test_one_more_like_never_lowers_a_paper(votes, paper, dislike_weight, power):
    before = member_weights(votes, dislike_weight=dislike_weight, power=power).get(paper, 0.0)
    after = member_weights([*votes, (paper, LIKE)], dislike_weight=dislike_weight, power=power).get(paper, 0.0)
    assert after > before


def test_a_group_gets_the_field_most_members_like_first():
    rng = np.random.default_rng(3)
    known, candidates, known_field, candidate_field = fields_corpus(rng, fields=3, per_field=40)
    corpus = rank.Corpus.build(known, known_field)
    field_0, field_1 = np.flatnonzero(known_field == 0)[:8], np.flatnonzero(known_field == 1)[:8]
    # Three members liked the same eight papers of field 0; one of them also liked eight of field 1.
    group = [(int(p), LIKE) for _ in range(3) for p in field_0] + [(int(p), LIKE) for p in field_1]
    once_each = [(int(p), LIKE) for p in (*field_0, *field_1)]
    fields = {}
    for name, votes in (("group", group), ("once each", once_each)):
        picks = rank.rank([replace(taste(member_weights(votes)), k=10)], corpus, candidates)[0]
        fields[name] = [int(candidate_field[p.column]) for p in picks]
    assert fields["group"][:6] == [0] * 6
    assert 2 not in fields["group"]  # nobody's field
    assert fields["group"].count(0) > fields["once each"].count(0)


def write_tiny_citeulike(folder, fields=("alpha", "beta", "gamma"), per_field=30, users_per_field=10):
    """A CiteULike-t shaped dataset: each field's papers use its own words and carry its tag, and
    each user saved papers of one field."""
    rng = np.random.default_rng(0)
    words = [f"{f}{n}" if n else f for f in fields for n in range(10)]
    mult, tag_items, users = [], [[] for _ in fields], []
    for f in range(len(fields)):
        for _ in range(per_field):
            counts = np.bincount(rng.integers(f * 10, f * 10 + 10, 15), minlength=len(words))
            mult.append(" ".join([str(np.count_nonzero(counts))] + [f"{w}:{c}" for w, c in enumerate(counts) if c]))
            tag_items[f].append(len(mult) - 1)
        for _ in range(users_per_field):
            library = rng.choice(tag_items[f], size=20, replace=False)
            users.append(" ".join(map(str, [len(library), *library])))
    (folder / "mult.dat").write_text("\n".join(mult) + "\n")
    (folder / "vocabulary.dat").write_text("\n".join(words) + "\n")
    (folder / "users.dat").write_text("\n".join(users) + "\n")
    (folder / "tags.dat").write_text("\n".join(fields) + "\n")
    (folder / "tag-item.dat").write_text("\n".join(" ".join(map(str, [len(t), *t])) for t in tag_items) + "\n")


def run_group_sim(*args):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "group_sim.py"), *args], capture_output=True,
                          text=True, timeout=300)


def test_group_sim_runs_end_to_end_on_a_tiny_dataset(tmp_path):
    write_tiny_citeulike(tmp_path)
    result = run_group_sim("--dataset", str(tmp_path), "--split-seed", "1", "--groups", "3", "--days", "7",
                           "--min-library", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "seed 1: 3 groups" in result.stdout
    [line] = [line for line in result.stdout.splitlines() if line.startswith("RESULT group ")]
    values = dict(part.split("=") for part in line.split()[2:])
    assert values["splits"] == "1"
    assert 0 < float(values["hit_any"]) <= 1 and 0 < float(values["members_served"]) <= 1


def test_group_sim_says_so_and_exits_0_without_the_dataset(tmp_path):
    result = run_group_sim("--dataset", str(tmp_path / "nowhere"))
    assert result.returncode == 0, result.stderr
    assert "CiteULike-t not found" in result.stdout and "nothing to measure" in result.stdout
