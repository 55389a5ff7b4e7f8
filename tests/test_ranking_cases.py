"""Ranking edge cases and the community signal: only 👎, empty interests, large multi-field
libraries, years-old likes, co-likes borrowed by new papers, and onboarding from interests."""

from datetime import timedelta

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sklearn.preprocessing import normalize
from sqlalchemy import select
from sqlalchemy.orm import Session

from feedbot.ranking import rank, recommend, textmodel
from feedbot.ranking.colikes import colike_table
from feedbot.ranking.tables import similarities
from feedbot.store import subscribers
from feedbot.store.models import Interest, Paper
from tests.test_ranking import DAY, NOW, is_vision, make_subscriber, rank_for, titled

SPEECH_WORDS = ("speech", "audio", "asr", "spoken", "acoustic")


def is_speech(title: str, abstract: str) -> bool:
    text = f"{title} {abstract}".casefold()
    return any(word in text for word in SPEECH_WORDS)


def papers_where(session, predicate, limit=None):
    rows = session.scalars(select(Paper).order_by(Paper.id)).all()
    found = [p for p in rows if predicate(p.title, p.abstract)]
    return found[:limit] if limit else found


# --- only 👎 ------------------------------------------------------------------------------------


def test_only_dislikes_get_picks_away_from_what_they_disliked(seeded, settings):
    with Session(seeded) as session, session.begin():
        disliked = papers_where(session, is_vision, limit=8)
        newcomer = make_subscriber(session, 1)
        grumpy = make_subscriber(session, 2, disliked=disliked)
        picks = rank_for(session, settings, [newcomer, grumpy])
        model = textmodel.load(session, settings.model_dir)
        pool = recommend.candidates(session, DAY, settings.candidate_days)
        vectors = rank.expand(model.vectors_for(session, [c.id for c in pool]), model.vectors)  # as ranked
        centroid = normalize(np.asarray(model.vectors_for(session, [p.id for p in disliked]).mean(axis=0)))
        closeness = dict(zip([c.id for c in pool], np.asarray(vectors @ centroid.T).ravel(), strict=True))
        median = float(np.median(list(closeness.values())))

        chosen = picks[grumpy.id]
        assert len(chosen) == 5
        assert all(closeness[p.paper_id] <= median for p in chosen)
        assert not {p.paper_id for p in chosen} & {p.id for p in disliked}
        assert all(p.kind == rank.KIND_AVOID and "away from the papers you 👎" in p.why for p in chosen)
        # The plain starter set did contain papers like the disliked ones: the 👎 changed the picks.
        assert any(closeness[p.paper_id] > median for p in picks[newcomer.id])


