"""A group's taste from its members' votes: one signed weight per paper, so a paper most members
liked outweighs one liked by a single member, and a paper the members split on counts for little."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable


def member_weights(votes: Iterable[tuple[int, int]]) -> dict[int, float]:
    """Paper -> signed weight from (paper, value) pairs, one per member's vote (+1 or -1): the net
    count of likes over dislikes. Papers the members cancel out on are left out."""
    net: dict[int, float] = defaultdict(float)
    for paper, value in votes:
        net[paper] += 1.0 if value > 0 else -1.0
    return {paper: weight for paper, weight in net.items() if weight != 0}
