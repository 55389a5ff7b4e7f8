"""The community signal: other people's co-likes borrowed by new papers from their nearest known
papers, never the subscriber's own 👍, similarity-weighted and shrunk by the evidence behind them;
and the shared tables a `/digest` reuses while the corpus and the votes are unchanged."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sklearn.preprocessing import normalize
from sqlalchemy.orm import Session

from feedbot.ranking import rank, recommend, textmodel
from feedbot.ranking.profiles import weights_matrix
from feedbot.ranking.tables import similarities
from feedbot.store import subscribers
from tests.test_ranking import DAY, NOW, is_vision, make_subscriber, rank_for, titled
from tests.test_ranking_cases import fields_corpus, is_speech, papers_where

# --- the definition -------------------------------------------------------------------------------


def brute_force_community(others: np.ndarray, liked: np.ndarray, weights: np.ndarray, table: np.ndarray,
                          params: rank.Params) -> np.ndarray:
    """The community term written out from its definition, over other people's likes only."""
    pairs = others.T @ others  # P(i, k): other people who liked both
    likers_of = others.sum(axis=0)  # m(i): other people who liked i
    a = weights / weights.sum()
    out = np.zeros(table.shape[1])
    for c in range(table.shape[1]):
        sims = table[:-1, c].astype(np.float64)
        sims[(sims > 0.999) | (sims < params.colike_min_similarity)] = 0
        top = np.argsort(-sims, kind="stable")[: params.colike_neighbours]
        s = np.zeros_like(sims)
        s[top] = sims[top]
        mass = s @ likers_of  # the other people's likes on the neighbours
        for weight, i in zip(a, liked, strict=True):
            borrowed = sum(s[k] * pairs[i, k] for k in range(len(s)) if k != i)
            if borrowed > 0 and likers_of[i] >= params.colike_min_likers:
                out[c] += weight * borrowed / np.sqrt((likers_of[i] + params.colike_shrink)
                                                      * (mass + params.colike_shrink))
    return out * params.colike_weight


def ties_cannot_matter(table: np.ndarray, params: rank.Params) -> list[int]:
    """Candidates whose neighbour set is unambiguous (no tie at the cut)."""
    out = []
    for c in range(table.shape[1]):
        sims = np.sort(table[:-1, c])[::-1]
        k = params.colike_neighbours
        if k >= len(sims) or sims[k - 1] != sims[k]:
            out.append(c)
    return out


def small_community(seed: int, people: int, papers: int = 14, candidates: int = 8):
    rng = np.random.default_rng(seed)
    known = normalize(sp.random(papers, 12, density=0.4, format="csr", random_state=rng, dtype=np.float32))
    new = normalize(sp.random(candidates, 12, density=0.4, format="csr", random_state=rng, dtype=np.float32))
    likers = (rng.random((people, papers)) < 0.35).astype(np.float32)
    return rng, known, new, likers


def community_term(known, new, likers: np.ndarray, liked, weights, liker_row: int, params,
                   fresh: int = 0) -> np.ndarray:
    """The term as ranking computes it; with `fresh`, the tables are a snapshot taken before the
    last `fresh` known papers had any vote, grown by them afterwards (`rank.extend`)."""
    snapshot = known[: known.shape[0] - fresh]
    corpus = rank.Corpus.build(snapshot, likers=sp.csr_matrix(likers[:, : snapshot.shape[0]])
                               if likers.shape[0] else None)
    taste = rank.Taste(liked=liked, liked_weight=weights, k=new.shape[0], liker_row=liker_row)
    prepared = rank.extend(rank.prepare(corpus, new, params), known[snapshot.shape[0]:], np.zeros(fresh, np.int32))
    if prepared.colikes is None:
        return np.zeros(new.shape[0])
    likes = weights_matrix([taste], "liked", "liked_weight", known.shape[0])
    return prepared.colikes.block([taste], likes).scores()[0]


@hypothesis_settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(0, 5), st.integers(1, 6),
       st.sampled_from([0.0, 0.1, 0.3]), st.sampled_from([0.0, 1.0, 5.0]), st.integers(1, 3))
