"""Imported libraries folded into a few rows per subscriber: the profiles they make are those of
the papers themselves (unpruned), each folded row names a real paper of the library, and the
subscribers with no library get exactly the picks of a corpus without the library papers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.preprocessing import normalize
from sqlalchemy import select
from sqlalchemy.orm import Session

from feedbot.ranking import rank, recommend, textmodel
from feedbot.ranking.libraries import fold, fold_corpus, prune
from feedbot.store import subscribers
from feedbot.store.models import Paper
from tests.test_ranking import DAY, NOW, is_vision, make_subscriber, titled

VOCABULARY = 200


def synthetic(seed: int, listed: int = 60, library: int = 120, people: int = 12, importers: int = 4):
    """A corpus of listed papers then library papers, people liking both, some with a library."""
    rng = np.random.default_rng(seed)
    topic_terms = rng.permuted(np.tile(np.arange(VOCABULARY), (4, 1)), axis=1)[:, :40]

    def papers(count):
        topic = rng.integers(0, 4, count)
        rows = [np.unique(np.concatenate([rng.choice(topic_terms[t], 12, replace=False),
                                          rng.integers(0, VOCABULARY, 3)])) for t in topic]
        matrix = sp.csr_matrix((rng.random(sum(map(len, rows))) + 0.2,
                                (np.repeat(np.arange(count), [len(r) for r in rows]), np.concatenate(rows))),
                               shape=(count, VOCABULARY))
        return normalize(matrix).astype(np.float32), topic

    known, topics = papers(listed + library)
    candidates, _ = papers(40)
    tastes = []
    for n in range(people):
        liked = rng.choice(listed, 6, replace=False)
        if n < importers:
            liked = np.concatenate([liked, listed + rng.choice(library, 30, replace=False)])
        disliked = np.setdiff1d(rng.choice(listed, 2, replace=False), liked)
        tastes.append(rank.Taste(liked=liked, liked_weight=np.ones(len(liked), np.float32), disliked=disliked,
                                 disliked_weight=np.ones(len(disliked), np.float32),
                                 excluded=rng.choice(40, 3, replace=False), k=5, liker_row=n))
    rows = np.repeat(np.arange(people), [len(t.liked) for t in tastes])
    likers = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, np.concatenate([t.liked for t in tastes]))),
                           shape=(people, known.shape[0]))
    corpus = rank.Corpus.build(known, topics, np.array([f"t{i}" for i in range(VOCABULARY)]), likers=likers)
    is_library = np.arange(known.shape[0]) >= listed
    return corpus, tastes, candidates, is_library


def test_prune_keeps_each_rows_largest_entries():
    rows = sp.csr_matrix(np.array([[0.1, 0.5, 0.0, 0.3], [0.2, 0.0, 0.0, 0.0], [0.4, 0.4, 0.1, 0.4]], np.float32))
    assert np.allclose(prune(rows.copy(), 2).toarray(),
                       [[0.0, 0.5, 0.0, 0.3], [0.2, 0.0, 0.0, 0.0], [0.4, 0.4, 0.0, 0.0]])


def test_a_folded_row_is_the_mean_of_its_group_and_names_its_closest_member():
    corpus, _, _, _ = synthetic(0)
    owner = np.array([0, 0, 0, 1, 1])
    paper = np.array([61, 62, 63, 61, 70])
    folded = fold(corpus.known, owner, paper, corpus.topics, terms=VOCABULARY, chunk=2)
    for g in range(len(folded.size)):
        members = paper[folded.group_of == g]
        mean = np.asarray(corpus.known[members].mean(axis=0)).ravel()
        assert np.allclose(folded.vectors[g].toarray().ravel(), mean, atol=1e-6)
        assert set(corpus.topics[members]) == {folded.topics[g]}
        assert folded.owner[g] == owner[folded.group_of == g][0]
        closeness = corpus.known[members] @ mean
        assert folded.representative[g] == members[np.argmax(closeness)]
    assert folded.size.sum() == len(paper)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unpruned_folding_gives_the_importers_the_picks_of_their_papers(seed):
    corpus, tastes, candidates, is_library = synthetic(seed)
    params = rank.Params(colike_weight=0.0)
    before = rank.rank(tastes, corpus, candidates, params)
    grown, folded_tastes, names = fold_corpus(corpus, tastes, is_library, terms=VOCABULARY)
    assert grown.known.shape[0] < corpus.known.shape[0]
    after = rank.rank(folded_tastes, grown, candidates, params)
    for old, new in zip(before, after, strict=True):
        assert [p.column for p in new] == [p.column for p in old]
        assert [p.score for p in new] == pytest.approx([p.score for p in old], abs=1e-5)
        assert [p.reason.kind for p in new] == [p.reason.kind for p in old]
    for taste, picks in zip(tastes, after, strict=True):  # every paper named is one they liked
        assert all(names[p.reason.liked_row] in set(taste.liked) for p in picks if p.reason.liked_row >= 0)
    named = {names[p.reason.liked_row] for picks in after[:4] for p in picks if p.reason.liked_row >= 0}
    assert any(is_library[named_row] for named_row in named)  # library papers are named by their folded rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_subscribers_without_a_library_get_the_picks_of_a_corpus_without_the_library_papers(seed):
    corpus, tastes, candidates, is_library = synthetic(seed)
    params = rank.DEFAULT_PARAMS
    grown, folded_tastes, names = fold_corpus(corpus, tastes, is_library)
    after = rank.rank(folded_tastes, grown, candidates, params)
    kept = np.flatnonzero(~is_library)
    new_row = np.full(len(is_library), -1)
    new_row[kept] = np.arange(len(kept))
    without = rank.Corpus(corpus.known[kept], corpus.topics[kept], corpus.background, corpus.terms,
                          corpus.likers.tocsc()[:, kept].tocsr())
    plain = [rank.Taste(liked=new_row[t.liked[~is_library[t.liked]]],
                        liked_weight=t.liked_weight[~is_library[t.liked]], disliked=new_row[t.disliked],
                        disliked_weight=t.disliked_weight, excluded=t.excluded, k=t.k, liker_row=t.liker_row)
             for t in tastes]
    reference = rank.rank(plain, without, candidates, params)
    for n in range(4, len(tastes)):  # no library: the same picks, scores and reasons
        assert [(p.column, p.score, p.reason.kind, p.reason.terms) for p in after[n]] == \
            [(p.column, p.score, p.reason.kind, p.reason.terms) for p in reference[n]]
        assert [names[p.reason.liked_row] for p in after[n]] == [kept[p.reason.liked_row] for p in reference[n]]


LIBRARY = [("Vision transformers for image segmentation", "We segment images with a vision transformer and "
            "pixel-level visual attention."),
           ("Video understanding with multimodal pretraining", "Visual and text pretraining for video clips, "
            "image captions and multimodal retrieval."),
           ("Contrastive image-text models", "CLIP-style contrastive training aligns image and caption "
            "embeddings for zero-shot visual recognition."),
           ("Diffusion models for image editing", "Editing images and video frames with diffusion, guided by "
            "visual prompts.")]


def imported_library(session, subscriber) -> list[str]:
    """Papers known only from this subscriber's library (never listed), each a 👍 of theirs."""
    titles = []
    for n, (title, abstract) in enumerate(LIBRARY):
        paper = Paper(key=f"library:{n}", title=title, abstract=abstract, first_listed=None)
        session.add(paper)
        session.flush()
        subscribers.record_shown(session, subscriber, [(paper.id, 0.0, "")], "search")
        subscribers.vote(session, subscriber, paper.id, 1, now=NOW)
        titles.append(title)
    session.flush()
    return titles


