"""A group's taste from its members' votes: one signed weight per paper, so a paper most members
liked outweighs one liked by a single member. One member's 👎 takes only a little off another
member's 👍 (a group's pick serves whoever likes it), while a paper members only disliked still
steers the group's picks away from it."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

# Chosen on seed 0 of the group-digest benchmark (benchmarks/group_sim.py --variants), not by taste:
# likes - 0.1 dislikes led plain likes - dislikes by 2.7 % in hit_any; powers other than 1 did worse.
DISLIKE_WEIGHT = 0.1
POWER = 1.0


def member_weights(votes: Iterable[tuple[int, int]], *, dislike_weight: float = DISLIKE_WEIGHT,
                   power: float = POWER) -> dict[int, float]:
    """Paper -> signed weight from (paper, value) pairs, one per member's vote (+1 or -1): the
    likes minus `dislike_weight` times the dislikes, raised (keeping its sign) to `power`. Papers
    the members cancel out on are left out. The order of the votes does not matter."""
    likes: dict[int, int] = defaultdict(int)
    dislikes: dict[int, int] = defaultdict(int)
    for paper, value in votes:
        (likes if value > 0 else dislikes)[paper] += 1
    weights = {}
    for paper in likes.keys() | dislikes.keys():
        net = likes[paper] - dislike_weight * dislikes[paper]
        weight = math.copysign(abs(net) ** power, net)
        if weight:  # (a tiny net can underflow to 0 under the power)
            weights[paper] = weight
    return weights
