"""Ranking on the example dumps: votes, dislikes, interests, exclusions, cold start, batching."""

from datetime import UTC, date, datetime

import numpy as np
import pytest
import scipy.sparse as sp
from sqlalchemy import select
from sqlalchemy.orm import Session

from feedbot.ranking import rank, recommend, textmodel
from feedbot.store import subscribers
from feedbot.store.models import Paper

DAY = date(2026, 3, 12)
NOW = datetime(2026, 3, 12, 8, 0, tzinfo=UTC)
VISION_WORDS = ("vision", "visual", "image", "video", "pixel", "clip", "multimodal", "multi-modal")


def is_vision(paper_title: str, abstract: str) -> bool:
    text = f"{paper_title} {abstract}".casefold()
    return any(word in text for word in VISION_WORDS)


def make_subscriber(session, telegram_id, liked=(), disliked=(), interests="", mutes=()):
    subscriber, _ = subscribers.subscribe(session, telegram_id, telegram_id, f"user{telegram_id}")
    papers = list(liked) + list(disliked)
    subscribers.record_shown(session, subscriber, [(p.id, 0.0, "") for p in papers], "search")
    for paper in liked:
        subscribers.vote(session, subscriber, paper.id, 1, now=NOW)
    for paper in disliked:
        subscribers.vote(session, subscriber, paper.id, -1, now=NOW)
    if interests:
        subscribers.add_interests(session, subscriber, interests)
    for word in mutes:
        subscribers.mute(session, subscriber, word)
    session.flush()
    return subscriber


def rank_for(session, settings, subs, sizes=None):
    model = textmodel.load(session, settings.model_dir)
    return recommend.recommend(session, model, subs, DAY, NOW, sizes=sizes)


def titled(session, *fragments):
    return [session.scalar(select(Paper).where(Paper.title.contains(f))) for f in fragments]


def test_vision_fan_gets_vision_papers_with_a_liked_paper_named(seeded, settings):
    with Session(seeded) as session, session.begin():
        liked = titled(session, "Learning to Prompt for Vision-Language Models",
                       "An Efficient General-Purpose Modular Vision Model",
                       "CLIP with Quality Captions")
        subscriber = make_subscriber(session, 1, liked=liked)
        picks = rank_for(session, settings, [subscriber])[subscriber.id]
        assert len(picks) == 5
        assert all(is_vision(p.paper.title, p.paper.abstract) for p in picks), [p.paper.title for p in picks]
        liked_titles = {p.title for p in liked}
        assert all(p.why.startswith("because you liked “") for p in picks)
        assert all(any(t in p.why for t in liked_titles) for p in picks)
        assert not {p.paper_id for p in picks} & {p.id for p in liked}


def test_dislike_lowers_similar_papers(seeded, settings):
    with Session(seeded) as session, session.begin():
        liked = titled(session, "Learning to Prompt for Vision-Language Models")
        disliked = titled(session, "DPL: Decoupled Prompt Learning for Vision-Language Models")
        before = make_subscriber(session, 1, liked=liked)
        after = make_subscriber(session, 2, liked=liked, disliked=disliked)
        picks = rank_for(session, settings, [before, after], sizes={before.id: 60, after.id: 60})
        score_before = {p.paper.title: p.score for p in picks[before.id]}
        score_after = {p.paper.title: p.score for p in picks[after.id]}
        similar = "Mixture of Prompt Learning for Vision Language Models"
        assert score_after[similar] < score_before[similar] - 0.05
        # The drop follows similarity to the disliked paper: the pick least like it drops least.
        drops = {t: score_before[t] - score_after[t] for t in score_before if t in score_after}
        assert drops[similar] > 3 * min(drops.values())
        rank_before = [p.paper.title for p in picks[before.id]].index(similar)
        rank_after = [p.paper.title for p in picks[after.id]].index(similar)
        assert rank_after >= rank_before


def test_typed_interest_alone_ranks_matching_papers_first(seeded, settings):
    with Session(seeded) as session, session.begin():
        subscriber = make_subscriber(session, 1, interests="speech recognition")
        picks = rank_for(session, settings, [subscriber])[subscriber.id]
        assert all("speech" in (p.paper.title + p.paper.abstract).casefold() for p in picks), \
            [p.paper.title for p in picks]
        assert all(p.why.startswith("matches your interest “speech recognition”") for p in picks)


