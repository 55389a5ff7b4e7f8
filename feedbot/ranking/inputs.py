"""What the ranker takes and gives: its parameters, one subscriber's taste, the corpus, and a
scored pick with its reason. Plain data, shared by every part of the pass."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

KIND_PROFILE, KIND_TOPIC, KIND_INTEREST, KIND_STARTER = "liked", "topic", "interest", "starter"
KIND_COLIKE, KIND_AVOID = "colike", "avoid"


@dataclass(frozen=True)
class Params:
    background: float = 2.0  # weight of the corpus mean subtracted from vote profiles
    dislike_penalty: float = 0.5  # times the similarity to the disliked centroid
    # The penalty starts at half strength and grows to full over this many likes: early 👎 often
    # land in the subscriber's own field, and a full centroid penalty then pushes the field away.
    dislike_ramp: int = 30
    topic_min_likes: int = 2  # a topic gets its own vector from this many likes
    topic_min_share: float = 0.2  # ... holding at least this share of all likes
    max_topics: int = 3
    use_topics: bool = True
    topic_min_total: int = 20  # ... once there are this many likes in all (small libraries: one centroid)
    topic_weight: float = 0.9  # topic vectors are narrower, so their cosines run higher: damp them
    # Other people's co-likes (see colikes.py); weight, shrink and floor tuned on split 0 of CiteULike-t.
    colike_weight: float = 0.6  # weight of the community term against the content cosine
    colike_neighbours: int = 20  # known papers a new paper borrows co-likes from, at most ...
    colike_min_similarity: float = 0.1  # ... each at least this alike by content
    colike_shrink: float = 20.0  # pulls the co-like cosine towards 0 while few people stand behind it
    colike_min_likers: int = 1  # a liked paper lends co-likes once this many other people liked it
    chunk: int = 3000  # subscribers per block of the batched product
    threads: int = 0  # blocks ranked at once (0: one per core)


DEFAULT_PARAMS = Params()


@dataclass
class Taste:
    """One subscriber's inputs; rows index the `known` matrix, columns the candidates."""

    liked: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    liked_weight: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    disliked: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    disliked_weight: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    interests: sp.csr_matrix | None = None  # one L2-normalised row per typed interest
    excluded: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    k: int = 5
    liker_row: int = -1  # this subscriber's row in `Corpus.likers`: their own 👍 are no one else's
    liked_count: np.ndarray | None = None  # likes each liked row stands for (a folded library row: many)

    @property
    def n_likes(self) -> int:
        """How many papers they liked, folded ones counted one by one."""
        return len(self.liked) if self.liked_count is None else int(np.sum(self.liked_count))

    @property
    def usable_interests(self) -> np.ndarray:
        """Indices of interests whose vector is not empty (all-stop-word text matches nothing)."""
        if self.interests is None or self.interests.shape[0] == 0:
            return np.empty(0, np.int64)
        return np.flatnonzero(np.diff(self.interests.tocsr().indptr) > 0)

    @property
    def cold(self) -> bool:
        """Nothing to rank by: no likes and no usable interest (dislikes alone are handled apart)."""
        return len(self.liked) == 0 and len(self.usable_interests) == 0


@dataclass(frozen=True)
class Reason:
    """Why a paper was picked: the vector that matched best, and the words it shares with it."""

    kind: str
    liked_row: int = -1  # row in `known` of the closest liked paper (kinds liked/topic)
    interest: int = -1  # index of the typed interest (kind interest)
    terms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scored:
    """A candidate column as the batched pass ranked it for one subscriber (recommend turns it into a Pick)."""

    column: int  # candidate column
    score: float
    reason: Reason


@dataclass
class Corpus:
    """What ranking needs to know about the corpus, all derived from the fitted text model."""

    known: sp.csr_matrix  # L2-normalised vectors of papers that can have votes
    topics: np.ndarray  # topic of each known row
    background: np.ndarray  # mean of the known vectors (dense, vocabulary-sized)
    terms: np.ndarray | None = None  # vocabulary, for explanations
    likers: sp.csr_matrix | None = None  # every subscriber x known paper, 1 per 👍 (the community)
    folded: np.ndarray | None = None  # rows standing for a folded library (`libraries`): no one's neighbours

    @classmethod
    def build(cls, known: sp.csr_matrix, topics: np.ndarray | None = None,
              terms: np.ndarray | None = None, background: np.ndarray | None = None,
              likers: sp.csr_matrix | None = None, folded: np.ndarray | None = None) -> Corpus:
        """A corpus whose background is the mean of `known` unless given."""
        known = known.tocsr().astype(np.float32)
        if background is None:
            background = np.asarray(known.mean(axis=0)).ravel()
        if topics is None:
            topics = np.zeros(known.shape[0], dtype=np.int32)
        return cls(known, np.asarray(topics), np.asarray(background, dtype=np.float32), terms, likers, folded)