def test_the_community_term_is_other_peoples_co_likes_whatever_the_subscribers_own_likes(
        seed, people, owner, neighbours, floor, shrink, min_likers):
    """In random small communities: the term matches its definition over the others' likes, and
    no subscriber's own 👍 change it (as they are, replaced by others, or not in the matrix at all)."""
    rng, known, new, likers = small_community(seed, people)
    owner = owner % people
    liked = np.flatnonzero(likers[owner])
    if len(liked) == 0:
        return
    weights = (rng.random(len(liked)) + 0.1).astype(np.float32)
    params = rank.Params(colike_weight=1.0, colike_neighbours=neighbours, colike_min_similarity=floor,
                         colike_shrink=shrink, colike_min_likers=min_likers)
    table = similarities(known, new)
    others = likers.astype(np.float64)
    others[owner] = 0
    expected = brute_force_community(others, liked, weights, table, params)
    clear = ties_cannot_matter(table, params)
    as_is = community_term(known, new, likers, liked, weights, owner, params)
    np.testing.assert_allclose(as_is[clear], expected[clear], rtol=1e-4, atol=1e-6)
    replaced = likers.copy()
    replaced[owner] = rng.random(likers.shape[1]) < 0.5
    np.testing.assert_allclose(community_term(known, new, replaced, liked, weights, owner, params), as_is,
                               rtol=1e-5, atol=1e-7)
    absent = np.delete(likers, owner, axis=0)
    np.testing.assert_allclose(community_term(known, new, absent, liked, weights, -1, params), as_is,
                               rtol=1e-5, atol=1e-7)
    alone = np.zeros((1, likers.shape[1]), np.float32)
    alone[0, liked] = 1
    assert not community_term(known, new, alone, liked, weights, 0, params).any()


@hypothesis_settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(0, 5), st.integers(1, 6),
       st.sampled_from([0.0, 0.1, 0.3]), st.sampled_from([0.0, 1.0, 5.0]), st.integers(1, 3), st.integers(1, 4))
def test_a_stale_snapshot_with_fresh_own_votes_counts_only_other_peoples_co_likes_as_of_the_snapshot(
        seed, people, owner, neighbours, floor, shrink, min_likers, fresh):
    """Tables built before the subscriber 👍 `fresh` papers no one had voted on, grown by those
    papers afterwards: the term is the definition over the others' likes as of the snapshot (the
    fresh papers lend nothing and borrow nothing, yet weigh in the subscriber's like weights), and
    their own 👍 in the snapshot, whatever they were, change nothing."""
    rng, known, new, likers = small_community(seed, people, papers=14 + fresh)
    owner = owner % people
    snapshot = 14
    likers[:, snapshot:] = 0  # as of the snapshot, no one had voted on the fresh papers
    liked = np.concatenate([np.flatnonzero(likers[owner]), np.arange(snapshot, snapshot + fresh)])
    weights = (rng.random(len(liked)) + 0.1).astype(np.float32)
    params = rank.Params(colike_weight=1.0, colike_neighbours=neighbours, colike_min_similarity=floor,
                         colike_shrink=shrink, colike_min_likers=min_likers)
    table = similarities(known, new)
    table[snapshot:-1] = 0  # the fresh papers are no candidate's neighbours in the snapshot
    others = likers.astype(np.float64)
    others[owner] = 0
    expected = brute_force_community(others, liked, weights, table, params)
    clear = ties_cannot_matter(table, params)
    stale = community_term(known, new, likers, liked, weights, owner, params, fresh=fresh)
    np.testing.assert_allclose(stale[clear], expected[clear], rtol=1e-4, atol=1e-6)
    replaced = likers.copy()
    replaced[owner, :snapshot] = rng.random(snapshot) < 0.5
    np.testing.assert_allclose(community_term(known, new, replaced, liked, weights, owner, params, fresh=fresh),
                               stale, rtol=1e-5, atol=1e-7)
    absent = np.delete(likers, owner, axis=0)
    np.testing.assert_allclose(community_term(known, new, absent, liked, weights, -1, params, fresh=fresh),
                               stale, rtol=1e-5, atol=1e-7)