def test_shown_paper_never_picked_again_even_after_refit(seeded, settings, example_dumps, tmp_path):
    with Session(seeded) as session, session.begin():
        subscriber = make_subscriber(session, 1, interests="speech recognition")
        first = rank_for(session, settings, [subscriber])[subscriber.id]
        subscribers.record_shown(session, subscriber, [(p.paper_id, p.score, p.why) for p in first], "digest")
    (tmp_path / "extra.txt").write_bytes(b"new\n\nMar 12\n\nSpeech recognition for whales\n\nSpeech.\n")
    from feedbot.sources.ingest import ingest_paths

    ingest_paths(seeded, [tmp_path / "extra.txt"], stamp=DAY)
    with Session(seeded) as session, session.begin():
        _, refitted = textmodel.ensure(session, settings.model_dir)
        assert refitted
        subscriber = subscribers.get(session, 1)
        second = rank_for(session, settings, [subscriber], sizes={subscriber.id: 100})[subscriber.id]
        assert not {p.paper_id for p in first} & {p.paper_id for p in second}
        assert "Speech recognition for whales" in [p.paper.title for p in second[:5]]


def test_muted_word_excludes(seeded, settings):
    with Session(seeded) as session, session.begin():
        subscriber = make_subscriber(session, 1, interests="speech recognition", mutes=["whisper"])
        picks = rank_for(session, settings, [subscriber], sizes={subscriber.id: 40})[subscriber.id]
        assert picks
        assert not any("whisper" in (p.paper.title + " " + p.paper.abstract).casefold() for p in picks)


def test_newcomer_gets_a_labelled_starter_set(seeded, settings):
    with Session(seeded) as session, session.begin():
        subscriber = make_subscriber(session, 1)
        picks = rank_for(session, settings, [subscriber])[subscriber.id]
        assert len(picks) == 5
        assert all(p.kind == rank.KIND_STARTER and p.why.startswith("starter pick") for p in picks)
        assert len({p.paper_id for p in picks}) == 5


def test_no_candidates_gives_no_picks_not_an_error(seeded, settings):
    with Session(seeded) as session, session.begin():
        subscriber = make_subscriber(session, 1, interests="graphs")
        model = textmodel.load(session, settings.model_dir)
        assert recommend.recommend(session, model, [subscriber], date(2026, 3, 1), NOW) == {subscriber.id: []}


def test_model_not_refitted_when_corpus_unchanged(seeded, settings):
    path = next(settings.model_dir.glob("*.joblib"))
    stamp = path.stat().st_mtime_ns
    with Session(seeded) as session:
        model, refitted = textmodel.ensure(session, settings.model_dir)
    assert not refitted
    assert path.stat().st_mtime_ns == stamp
    assert len(model.paper_ids) == 354


def random_tastes(rng, n_known, n_cand, count):
    tastes = []
    for _ in range(count):
        liked = rng.choice(n_known, size=rng.integers(0, 12), replace=False)
        disliked = rng.choice(n_known, size=rng.integers(0, 4), replace=False)
        interests = sp.random(rng.integers(0, 3), 300, density=0.05, format="csr", random_state=rng) \
            if rng.random() < 0.5 else None
        tastes.append(rank.Taste(
            liked=liked, liked_weight=rng.random(len(liked)).astype(np.float32) + 0.1,
            disliked=disliked, disliked_weight=np.ones(len(disliked), np.float32),
            interests=interests, excluded=rng.choice(n_cand, size=rng.integers(0, 10), replace=False),
            k=int(rng.integers(1, 8)),
        ))
    return tastes


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_batched_pass_equals_one_subscriber_at_a_time(chunk):
    rng = np.random.default_rng(5)
    known = sp.random(200, 300, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    candidates = sp.random(60, 300, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    corpus = rank.Corpus.build(known, topics=rng.integers(0, 6, 200), terms=np.array([f"t{i}" for i in range(300)]))
    tastes = random_tastes(rng, 200, 60, 40)
    params = rank.Params(chunk=chunk, topic_min_total=4)
    starter = rank.starter_order(candidates, 8)
    batched = rank.rank(tastes, corpus, candidates, params, starter=starter)
    for taste, picks in zip(tastes, batched, strict=True):
        alone = rank.rank([taste], corpus, candidates, params, starter=starter)[0]
        assert [p.column for p in picks] == [p.column for p in alone]
        assert [p.reason for p in picks] == [p.reason for p in alone]
        np.testing.assert_allclose([p.score for p in picks], [p.score for p in alone], rtol=1e-5)
        assert not set(p.column for p in picks) & set(taste.excluded.tolist())
        assert len(picks) == min(taste.k, 60 - len(taste.excluded))
