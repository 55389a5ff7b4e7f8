"""Ranking edge cases: only 👎, empty interests, large multi-field libraries, years-old likes, and
onboarding from interests (the community signal: test_ranking_community)."""

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