def test_a_folded_library_still_leads_the_digest_and_its_why_line_names_a_library_paper(seeded, settings):
    with Session(seeded) as session, session.begin():
        importer = make_subscriber(session, 1)
        titles = imported_library(session, importer)
        model = textmodel.load(session, settings.model_dir)
        community = recommend.build_community(session, model, recommend.candidates(session, DAY, 2),
                                              rank.DEFAULT_PARAMS)
        assert not set(community.row_of) & {p.id for p in session.scalars(select(Paper).where(
            Paper.first_listed.is_(None)))}  # the library papers have no row of their own
        picks = recommend.recommend(session, model, [importer], DAY, NOW, cache=None)[importer.id]
        assert len(picks) == 5
        assert sum(is_vision(p.paper.title, p.paper.abstract) for p in picks) >= 4, [p.paper.title for p in picks]
        assert any(p.why.startswith("because you liked “") for p in picks)
        named = [p.why.split("“")[1].split("”")[0] for p in picks if p.why.startswith("because you liked")]
        assert named and set(named) <= set(titles)


def test_a_subscriber_without_a_library_gets_the_same_picks_when_a_co_liker_imports_one(seeded, settings):
    """Library papers are no one's co-like neighbours and lend no co-likes: a co-liker's import
    leaves the picks, scores and why-lines of a subscriber with no library as they were."""
    with Session(seeded) as session, session.begin():
        liked = titled(session, "Learning to Prompt for Vision-Language Models", "CLIP with Quality Captions")
        tapper = make_subscriber(session, 2, liked=liked)
        importer = make_subscriber(session, 1, liked=liked)
        model = textmodel.load(session, settings.model_dir)
        sizes = {tapper.id: 30}
        before = recommend.recommend(session, model, [tapper], DAY, NOW, sizes=sizes, cache=None)[tapper.id]
        imported_library(session, importer)
        after = recommend.recommend(session, model, [tapper], DAY, NOW, sizes=sizes, cache=None)[tapper.id]
        assert [(p.paper_id, p.score, p.why) for p in after] == [(p.paper_id, p.score, p.why) for p in before]


