"""How a subscriber's taste moved over a week, in words: the terms of their like profile a week ago
and now, and the ones that gained or faded most.

The profile is the one ranking scores with (profiles.py): the weighted mean of the liked papers'
TF-IDF vectors (each like decayed by recommend.decay), minus `background` times the corpus mean, so
words every paper uses weigh nothing. Only its positive part is read, as unit vectors, so a week
with many likes and a week with few compare alike. The votes table keeps each vote's latest state
only: "a week ago" is the likes made before then that still stand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sklearn.preprocessing import normalize
from sqlalchemy.orm import Session

from feedbot.ranking.inputs import DEFAULT_PARAMS, Taste
from feedbot.ranking.profiles import weights_matrix
from feedbot.ranking.reasons import distinct_terms
from feedbot.ranking.recommend import decay
from feedbot.ranking.textmodel import TextModel

TERMS = 5  # gained and faded, at most
MIN_CHANGE = 0.05  # of a unit profile's term weight: smaller moves are noise, not news


@dataclass(frozen=True)
class Like:
    paper_id: int
    at: datetime
    weight: float = 1.0  # a group's paper: its members' net likes (ranking.groups)


@dataclass(frozen=True)
class Drift:
    gained: list[str]
    faded: list[str]


def term_profiles(model: TextModel, session: Session, likes: list[list[Like]], at: list[datetime],
                  half_life_days: float, background: float = DEFAULT_PARAMS.background) -> np.ndarray:
    """One unit row per set of likes (decayed to its time `at`): the profile's positive term weights."""
    ids = sorted({like.paper_id for group in likes for like in group})
    vocabulary = model.vocabulary_size
    if not ids:
        return np.zeros((len(likes), vocabulary), np.float32)
    known = model.vectors_for(session, ids)
    row = {pid: n for n, pid in enumerate(ids)}
    tastes = [Taste(liked=np.array([row[like.paper_id] for like in group], np.int64),
                    liked_weight=np.array(decay(when, [like.at for like in group], half_life_days), np.float32)
                    * np.array([like.weight for like in group], np.float32))
              for group, when in zip(likes, at, strict=True)]
    coefficients = weights_matrix(tastes, "liked", "liked_weight", len(ids))
    profiles = np.asarray((coefficients @ known).todense(), np.float32)
    has_likes = coefficients.getnnz(axis=1) > 0
    profiles[has_likes] -= background * model.background[None, :]
    return normalize(np.maximum(profiles, 0.0))


def drift(model: TextModel, session: Session, before: list[Like], likes: list[Like], since: datetime,
          now: datetime, half_life_days: float, terms: int = TERMS) -> Drift:
    """The terms the profile gained and lost weight on between `since` (the likes `before`) and
    `now` (the likes now), most first."""
    if not before:  # a first week: every term is new, and "gained" would say nothing
        return Drift([], [])
    then, current = term_profiles(model, session, [before, likes], [since, now], half_life_days)
    change = current - then
    names = model.terms
    gained = [str(names[i]) for i in np.argsort(-change, kind="stable")[:4 * terms] if change[i] >= MIN_CHANGE]
    faded = [str(names[i]) for i in np.argsort(change, kind="stable")[:4 * terms] if change[i] <= -MIN_CHANGE]
    return Drift(distinct_terms(tuple(gained), terms), distinct_terms(tuple(faded), terms))


def utc(when: datetime) -> datetime:
    """SQLite hands back naive UTC."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when
