"""A group's or channel's taste as ranking reads it: its members' votes, turned into one signed
weight per paper (`groups.member_weights`), each dated by the paper's latest member vote."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from feedbot.ranking.groups import member_weights
from feedbot.store import groups


def group_votes(session: Session, subscriber_ids: list[int]) -> dict[int, list[tuple[int, float, datetime]]]:
    """(paper, signed weight, when) per group or channel among these subscribers, in one read."""
    out = {}
    for sid, votes in groups.member_votes(session, subscriber_ids).items():
        latest: dict[int, datetime] = {}
        for pid, _, when in votes:
            latest[pid] = max(latest.get(pid, when), when)
        weights = member_weights((pid, value) for pid, value, _ in votes)
        out[sid] = [(pid, weight, latest[pid]) for pid, weight in sorted(weights.items()) if weight]
    return out
