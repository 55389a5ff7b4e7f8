"""Library folding: what it must still do (dated imports, why-line words) and what it does (no double count)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from feedbot.ranking import rank, recommend
from feedbot.ranking.libraries import fold_corpus
from tests.test_ranking_libraries import VOCABULARY, synthetic


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unpruned_folding_keeps_the_picks_when_imported_votes_are_dated_apart(seed):
    """Imports are dated by the entry's date added, so their decayed weights differ: the folded row
    (an unweighted mean, weighing the sum of the weights) is no longer the weighted sum of its papers."""
    corpus, tastes, candidates, is_library = synthetic(seed)
    rng = np.random.default_rng(seed)
    for t in tastes[:4]:  # library added over ~3 years, 90-day half-life
        lib = is_library[t.liked]
        t.liked_weight[lib] = (0.5 ** (rng.uniform(0, 3 * 365, lib.sum()) / 90)).astype(np.float32)
    params = rank.Params(colike_weight=0.0)
    before = rank.rank(tastes, corpus, candidates, params)
    grown, folded_tastes, _ = fold_corpus(corpus, tastes, is_library, terms=VOCABULARY)
    after = rank.rank(folded_tastes, grown, candidates, params)
    for old, new in zip(before[:4], after[:4], strict=True):
        assert [p.score for p in new] == pytest.approx([p.score for p in old], abs=1e-4)


def test_a_library_paper_given_its_own_row_by_someone_elses_new_vote_is_not_counted_twice():
    """A's library papers 10 and 11 were folded into row 5 (their mean). Since the tables were
    built, B voted on 11, so `_with_own_votes` gave 11 a row (6) for this batch. A's 11 must then
    weigh once, not once in row 6 plus once inside row 5's mean."""
    community = recommend.Community(
        voted_ids=[1, 2, 3, 4, 5, 10, 11], row_of={1: 0, 2: 1, 3: 2, 4: 3, 11: 6}, liker_row={},
        pool_vectors=sp.csr_matrix((0, 4)), prepared=None,
        folded_key=np.sort(np.array([(7 << 32) | 10, (7 << 32) | 11], np.int64)),
        folded_row=np.array([5, 5], np.int64))
    when = datetime(2026, 3, 1, tzinfo=UTC)
    own = recommend._Own(votes={7: [(1, 1, when), (10, 1, when), (11, 1, when)]}, interests={7: []},
                         interest_vectors={}, muted={7: []}, excluded={7: set()})
    subscriber = SimpleNamespace(id=7, digest_size=5)
    taste = recommend._taste(subscriber, own, community, [], when + timedelta(days=1), 90.0, None)
    rows = set(taste.liked.tolist())
    assert not ({5, 6} <= rows), f"paper 11 counted in its own row 6 and inside folded row 5: {taste.liked}"
    assert taste.n_likes == 3