@hypothesis_settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(0, 5), st.integers(1, 4))
def test_grown_tables_score_content_as_tables_built_with_the_fresh_papers(seed, people, owner, fresh):
    """Ranking against a snapshot grown by fresh papers: each score is the content score of tables
    built afresh with those papers known (likes, topics, dislikes on them) plus the snapshot's
    community term."""
    rng, known, new, likers = small_community(seed, people, papers=14 + fresh)
    owner, snapshot = owner % people, 14
    likers[:, snapshot:] = 0
    votes = rng.permutation(known.shape[0])
    liked = np.union1d(np.flatnonzero(likers[owner]), np.arange(snapshot, snapshot + fresh))[: known.shape[0] - 2]
    disliked = np.setdiff1d(votes[:4], liked)
    weights = (rng.random(len(liked)) + 0.1).astype(np.float32)
    taste = rank.Taste(liked=liked, liked_weight=weights, disliked=disliked,
                       disliked_weight=np.ones(len(disliked), np.float32), k=new.shape[0], liker_row=owner)
    background = np.asarray(known[:snapshot].mean(axis=0)).ravel()
    topics = rng.integers(0, 3, known.shape[0])
    params = rank.Params(colike_weight=1.0, topic_min_total=1, topic_min_likes=1)
    grown = rank.extend(rank.prepare(rank.Corpus.build(known[:snapshot], topics[:snapshot], background=background,
                                                       likers=sp.csr_matrix(likers[:, :snapshot])), new, params),
                        known[snapshot:], topics[snapshot:])
    content = rank.rank([taste], rank.Corpus.build(known, topics, background=background), new, params)[0]
    term = community_term(known, new, likers, liked, weights, owner, params, fresh=fresh)
    expected = {p.column: p.score + term[p.column] for p in content}
    got = {p.column: p.score for p in rank.rank_prepared(grown, [taste])[0]}
    assert got.keys() == expected.keys()
    for column, score in got.items():
        assert score == pytest.approx(expected[column], rel=1e-4, abs=1e-5)


@hypothesis_settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(0, 5))
def test_a_score_is_the_content_score_plus_the_community_term(seed, people, owner):
    rng, known, new, likers = small_community(seed, people)
    owner = owner % people
    liked = np.flatnonzero(likers[owner])
    if len(liked) == 0:
        return
    weights = (rng.random(len(liked)) + 0.1).astype(np.float32)
    params = rank.Params(colike_weight=1.0, colike_neighbours=4, colike_min_similarity=0.05, colike_shrink=1.0)
    corpus = rank.Corpus.build(known, likers=sp.csr_matrix(likers))
    taste = rank.Taste(liked=liked, liked_weight=weights, k=new.shape[0], liker_row=owner)
    with_community = {p.column: p.score for p in rank.rank([taste], corpus, new, params)[0]}
    content = {p.column: p.score for p in rank.rank([taste], corpus, new, rank.Params(colike_weight=0.0))[0]}
    term = community_term(known, new, likers, liked, weights, owner, params)
    for column, score in with_community.items():
        assert score == pytest.approx(content[column] + term[column], rel=1e-5, abs=1e-6)


# --- honest reasons -------------------------------------------------------------------------------


def assert_community_reasons_have_evidence(picks, taste, known, new, likers, params):
    """Every "liked by people who liked X" names a paper X the subscriber liked, that someone else
    liked together with a known paper really like the pick (one of its neighbours)."""
    table = similarities(known, new)
    others = likers.copy()
    if taste.liker_row >= 0:
        others[taste.liker_row] = 0
    for pick in picks:
        if pick.reason.kind != rank.KIND_COLIKE:
            continue
        x = pick.reason.liked_row
        assert x in set(taste.liked.tolist())
        sims = table[:-1, pick.column].copy()
        sims[sims > 0.999] = 0
        near = np.argsort(-sims, kind="stable")[: params.colike_neighbours]
        near = [k for k in near if sims[k] >= params.colike_min_similarity and k != x]
        assert any((others[:, x] * others[:, k]).any() for k in near), (pick, sims[near])