def test_a_why_line_names_the_library_paper_most_like_the_pick_and_quotes_its_own_words(seeded, settings):
    """A pick a folded library row explains names the paper of that row most like it, and the words
    it quotes are that paper's (the row's mean holds words of other papers too)."""
    with Session(seeded) as session, session.begin():
        importer = make_subscriber(session, 1)
        imported_library(session, importer)
        model = textmodel.load(session, settings.model_dir)
        library = {p.title: p for p in session.scalars(select(Paper).where(Paper.first_listed.is_(None)))}
        picks = recommend.recommend(session, model, [importer], DAY, NOW, cache=None)[importer.id]
        checked = 0
        for pick in picks:
            if not pick.why.startswith("because you liked “"):
                continue
            named = library[pick.why.split("“")[1].split("”")[0]]
            own_words = set(model.terms[model.vectors_for(session, [named.id]).indices])
            quoted = pick.why.split(" · ")[1].split(", ") if " · " in pick.why else []
            assert quoted and set(quoted) <= own_words, (pick.why, sorted(own_words)[:20])
            papers = list(library.values())  # the row: the library's papers of the named one's topic
            vectors = model.vectors_for(session, [p.id for p in papers])
            topics = model.topics_for(vectors)
            row = topics == topics[papers.index(named)]
            likeness = (vectors @ model.vectors_for(session, [pick.paper.id]).T).toarray().ravel()
            assert likeness[row].max() == pytest.approx(likeness[papers.index(named)])
            checked += 1
        assert checked


def test_library_papers_in_two_libraries_keep_a_row_of_their_own_and_lend_co_likes(seeded, settings):
    """A paper in several libraries is folded for no one: it has its own row, the most liked of
    them first up to a cap, and its likers count in the co-likes like any 👍."""
    with Session(seeded) as session, session.begin():
        first, second = make_subscriber(session, 1), make_subscriber(session, 2)
        imported_library(session, first)
        library = list(session.scalars(select(Paper).where(Paper.first_listed.is_(None)).order_by(Paper.id)))
        for paper in library[:3]:  # the second's library shares three papers with the first's
            subscribers.record_shown(session, second, [(paper.id, 0.0, "")], "search")
            subscribers.vote(session, second, paper.id, 1, now=NOW)
        session.flush()
        model = textmodel.load(session, settings.model_dir)
        pool = recommend.candidates(session, DAY, 2)
        community = recommend.build_community(session, model, pool, rank.DEFAULT_PARAMS)
        shared = {p.id for p in library[:3]}
        assert shared <= set(community.row_of) and not {p.id for p in library[3:]} & set(community.row_of)
        likers = community.prepared.corpus.likers
        for paper in shared:
            assert likers[:, community.row_of[paper]].nnz == 2
        votes = recommend.MIRROR.current(session)[1]
        folded = recommend._library_papers(session, votes, shared_rows=2)
        assert len(shared - set(folded.tolist())) == 2 and {p.id for p in library[3:]} <= set(folded.tolist())


def test_votes_half_lives_apart_fold_into_finite_rows():
    """Weights are taken from each row's largest: a row whose papers are all thousands of
    half-lives older than the owner's newest vote is still their mean, not 0/0."""
    library = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0], [0, 0.6, 0.8]], np.float32))
    folded = fold(library, np.zeros(3), np.arange(3), np.array([0, 1, 1]),
                  log2_weight=np.array([0.0, -5000.0, -5001.0]))
    assert np.isfinite(folded.vectors.data).all()
    old = folded.vectors[folded.topics == 1].toarray().ravel()
    assert old == pytest.approx((2 * library[1] + library[2]).toarray().ravel() / 3)