def test_only_dislikes_in_the_batched_pass_match_one_at_a_time():
    rng = np.random.default_rng(3)
    known = sp.random(50, 40, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    candidates = sp.random(30, 40, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    corpus = rank.Corpus.build(known)
    tastes = [rank.Taste(disliked=rng.choice(50, size=3, replace=False), disliked_weight=np.ones(3, np.float32),
                            excluded=rng.choice(30, size=4, replace=False), k=6) for _ in range(5)]
    order = rank.starter_order(candidates, 6)
    together = rank.rank(tastes, corpus, candidates, starter=order)
    for taste, picks in zip(tastes, together, strict=True):
        assert picks == rank.rank([taste], corpus, candidates, starter=order)[0]
        assert len(picks) == 6 and not {p.column for p in picks} & set(taste.excluded.tolist())
        closeness = np.asarray(candidates @ normalize(np.asarray(known[taste.disliked].mean(axis=0))).T).ravel()
        assert max(closeness[p.column] for p in picks) <= np.median(closeness)


# --- empty interest vectors ---------------------------------------------------------------------


def store_interest(session, subscriber, text):
    """Written straight to the table, as an interest stored before a refit could be."""
    session.add(Interest(subscriber_id=subscriber.id, text=text))
    session.flush()


def test_an_interest_with_an_empty_vector_is_never_a_profile(seeded, settings):
    with Session(seeded) as session, session.begin():
        only_empty = make_subscriber(session, 1)
        store_interest(session, only_empty, "the of and")
        mixed = make_subscriber(session, 2)
        store_interest(session, mixed, "the of and")
        store_interest(session, mixed, "speech recognition")
        picks = rank_for(session, settings, [only_empty, mixed])
        assert [p.kind for p in picks[only_empty.id]] == [rank.KIND_STARTER] * 5
        assert all(p.why.startswith("matches your interest “speech recognition”") for p in picks[mixed.id])
        assert all(is_speech(p.paper.title, p.paper.abstract) for p in picks[mixed.id])
        assert not any("the of and" in p.why for ps in picks.values() for p in ps)


def test_empty_interest_rows_are_ignored_by_the_ranker():
    rng = np.random.default_rng(4)
    candidates = normalize(sp.random(20, 30, density=0.3, format="csr", random_state=rng, dtype=np.float32))
    corpus = rank.Corpus.build(sp.random(10, 30, density=0.3, format="csr", random_state=rng, dtype=np.float32))
    real = normalize(sp.random(1, 30, density=0.3, format="csr", random_state=rng, dtype=np.float32))
    empty = sp.csr_matrix((1, 30), dtype=np.float32)
    with_empty = rank.rank([rank.Taste(interests=sp.vstack([empty, real, empty], format="csr"))],
                              corpus, candidates)[0]
    alone = rank.rank([rank.Taste(interests=real)], corpus, candidates)[0]
    assert [p.column for p in with_empty] == [p.column for p in alone]
    assert all(p.reason.kind == rank.KIND_INTEREST and p.reason.interest == 1 for p in with_empty)
    nothing = rank.Taste(interests=sp.vstack([empty, empty], format="csr"))
    assert nothing.cold
    assert [p.reason.kind for p in rank.rank([nothing], corpus, candidates)[0]] == [rank.KIND_STARTER] * 5


# --- hundreds of likes over several fields, and years-old likes ---------------------------------


def fields_corpus(rng, fields=4, per_field=150, vocabulary=400):
    """Papers from disjoint vocabularies, one block of words per field (the last field: nobody's)."""
    width = vocabulary // fields

    def papers(count, field):
        cols = rng.integers(field * width, (field + 1) * width, size=(count, 12))
        rows = np.repeat(np.arange(count), 12)
        return normalize(sp.csr_matrix((rng.random(count * 12) + 0.1, (rows, cols.ravel())),
                                       shape=(count, vocabulary), dtype=np.float32))

    known = sp.vstack([papers(per_field, f) for f in range(fields)], format="csr")
    candidates = sp.vstack([papers(10, f) for f in range(fields)], format="csr")
    return known, candidates, np.repeat(np.arange(fields), per_field), np.repeat(np.arange(fields), 10)


def test_hundreds_of_likes_across_fields_get_every_field_and_nothing_else():
    rng = np.random.default_rng(7)
    known, candidates, known_field, candidate_field = fields_corpus(rng)
    # 260 likes: a main field and two minor ones holding a fifth or more each (a topic vector apiece).
    liked = np.concatenate([np.flatnonzero(known_field == 0)[:140], np.flatnonzero(known_field == 1)[:60],
                            np.flatnonzero(known_field == 2)[:60]])
    taste = rank.Taste(liked=liked, liked_weight=np.ones(len(liked), np.float32), k=12)
    picks = rank.rank([taste], rank.Corpus.build(known, known_field), candidates)[0]
    fields = [int(candidate_field[p.column]) for p in picks]
    assert set(fields) == {0, 1, 2}  # the minor fields are not drowned by the main one
    assert rank.KIND_TOPIC in {p.reason.kind for p in picks}
    for p in picks:
        assert known_field[p.reason.liked_row] == candidate_field[p.column]  # the named paper is of its field


def test_hundreds_of_likes_in_the_database(seeded, settings):
    with Session(seeded) as session, session.begin():
        vision = papers_where(session, is_vision)
        speech = papers_where(session, lambda t, a: is_speech(t, a) and not is_vision(t, a))
        liked = vision[: len(vision) - 20] + speech[: len(speech) - 5]
        assert len(liked) >= 100
        subscriber = make_subscriber(session, 1, liked=liked)
        picks = rank_for(session, settings, [subscriber], sizes={subscriber.id: 20})[subscriber.id]
        assert len(picks) == 20
        assert not {p.paper_id for p in picks} & {p.id for p in liked}
        assert any(is_speech(p.paper.title, p.paper.abstract) and not is_vision(p.paper.title, p.paper.abstract)
                   for p in picks)
        assert all(p.why.startswith("because you liked “") for p in picks), [p.why for p in picks]


@pytest.mark.parametrize("years", [3, 40])
def test_likes_many_years_old_still_make_the_profile(seeded, settings, years):
    with Session(seeded) as session, session.begin():
        liked = titled(session, "Learning to Prompt for Vision-Language Models",
                       "An Efficient General-Purpose Modular Vision Model", "CLIP with Quality Captions")
        subscriber = make_subscriber(session, 1)
        subscribers.record_shown(session, subscriber, [(p.id, 0.0, "") for p in liked], "search")
        for paper in liked:
            subscribers.vote(session, subscriber, paper.id, 1, now=NOW - timedelta(days=365 * years))
        picks = rank_for(session, settings, [subscriber])[subscriber.id]
        assert len(picks) == 5
        assert all(np.isfinite(p.score) for p in picks)
        assert all(is_vision(p.paper.title, p.paper.abstract) for p in picks), [p.paper.title for p in picks]
        assert all(p.why.startswith("because you liked “") for p in picks)


def test_recent_likes_outweigh_years_old_ones(seeded, settings):
    with Session(seeded) as session, session.begin():
        old = papers_where(session, lambda t, a: is_speech(t, a) and not is_vision(t, a), limit=4)
        new = titled(session, "Learning to Prompt for Vision-Language Models", "CLIP with Quality Captions")
        subscriber = make_subscriber(session, 1)
        subscribers.record_shown(session, subscriber, [(p.id, 0.0, "") for p in old + new], "search")
        for paper in old:
            subscribers.vote(session, subscriber, paper.id, 1, now=NOW - timedelta(days=365 * 5))
        for paper in new:
            subscribers.vote(session, subscriber, paper.id, 1, now=NOW)
        picks = rank_for(session, settings, [subscriber])[subscriber.id]
        assert all(is_vision(p.paper.title, p.paper.abstract) for p in picks), [p.paper.title for p in picks]


# --- co-likes ------------------------------------------------------------------------------------


def brute_force_colikes(likers, table, neighbours):
    """The definition, written out: the co-like cosine matrix formed whole."""
    dense = likers.toarray().astype(np.float64)
    counts = dense.sum(axis=0)
    norms = np.sqrt(np.maximum(counts, 1))
    cosine = (dense.T @ dense) / np.outer(norms, norms)
    out = np.zeros(table.shape)
    for c in range(table.shape[1]):
        sims = np.where((counts > 0) & (table[:-1, c] <= 0.999), table[:-1, c], -1)
        k = min(neighbours, int((counts > 0).sum()))
        top = np.argsort(-sims, kind="stable")[:k]
        weights = np.maximum(sims[top], 0)
        if weights.sum():
            out[:-1, c] = cosine[:, top] @ (weights / weights.sum())
    return out


@hypothesis_settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_colike_table_matches_the_definition(seed, neighbours):
    rng = np.random.default_rng(seed)
    known = normalize(sp.random(15, 12, density=0.4, format="csr", random_state=rng, dtype=np.float32))
    candidates = normalize(sp.random(7, 12, density=0.4, format="csr", random_state=rng, dtype=np.float32))
    likers = sp.random(9, 15, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    likers.data[:] = 1
    table = similarities(known, candidates)
    colikes = colike_table(likers, table, neighbours, 1.0)
    if likers.nnz == 0:
        assert colikes is None
        return
    fast = colikes.table
    # Ties among equally similar neighbours may be broken either way: compare where they cannot matter.
    expected = brute_force_colikes(likers, table, neighbours)
    sims = np.where(np.asarray(likers.sum(axis=0)).ravel()[:, None] > 0, table[:-1], -1)
    unique = [c for c in range(7) if len(np.unique(sims[:, c])) == len(sims[:, c])]
    np.testing.assert_allclose(fast[:, unique], expected[:, unique], rtol=1e-4, atol=1e-6)
    assert not fast[-1].any()


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
    assert min(p.score for p in borrowed) > best_by_content + 1.0
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


# --- onboarding from interests ------------------------------------------------------------------


def test_onboarding_starters_follow_the_typed_interests(seeded, settings):
    with Session(seeded) as session, session.begin():
        typed = make_subscriber(session, 1, interests="speech recognition")
        silent = make_subscriber(session, 2)
        model = textmodel.load(session, settings.model_dir)
        pool = recommend.candidates(session, DAY, 7)
        chosen = recommend.starters(session, model, typed, pool, 5)
        assert len(chosen) == len({c.id for c in chosen}) == 5
        assert sum(is_speech(c.title, c.abstract) for c in chosen[:4]) == 4
        assert not is_speech(chosen[4].title, chosen[4].abstract)  # one from elsewhere, to correct a wrong guess
        diverse = recommend.starters(session, model, silent, pool, 5)
        vectors = model.vectors_for(session, [c.id for c in pool])
        assert [c.id for c in diverse] == [pool[i].id for i in rank.starter_order(vectors, 5)[:5]]


@hypothesis_settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 9), st.integers(0, 3), st.integers(1, 30))
def test_interest_starters_are_distinct_and_lead_with_the_closest(seed, size, n_interests, n_candidates):
    rng = np.random.default_rng(seed)
    candidates = normalize(sp.random(n_candidates, 25, density=0.3, format="csr", random_state=rng,
                                     dtype=np.float32))
    interests = sp.random(n_interests, 25, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    order = rng.permutation(n_candidates)
    chosen = rank.interest_starters(candidates, interests, order, size)
    assert len(chosen) == len(set(chosen.tolist())) == min(size, n_candidates)
    usable = np.flatnonzero(interests.getnnz(axis=1) > 0)
    if len(usable) == 0:
        assert chosen.tolist() == order[:size].tolist()
        return
    similarity = np.asarray((candidates @ normalize(interests[usable]).T).todense())
    first = int(chosen[0])
    best = similarity[:, 0].max()
    if best > 0:
        assert similarity[first, 0] == pytest.approx(best)


def test_onboarding_in_telegram_offers_papers_on_the_typed_interests(bot, telegram, seeded):
    from tests.test_bot import talk

    talk(telegram, "/start")
    _, starter, _ = talk(telegram, "speech recognition", expect=3)
    ids = [int(row[0]["callback_data"].split(":")[1]) for row in starter.buttons]
    with Session(seeded) as session:
        shown = [session.get(Paper, i) for i in ids]
    assert len(shown) == 5
    assert sum(is_speech(p.title, p.abstract) for p in shown) >= 4
    assert not all(is_speech(p.title, p.abstract) for p in shown)  # one from elsewhere


@hypothesis_settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 8))
def test_scores_are_cosine_plus_weighted_co_likes_and_only_others_are_named(seed, owner):
    """Score = cosine(profile, candidate) + weight x co-likes (everyone's, the owner's too); a pick
    is put down to the community only when other people's co-likes alone outweigh the content."""
    rng = np.random.default_rng(seed)
    known = normalize(sp.random(15, 12, density=0.4, format="csr", random_state=rng, dtype=np.float32))
    candidates = normalize(sp.random(7, 12, density=0.4, format="csr", random_state=rng, dtype=np.float32))
    likers = sp.random(9, 15, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    likers.data[:] = 1
    liked = np.flatnonzero(likers[owner].toarray().ravel())
    if len(liked) == 0:
        return
    weights = (rng.random(len(liked)) + 0.1).astype(np.float32)
    params = rank.Params(background=0.0, use_topics=False, colike_weight=1.0, colike_neighbours=4)
    corpus = rank.Corpus.build(known, likers=likers)
    taste = rank.Taste(liked=liked, liked_weight=weights, k=7, liker_row=owner)
    picks = rank.rank([taste], corpus, candidates, params)[0]

    table = similarities(known, candidates)
    dense = likers.toarray().astype(np.float64)
    norms = np.sqrt(np.maximum(dense.sum(axis=0), 1))
    cosine = (dense.T @ dense) / np.outer(norms, norms)
    others = dense.copy()
    others[owner] = 0
    others_cosine = (others.T @ others) / np.outer(norms, norms)
    np.fill_diagonal(others_cosine, 0)
    neighbours = colike_table(likers, table, 4, 1.0).neighbours.toarray()
    u = weights / weights.sum()
    profile = u @ known[liked].toarray()
    expected = (u @ table[liked] + u @ (cosine[liked] @ neighbours)) / np.linalg.norm(profile)
    community = u @ (others_cosine[liked] @ neighbours)
    content = u @ table[liked]
    for pick in picks:
        assert pick.score == pytest.approx(expected[pick.column], rel=1e-4, abs=1e-5)
        c = pick.column
        if abs(community[c] - max(content[c], 1e-4)) > 1e-4:  # clear cases only
            assert (pick.reason.kind == rank.KIND_COLIKE) == (community[c] > max(content[c], 1e-4))


def test_a_lone_subscriber_gets_no_community_reasons(seeded, settings):
    with Session(seeded) as session, session.begin():
        liked = papers_where(session, is_vision, limit=12)
        subscriber = make_subscriber(session, 1, liked=liked)
        picks = rank_for(session, settings, [subscriber], sizes={subscriber.id: 20})[subscriber.id]
        assert len(picks) == 20
        assert all(p.kind != rank.KIND_COLIKE and p.why.startswith("because you liked “") for p in picks)


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