@hypothesis_settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 8), st.integers(0, 7))
def test_every_community_reason_has_other_people_and_real_similarity_behind_it(seed, people, owner):
    rng, known, new, likers = small_community(seed, people, papers=20, candidates=12)
    owner = owner % people
    liked = np.flatnonzero(likers[owner])
    params = rank.Params(background=0.0, colike_weight=5.0)
    corpus = rank.Corpus.build(known, likers=sp.csr_matrix(likers))
    taste = rank.Taste(liked=liked, liked_weight=np.ones(len(liked), np.float32), k=6, liker_row=owner)
    picks = rank.rank([taste], corpus, new, params)[0]
    assert_community_reasons_have_evidence(picks, taste, known, new, likers, params)


def test_a_paper_far_from_everything_borrows_no_community():
    """Two subscribers. New papers that share only a stray word with the known papers (cosine
    0.006-0.03) get no co-likes, so none is put down to "people who liked X"."""
    rng = np.random.default_rng(4)
    vocabulary = 300
    known = np.zeros((20, vocabulary), np.float32)
    for n in range(20):  # field A: terms 0-49, field B: terms 50-99
        base = 0 if n < 10 else 50
        known[n, base + rng.choice(50, 12, replace=False)] = rng.random(12) + 0.5
    new = np.zeros((30, vocabulary), np.float32)
    for n in range(30):
        if n < 6:  # close to field A
            new[n, rng.choice(50, 12, replace=False)] = rng.random(12) + 0.5
        else:  # far: its own words, plus one faint word of field B
            new[n, 100 + rng.choice(200, 40, replace=False)] = 1.0
            new[n, 50 + rng.integers(50)] = 0.15
    known, new = normalize(sp.csr_matrix(known)), normalize(sp.csr_matrix(new))
    likers = np.zeros((2, 20), np.float32)
    likers[0, :10] = 1  # me: field A
    likers[1, :10] = 1  # the other subscriber: field A and field B
    likers[1, 10:] = 1
    nearest = (known @ new.T).toarray().max(axis=0)
    assert nearest[6:].max() < 0.05
    params = rank.Params(background=0.0)
    corpus = rank.Corpus.build(known, likers=sp.csr_matrix(likers))
    taste = rank.Taste(liked=np.arange(10), liked_weight=np.ones(10, np.float32), k=8, liker_row=0)
    picks = rank.rank([taste], corpus, new, params)[0]
    assert not [p for p in picks if p.reason.kind == rank.KIND_COLIKE and nearest[p.column] < 0.1]
    assert_community_reasons_have_evidence(picks, taste, known, new, likers, params)
    term = community_term(known, new, likers, np.arange(10), np.ones(10, np.float32), 0, params)
    assert not term[6:].any()


# --- borrowed co-likes -----------------------------------------------------------------------------


def two_field_corpus():
    """Field A papers and field B papers; the community likes A0 together with B-papers."""
    rng = np.random.default_rng(11)
    known, candidates, known_field, candidate_field = fields_corpus(rng, fields=2, per_field=40, vocabulary=200)
    a0 = int(np.flatnonzero(known_field == 0)[0])
    b_liked = np.flatnonzero(known_field == 1)[:10]
    rows, cols = [], []
    for user in range(30):  # each of them liked A0 and some B papers
        for paper in [a0, *rng.choice(b_liked, size=4, replace=False)]:
            rows.append(user)
            cols.append(paper)
    likers = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(31, known.shape[0]))
    return known, candidates, known_field, candidate_field, likers, a0


def test_a_new_paper_borrows_co_likes_from_its_known_neighbours():
    known, candidates, known_field, candidate_field, likers, a0 = two_field_corpus()
    taste = rank.Taste(liked=np.array([a0]), liked_weight=np.ones(1, np.float32), k=15)
    content = rank.rank([taste], rank.Corpus.build(known, known_field), candidates)[0]
    assert candidate_field[content[0].column] == 0
    assert all(p.reason.kind == rank.KIND_PROFILE for p in content)
    community = rank.Corpus.build(known, known_field, likers=likers)
    picks = rank.rank([taste], community, candidates, rank.Params(colike_weight=3.0))[0]
    borrowed = [p for p in picks if candidate_field[p.column] == 1]
    assert len(borrowed) >= 5
    # Field B shares no word with A0: only the community links them, and the reason says so.
    assert all(p.reason == rank.Reason(rank.KIND_COLIKE, liked_row=a0) for p in borrowed)
    best_by_content = max(p.score for p in content if candidate_field[p.column] == 1)
    assert min(p.score for p in borrowed) > best_by_content
    # A weight of zero is the content ranker exactly.
    assert rank.rank([taste], community, candidates, rank.Params(colike_weight=0.0))[0] == content


@pytest.mark.parametrize("chunk", [1, 1000])
def test_batched_pass_with_co_likes_equals_one_subscriber_at_a_time(chunk):
    from tests.test_ranking import random_tastes

    rng = np.random.default_rng(9)
    known = sp.random(200, 300, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    candidates = sp.random(60, 300, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    likers = sp.random(50, 200, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    likers.data[:] = 1
    corpus = rank.Corpus.build(known, topics=rng.integers(0, 6, 200), likers=likers,
                                  terms=np.array([f"t{i}" for i in range(300)]))
    tastes = random_tastes(rng, 200, 60, 30)
    for n, taste in enumerate(tastes[::2]):
        taste.liker_row = n  # half of them are in the community, half are not
    params = rank.Params(chunk=chunk, topic_min_total=4, colike_weight=5.0)
    starter = rank.starter_order(candidates, 8)
    batched = rank.rank(tastes, corpus, candidates, params, starter=starter)
    assert any(p.reason.kind == rank.KIND_COLIKE for ps in batched for p in ps)
    for taste, picks in zip(tastes, batched, strict=True):
        alone = rank.rank([taste], corpus, candidates, params, starter=starter)[0]
        assert [p.column for p in picks] == [p.column for p in alone]
        assert [p.reason for p in picks] == [p.reason for p in alone]


def test_why_line_names_the_community_when_it_is_the_reason(seeded, settings):
    with Session(seeded) as session, session.begin():
        anchor = titled(session, "Learning to Prompt for Vision-Language Models")[0]
        speech = papers_where(session, lambda t, a: is_speech(t, a) and not is_vision(t, a))
        fans = speech[:6]
        for n in range(20):  # others liked the vision paper together with speech papers
            make_subscriber(session, 100 + n, liked=[anchor, fans[n % len(fans)], fans[(n + 1) % len(fans)]])
        subscriber = make_subscriber(session, 1, liked=[anchor])
        model = textmodel.load(session, settings.model_dir)
        params = rank.Params(colike_weight=3.0)
        picks = recommend.recommend(session, model, [subscriber], DAY, NOW, sizes={subscriber.id: 40},
                                    params=params)[subscriber.id]
        by_community = [p for p in picks if p.kind == rank.KIND_COLIKE]
        assert by_community
        assert all(p.why == f"liked by people who liked “{anchor.title}”" for p in by_community)
        plain = recommend.recommend(session, model, [subscriber], DAY, NOW, sizes={subscriber.id: 40},
                                    params=rank.Params(colike_weight=0.0))[subscriber.id]
        assert all(p.kind != rank.KIND_COLIKE for p in plain)


def test_a_content_reason_names_a_liked_paper_that_shares_words_not_one_only_co_liked():
    """When the content is the reason, the paper named is the closest by content: a liked paper
    linked to the pick only through co-likes shares no word with it and must not be named."""
    terms = np.array(["alpha", "beta", "gamma", "delta"])
    known = normalize(sp.csr_matrix(np.array([
        [1, 0, 0, 0],  # A: only co-liked with K by others
        [0, 1, 0, 0],  # B: the pick's closest by content
        [0, 1, 1, 0],  # C
        [0, 0, 0, 1],  # K: the pick's nearest known paper, liked by others together with A
    ], np.float32)))
    candidates = normalize(sp.csr_matrix(np.array([[0, 0.6, 0, 0.8]], np.float32)))
    rows = [0, 0, 0] + [u for u in range(1, 6) for _ in range(2)]
    cols = [0, 1, 2] + [paper for _ in range(1, 6) for paper in (0, 3)]
    likers = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(6, 4))
    corpus = rank.Corpus.build(known, likers=likers, terms=terms)
    taste = rank.Taste(liked=np.array([0, 1, 2]), liked_weight=np.ones(3, np.float32), k=1, liker_row=0)
    params = rank.Params(background=0.0, use_topics=False, colike_weight=1.0, colike_neighbours=1)
    (pick,) = rank.rank([taste], corpus, candidates, params)[0]
    assert pick.reason.kind == rank.KIND_PROFILE
    assert pick.reason.liked_row == 1
    assert pick.reason.terms == ("beta",)


# --- small deployments, in the database -----------------------------------------------------------


def test_a_lone_subscribers_interests_keep_winning_after_their_likes(seeded, settings):
    """Alone, a subscriber's own 👍 are no community: the picks are the content ranker's exactly,
    and the typed interests still win picks after the first 👍."""
    with Session(seeded) as session, session.begin():
        liked = papers_where(session, is_speech, limit=2)
        subscriber = make_subscriber(session, 1, liked=liked, interests="diffusion models, robot learning")
        model = textmodel.load(session, settings.model_dir)
        args = (session, model, [subscriber], DAY, NOW)
        with_community = recommend.recommend(*args, sizes={subscriber.id: 10})[subscriber.id]
        content = recommend.recommend(*args, sizes={subscriber.id: 10}, params=rank.Params(colike_weight=0.0),
                                      cache=None)[subscriber.id]
        assert [(p.paper_id, p.score, p.why) for p in with_community] == \
            [(p.paper_id, p.score, p.why) for p in content]
        by_interest = [p for p in with_community if p.kind == rank.KIND_INTEREST]
        assert len(by_interest) >= 5
        assert not [p for p in with_community if p.kind == rank.KIND_COLIKE]


def test_two_subscribers_each_community_reason_names_a_paper_the_other_liked(seeded, settings):
    with Session(seeded) as session, session.begin():
        vision = papers_where(session, is_vision, limit=16)
        speech = papers_where(session, lambda t, a: is_speech(t, a) and not is_vision(t, a), limit=8)
        me = make_subscriber(session, 1, liked=vision[:10])
        other = make_subscriber(session, 2, liked=vision[:4] + speech)
        picks = rank_for(session, settings, [me, other], sizes={me.id: 8, other.id: 8})
        theirs = {me.id: {p.title for p in vision[:4] + speech}, other.id: {p.title for p in vision[:10]}}
        for sid, mine in picks.items():
            assert len(mine) == 8
            for pick in mine:
                if pick.kind == rank.KIND_COLIKE:
                    named = pick.why.removeprefix("liked by people who liked “").removesuffix("”")
                    assert named in theirs[sid]
        # Without the other subscriber's votes (tables built since), nothing is put down to the community.
        for paper in vision[:4] + speech:
            subscribers.vote(session, other, paper.id, 0)
        model = textmodel.load(session, settings.model_dir)
        alone = recommend.recommend(session, model, [me], DAY, NOW, sizes={me.id: 8}, cache=None)[me.id]
        assert not [p for p in alone if p.kind == rank.KIND_COLIKE]


def test_a_lone_subscriber_gets_no_community_reasons(seeded, settings):
    with Session(seeded) as session, session.begin():
        liked = papers_where(session, is_vision, limit=12)
        subscriber = make_subscriber(session, 1, liked=liked)
        picks = rank_for(session, settings, [subscriber], sizes={subscriber.id: 20})[subscriber.id]
        assert len(picks) == 20
        assert all(p.kind != rank.KIND_COLIKE and p.why.startswith("because you liked “") for p in picks)


# --- the shared tables, cached by the votes' version ----------------------------------------------


def picks_of(result):
    return {sid: [(p.paper_id, round(p.score, 5), p.why) for p in picks] for sid, picks in result.items()}


def test_every_vote_change_bumps_the_counter_in_its_own_transaction(seeded):
    with Session(seeded) as session, session.begin():
        paper_id = papers_where(session, is_vision, limit=1)[0].id
        subscriber = make_subscriber(session, 1)
        subscribers.record_shown(session, subscriber, [(paper_id, 0.0, "")], "search")
        start = subscribers.votes_version(session)
        steps = [(1, 1), (1, 2), (-1, 3), (1, 4), (0, 5), (0, 5)]  # like, clear, dislike, like, clear, nothing
        for value, bumps in steps:
            subscribers.vote(session, subscriber, paper_id, value, now=NOW)
            assert subscribers.votes_version(session) == start + bumps
    with Session(seeded) as session:
        subscribers.vote(session, subscribers.get(session, 1), paper_id, 1, now=NOW)
        session.rollback()  # a change that is not committed is not counted
    with Session(seeded) as session:
        assert subscribers.votes_version(session) == start + 5
    with Session(seeded) as session, session.begin():
        subscribers.delete_everything(session, subscribers.get(session, 1))
    with Session(seeded) as session:
        assert subscribers.votes_version(session) == start + 6


def test_cached_tables_give_the_fresh_picks_and_follow_every_vote(seeded, settings):
    cache = recommend.CommunityCache(max_lag=0)  # tables that may not lag: rebuilt on every vote
    with Session(seeded) as session, session.begin():
        vision = papers_where(session, is_vision, limit=12)
        speech = papers_where(session, lambda t, a: is_speech(t, a) and not is_vision(t, a), limit=6)
        subs = [make_subscriber(session, 1, liked=vision[:6], disliked=speech[:1]),
                make_subscriber(session, 2, liked=vision[3:9] + speech[1:4]),
                make_subscriber(session, 3, interests="speech recognition"),
                make_subscriber(session, 4)]
        model = textmodel.load(session, settings.model_dir)

        def both(who):
            cached = recommend.recommend(session, model, who, DAY, NOW, cache=cache)
            fresh = recommend.recommend(session, model, who, DAY, NOW, cache=None)
            assert picks_of(cached) == picks_of(fresh)
            return cached

        first = both(subs)
        pool = recommend.candidates(session, DAY, 2)
        tables = cache.get(session, model, pool, rank.DEFAULT_PARAMS)
        for sub in subs:  # one at a time, as /digest does: the same tables, the same picks
            assert picks_of(both([sub]))[sub.id] == picks_of(first)[sub.id]
            assert cache.get(session, model, pool, rank.DEFAULT_PARAMS) is tables
        # A vote moves the version: the next call builds new tables and ranks by the new vote.
        extra = titled(session, "Learning to Prompt for Vision-Language Models")[0]
        subscribers.record_shown(session, subs[0], [(extra.id, 0.0, "")], "search")
        subscribers.vote(session, subs[0], extra.id, 1, now=NOW)
        assert cache.get(session, model, pool, rank.DEFAULT_PARAMS) is not tables
        both(subs)
        subscribers.vote(session, subs[1], speech[1].id, -1, now=NOW)
        both([subs[1]])
        subscribers.delete_everything(session, subs[0])
        both(subs[1:])
        assert len(cache._entries) == 1  # the older versions of this pool are gone


class Clock:
    """A settable clock for the cache's lag bound."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def shown_and_voted(session, subscriber, papers, value):
    subscribers.record_shown(session, subscriber, [(p.id, 0.0, "") for p in papers], "search")
    for paper in papers:
        subscribers.vote(session, subscriber, paper.id, value, now=NOW)


@pytest.mark.parametrize("params", [rank.DEFAULT_PARAMS, rank.Params(colike_weight=0.0)])
def test_own_fresh_votes_change_the_very_next_digest_without_a_rebuild(seeded, settings, params):
    """Tables built before a subscriber's 👍/👎 are not rebuilt (the lag bound has not passed), yet
    their next picks rank by those votes: on papers no one had voted on, the 👎 paper excluded, a
    newcomer's first 👍 turning starter picks into picks like them. Without co-likes the picks are
    exactly those of tables built afresh."""
    cache = recommend.CommunityCache(clock=Clock())
    with Session(seeded) as session, session.begin():
        vision = papers_where(session, is_vision, limit=12)
        speech = papers_where(session, lambda t, a: is_speech(t, a) and not is_vision(t, a))
        fan = make_subscriber(session, 1, liked=vision[:6])
        make_subscriber(session, 2, liked=vision[3:9] + speech[:2])
        newcomer = make_subscriber(session, 3)
        model = textmodel.load(session, settings.model_dir)
        pool = recommend.candidates(session, DAY, 2)

        def digest(who):
            return recommend.recommend(session, model, [who], DAY, NOW, params=params, cache=cache)[who.id]

        before = {who.id: digest(who) for who in (fan, newcomer)}
        tables = cache.get(session, model, pool, params)
        assert all(p.kind == rank.KIND_STARTER for p in before[newcomer.id])
        fresh_likes = [p for p in speech[2:] if p.id not in tables.row_of][:3]
        assert len(fresh_likes) == 3
        shown_and_voted(session, newcomer, fresh_likes, 1)
        disliked = before[fan.id][0].paper
        shown_and_voted(session, fan, [disliked], -1)
        shown_and_voted(session, fan, fresh_likes[:1], 1)

        after = {who.id: digest(who) for who in (fan, newcomer)}
        assert cache.get(session, model, pool, params) is tables  # not rebuilt
        assert disliked.id not in {p.paper_id for p in after[fan.id]}
        liked_titles = {f"because you liked “{p.title}”" for p in fresh_likes}
        assert after[newcomer.id] and all(p.kind != rank.KIND_STARTER for p in after[newcomer.id])
        assert any(p.why.split(" · ")[0] in liked_titles for p in after[newcomer.id])
        if not params.colike_weight:
            for who in (fan, newcomer):
                rebuilt = recommend.recommend(session, model, [who], DAY, NOW, params=params, cache=None)
                assert picks_of({who.id: after[who.id]}) == picks_of(rebuilt)


def test_other_peoples_votes_show_once_the_tables_are_older_than_the_lag_bound(seeded, settings):
    """Another subscriber's vote leaves the tables (and so a subscriber's picks) as they were until
    the tables are `max_lag` old; then the next call rebuilds them and ranks as tables built afresh.
    Tables whose votes did not move are never rebuilt, however old."""
    clock = Clock()
    cache = recommend.CommunityCache(max_lag=300, clock=clock)
    with Session(seeded) as session, session.begin():
        vision = papers_where(session, is_vision, limit=12)
        subs = [make_subscriber(session, 1, liked=vision[:6]), make_subscriber(session, 2, liked=vision[3:9])]
        other = make_subscriber(session, 3, liked=vision[:3])
        model = textmodel.load(session, settings.model_dir)
        pool = recommend.candidates(session, DAY, 2)

        def digest():
            return picks_of(recommend.recommend(session, model, subs, DAY, NOW, cache=cache))

        first = digest()
        tables = cache.get(session, model, pool, rank.DEFAULT_PARAMS)
        clock.now += 10_000
        assert cache.get(session, model, pool, rank.DEFAULT_PARAMS) is tables  # the votes did not move
        built = clock.now
        shown_and_voted(session, other, vision[6:12], 1)
        clock.now = built + 299
        assert digest() == first
        assert cache.get(session, model, pool, rank.DEFAULT_PARAMS) is tables
        clock.now = built + 300
        assert digest() == picks_of(recommend.recommend(session, model, subs, DAY, NOW, cache=None))
        assert cache.get(session, model, pool, rank.DEFAULT_PARAMS) is not tables
        assert len(cache._entries) == 1


def test_digests_at_once_share_one_build_of_the_tables(seeded, settings):
    """Eight `/digest`s released together, each in its own session and thread: one set of tables."""
    import threading

    with Session(seeded) as session, session.begin():
        for n in range(8):
            make_subscriber(session, 10 + n, liked=papers_where(session, is_vision, limit=3 + n))
    cache = recommend.CommunityCache()
    barrier = threading.Barrier(8)
    got, errors = [], []

    def digest(telegram_id: int) -> None:
        try:
            with Session(seeded) as session:
                model = textmodel.load(session, settings.model_dir)
                subscriber = subscribers.get(session, telegram_id)
                pool = recommend.candidates(session, DAY, 2)
                barrier.wait()
                picks = recommend.recommend(session, model, [subscriber], DAY, NOW, cache=cache)
                assert len(picks[subscriber.id]) == subscriber.digest_size
                got.append(cache.get(session, model, pool, rank.DEFAULT_PARAMS))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=digest, args=(10 + n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(got) == 8 and all(tables is got[0] for tables in got)
    assert len(cache._entries) == 1
