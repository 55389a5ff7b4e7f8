"""Imported libraries folded into a few rows per subscriber: the profiles they make are those of
the papers themselves (unpruned), each folded row names a real paper of the library, and the
subscribers with no library get exactly the picks of a corpus without the library papers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import hypothesis
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from sklearn.preprocessing import normalize
from sqlalchemy import select
from sqlalchemy.orm import Session

from feedbot.library import jobs
from feedbot.ranking import libraries, rank, recommend, textmodel
from feedbot.ranking.libraries import fold, fold_corpus, prune
from feedbot.store import subscribers
from feedbot.store.models import Import, Paper, Vote
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


@pytest.mark.parametrize("seed", [0, 1])
def test_library_vectors_read_from_elsewhere_fold_as_the_corpus_rows_do(seed):
    """A worker reads the library papers' vectors from its database, only those it folds: the
    corpus's rows for them may be empty, and the result is the same, bit for bit."""
    corpus, tastes, _, is_library = synthetic(seed)
    disliked = np.flatnonzero(is_library)[len(np.flatnonzero(is_library)) // 2]  # 👎'd: it keeps its own row
    tastes[-1] = replace(tastes[-1], disliked=np.append(tastes[-1].disliked, disliked),
                         disliked_weight=np.append(tastes[-1].disliked_weight, np.float32(1)))
    grown, folded_tastes, names = fold_corpus(corpus, tastes, is_library)
    assert disliked in names and grown.known[np.flatnonzero(names == disliked)[0]].nnz
    emptied = corpus.known.multiply((~is_library)[:, None]).tocsr().astype(np.float32)
    emptied.eliminate_zeros()
    asked = []

    def vectors_of(rows: np.ndarray) -> sp.csr_matrix:
        asked.append(rows)
        return corpus.known[rows]

    elsewhere = rank.Corpus(emptied, corpus.topics, corpus.background, corpus.terms, corpus.likers)
    grown2, folded2, names2 = fold_corpus(elsewhere, tastes, is_library, vectors_of=vectors_of)
    assert is_library[np.concatenate(asked)].all() and disliked in np.concatenate(asked)  # library papers only
    n_kept = int((~grown2.folded).sum())
    assert (grown2.known[:n_kept] != corpus.known[names2[:n_kept]]).nnz == 0  # each kept row its own paper's
    assert grown2.known.dtype == np.float32
    assert (grown2.known != grown.known).nnz == 0 and np.array_equal(names2, names)
    for a, b in zip(folded_tastes, folded2, strict=True):
        assert np.array_equal(a.liked, b.liked) and np.array_equal(a.liked_weight, b.liked_weight)


def test_a_disliked_library_paper_between_listed_ones_keeps_its_own_vector_read_from_elsewhere():
    rng = np.random.default_rng(3)
    known = normalize(sp.random(7, 12, density=0.5, format="csr", random_state=rng, dtype=np.float32))
    is_library = np.array([False, True, False, True, False, True, False])
    emptied = sp.csr_matrix(known.multiply((~is_library)[:, None]), dtype=np.float32)
    emptied.eliminate_zeros()
    tastes = [rank.Taste(liked=np.array([1, 3, 5, 2]), liked_weight=np.ones(4, np.float32)),
              rank.Taste(liked=np.array([0]), liked_weight=np.ones(1, np.float32), disliked=np.array([3]),
                         disliked_weight=np.ones(1, np.float32))]
    corpus = rank.Corpus.build(emptied, np.zeros(7, np.int32), background=np.zeros(12, np.float32))
    grown, _, names = fold_corpus(corpus, tastes, is_library, vectors_of=lambda rows: known[rows].astype(np.float64))
    assert names[:5].tolist() == [0, 2, 3, 4, 6]  # the 👎'd library paper keeps its row, between listed ones
    assert (grown.known[:5] != known[names[:5]]).nnz == 0 and grown.known.dtype == np.float32


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


def test_candidates_are_lengthened_with_listed_papers_only_even_once_the_model_knows_the_library(seeded):
    """Document expansion reads the listed papers: after a refit that takes the library papers in,
    the candidates are what the listings alone make of them, not what someone's import adds."""
    with Session(seeded) as session, session.begin():
        importer = make_subscriber(session, 1)
        imported_library(session, importer)
        model = textmodel.fit(session)  # the library papers are fitted papers now
        pool = recommend.candidates(session, DAY, 2)
        community = recommend.build_community(session, model, pool, rank.DEFAULT_PARAMS)
        listed_ids = list(session.scalars(select(Paper.id).where(Paper.first_listed.is_not(None))))
        listed = np.isin(model.paper_ids, listed_ids)
        assert 0 < listed.sum() < len(listed)
        pool_vectors = model.vectors_for(session, [c.id for c in pool])
        by_listed = rank.expand(pool_vectors, model.vectors[listed]).toarray()
        by_all = rank.expand(pool_vectors, model.vectors).toarray()
        assert np.abs(by_listed - by_all).max() > 1e-3  # the library would have changed them
        assert np.allclose(community.prepared.candidates.toarray(), by_listed, atol=1e-6)


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
        unlisted = np.array(sorted(p.id for p in library), np.int64)
        folded = recommend._library_papers(votes, unlisted, shared_rows=2)
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


def test_each_pick_names_the_member_of_its_row_most_like_it_that_is_still_liked():
    """Subscriber 7's library is folded into rows 3 and 4, subscriber 8's into row 5. Every pick a
    folded row explains names, of that row's papers its subscriber still 👍, the one most like the
    pick (the lowest id among equals): never a paper since 👎 or removed, never another row's."""
    rng = np.random.default_rng(5)
    vectors = normalize(sp.random(40, VOCABULARY, density=0.08, format="csr", random_state=rng,
                                  dtype=np.float32))  # papers 100-139
    rows = {7: {3: range(100, 112), 4: range(112, 125)}, 8: {5: range(125, 140)}}
    keys = [((sid << 32) | p, row) for sid, by_row in rows.items() for row, papers in by_row.items() for p in papers]
    keys.sort()
    pool = normalize(sp.vstack([vectors[[1, 3, 15, 20, 30]], sp.random(3, VOCABULARY, density=0.08, format="csr",
                                                                       random_state=rng, dtype=np.float32)]))
    known = sp.vstack([normalize(sp.random(3, VOCABULARY, density=0.08, format="csr", random_state=rng)),
                       vectors[[0, 12, 25]]], format="csr")  # three papers' rows, then the folded rows 3-5
    corpus = rank.Corpus.build(known, folded=np.arange(6) >= 3,
                               terms=np.array([f"t{i}" for i in range(VOCABULARY)]))
    community = recommend.Community(
        voted_ids=[1, 2, 3, 100, 112, 125], row_of={1: 0, 2: 1, 3: 2}, liker_row={}, pool_vectors=pool,
        prepared=rank.prepare(corpus, pool, rank.Params(colike_weight=0.0)),
        folded_key=np.array([k for k, _ in keys], np.int64), folded_row=np.array([r for _, r in keys], np.int64))
    when = NOW
    gone = {101, 115}  # 101 since 👎; 115 removed (its import undone): each the closest to a pick
    own = recommend._Own(
        votes={7: [(p, 1, when) for p in range(100, 125) if p not in gone] + [(101, -1, when)],
               8: [(p, 1, when) for p in range(125, 140)]},
        interests={}, interest_vectors={}, muted={}, excluded={})
    people = [SimpleNamespace(id=7), SimpleNamespace(id=8)]
    reason = rank.Reason
    picks = [[rank.Scored(c, 1.0, reason(rank.KIND_PROFILE, liked_row=row))
              for c, row in [(0, 3), (1, 3), (2, 4), (5, 4), (6, 3), (7, 0)]],
             [rank.Scored(c, 1.0, reason(rank.KIND_TOPIC, liked_row=5)) for c in (3, 4, 5, 7)]]
    model = SimpleNamespace(vectors_for=lambda _, ids: vectors[np.asarray(ids, np.int64) - 100],
                            terms=corpus.terms)
    named = recommend._closest_members(None, model, community, people, picks, own)
    assert set(named) == {(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 0), (1, 1), (1, 2), (1, 3)}
    liked = {sid: {p for p, v, _ in own.votes[sid] if v > 0} - (gone if sid == 7 else set()) for sid in rows}
    for (n, j), (paper, words) in named.items():
        sid, pick = people[n].id, picks[n][j]
        members = np.array([p for p in rows[sid][pick.reason.liked_row] if p in liked[sid]])
        likeness = (vectors[members - 100] @ pool[pick.column].T).toarray().ravel()
        assert paper == members[np.argmax(likeness)], (n, j)
        assert paper not in gone
        assert set(words) <= set(corpus.terms[vectors[paper - 100].indices])
    # the first and third picks are papers 101 and 115 themselves; the second and sixth, 103 and 130
    assert named[0, 1][0] == 103 and named[1, 1][0] == 130 and {named[0, 0][0], named[0, 2][0]}.isdisjoint(gone)


def imported(session, subscriber, papers: list[Paper], when=NOW) -> list[Import]:
    """Each paper a 👍 of its own import, in order (so `/import undo` takes back the last first)."""
    made = []
    for paper in papers:
        job = Import(subscriber_id=subscriber.id, source="pasted ids", status="done", entries=1, added=1)
        session.add(job)
        session.flush()
        session.add(Vote(subscriber_id=subscriber.id, paper_id=paper.id, value=1, voted_at=when, origin="import",
                         import_id=job.id))
        made.append(job)
    subscribers.record_shown(session, subscriber, [(p.id, 0.0, "") for p in papers], "search")
    subscribers.votes_changed(session, subscriber.id)
    session.flush()
    return made


def library_papers(session) -> list[Paper]:
    made = [Paper(key=f"library:{n}", title=title, abstract=abstract, first_listed=None)
            for n, (title, abstract) in enumerate(LIBRARY)]
    session.add_all(made)
    session.flush()
    return made


def named_titles(picks) -> list[str]:
    return [p.why.split("“")[1].split("”")[0] for p in picks if p.why.startswith("because you liked “")]


def test_a_library_paper_whose_import_was_undone_is_never_named(seeded, settings):
    """The tables (cached) still fold the paper into the subscriber's row; the why-line must not
    name it once the import that added it is taken back (a 👎 since: the test above)."""
    with Session(seeded) as session, session.begin():
        importer = make_subscriber(session, 1)
        library = library_papers(session)
        imported(session, importer, library)
        model = textmodel.load(session, settings.model_dir)
        cache = recommend.CommunityCache(clock=lambda: 0.0)  # the tables are not rebuilt
        before = named_titles(recommend.recommend(session, model, [importer], DAY, NOW, cache=cache)[importer.id])
        assert before
        tables = next(iter(cache._entries.values())).community
        first = [p.title for p in library].index(before[0])
        gone = {p.title for p in library[first:]}
        for _ in library[first:]:  # `/import undo` until the import that added the paper named is taken back
            assert jobs.undo_last(session, importer.id)[1] == 1
        session.flush()
        picks = recommend.recommend(session, model, [importer], DAY, NOW, cache=cache)[importer.id]
        assert next(iter(cache._entries.values())).community is tables  # the same, older tables
        assert picks and not gone & set(named_titles(picks)), (gone, [p.why for p in picks])


def test_the_shared_cap_keeps_the_most_liked_library_papers_and_spends_nothing_on_disliked_ones(
        seeded, settings, monkeypatch):
    """Papers in several libraries keep a row, the most liked first, up to `SHARED_LIBRARY_ROWS`. A
    paper someone 👎 has its own row anyway and takes no place of the cap: with one place, the
    👎 one (four likers) and the most liked of the others (three) keep a row, not the one of two."""
    monkeypatch.setattr(recommend, "SHARED_LIBRARY_ROWS", 1)
    with Session(seeded) as session, session.begin():
        twice, disliked, thrice, once = library_papers(session)  # ids in that order: the lowest first
        people = [make_subscriber(session, n) for n in range(1, 6)]
        for paper, likers in ((disliked, people[:4]), (thrice, people[:3]), (twice, people[:2]), (once, people[:1])):
            for person in likers:
                imported(session, person, [paper])
        subscribers.record_shown(session, people[4], [(disliked.id, 0.0, "")], "search")
        subscribers.vote(session, people[4], disliked.id, -1, now=NOW)
        session.flush()
        model = textmodel.load(session, settings.model_dir)
        community = recommend.build_community(session, model, recommend.candidates(session, DAY, 2),
                                              rank.DEFAULT_PARAMS)
        assert {disliked.id, thrice.id} <= community.row_of.keys()
        assert not {twice.id, once.id} & community.row_of.keys()
        assert (community.folded_rows(people[0].id, [twice.id, once.id]) >= 0).all()


def test_a_groups_imported_library_is_folded_and_steers_its_picks_without_being_named(seeded, settings):
    """A group's import folds into the group's own rows like anyone's; its picks follow it, and no
    why-line names a paper of it to the members (nor the paper a folded row stands for)."""
    with Session(seeded) as session, session.begin():
        group, _ = subscribers.subscribe(session, -1, -1, "group", kind="group")
        library = library_papers(session)
        imported(session, group, library)
        model = textmodel.load(session, settings.model_dir)
        community = recommend.build_community(session, model, recommend.candidates(session, DAY, 2),
                                              rank.DEFAULT_PARAMS)
        ids = [p.id for p in library]
        assert not set(ids) & community.row_of.keys() and (community.folded_rows(group.id, ids) >= 0).all()
        picks = recommend.recommend(session, model, [group], DAY, NOW, cache=None)[group.id]
        assert len(picks) == 5
        assert sum(is_vision(p.paper.title, p.paper.abstract) for p in picks) >= 4, [p.paper.title for p in picks]
        assert not [p.why for p in picks if any(paper.title in p.why for paper in library)]


def test_a_newer_library_like_weighs_more_in_its_folded_row_than_an_older_one(seeded, settings):
    """Two library papers of one topic, imported a year apart (90-day half-life): their row is their
    mean weighted 1 to 2 ** -4, as their votes' decay says, not their plain mean."""
    with Session(seeded) as session, session.begin():
        importer = make_subscriber(session, 1)
        library = library_papers(session)
        model = textmodel.load(session, settings.model_dir)
        vectors = model.vectors_for(session, [p.id for p in library])
        topics = model.topics_for(vectors)
        old, new = next((a, b) for a in range(len(library)) for b in range(a + 1, len(library))
                        if topics[a] == topics[b])
        imported(session, importer, [library[old]], when=NOW - timedelta(days=360))
        imported(session, importer, [library[new]], when=NOW)
        community = recommend.build_community(session, model, recommend.candidates(session, DAY, 2),
                                              rank.DEFAULT_PARAMS, half_life_days=90.0)
        [row] = set(community.folded_rows(importer.id, [library[old].id, library[new].id]).tolist())
        folded = community.prepared.corpus.known[row].toarray().ravel()
        expected = ((vectors[old] / 16 + vectors[new]) / (1 + 1 / 16)).toarray().ravel()
        assert folded == pytest.approx(expected, abs=1e-6)
        assert folded @ vectors[new].toarray().ravel() > folded @ vectors[old].toarray().ravel()


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


def _two_of_a_topic(session, settings):
    """A subscriber and two library papers that fold into the same row."""
    importer = make_subscriber(session, 1)
    library = library_papers(session)
    model = textmodel.load(session, settings.model_dir)
    topics = model.topics_for(model.vectors_for(session, [p.id for p in library]))
    a, b = next((a, b) for a in range(len(library)) for b in range(a + 1, len(library)) if topics[a] == topics[b])
    return importer, model, library[a], library[b]


def _ranked(session, model, subscriber, cache):
    return [(p.paper_id, round(p.score, 5)) for p in recommend.recommend(
        session, model, [subscriber], DAY, NOW, sizes={subscriber.id: 30}, cache=cache)[subscriber.id]]


@pytest.mark.parametrize("taken_back", ["undo", "dislike"])
def test_a_library_paper_taken_back_stops_steering_at_once_whatever_the_cache(seeded, settings, taken_back):
    """Tables are shared and rebuilt now and then, but a subscriber's own votes count at once: a
    library paper undone or 👎'd since its row was folded weighs nothing in the very next ranking
    (the row's mean still holds its words, so that row is not used), exactly as with fresh tables."""
    with Session(seeded) as session, session.begin():
        importer, model, kept, lost = _two_of_a_topic(session, settings)
        imported(session, importer, [kept])
        imported(session, importer, [lost])
        cache = recommend.CommunityCache(clock=lambda: 0.0)  # never old enough to rebuild
        before = _ranked(session, model, importer, cache)
        if taken_back == "undo":
            assert jobs.undo_last(session, importer.id)[1] == 1
        else:
            subscribers.vote(session, importer, lost.id, -1, now=NOW)
        session.flush()
        after = _ranked(session, model, importer, cache)
        assert after == _ranked(session, model, importer, None)
        assert after != before


def test_a_paper_liked_twice_over_counts_once_beside_a_folded_row():
    """A group holds some papers twice (its own import and its members' 👍): one entry of its likes
    matrix, so one like for its topics, as without a folded row; a folded row counts its members."""
    from feedbot.ranking.inputs import Taste
    from feedbot.ranking.profiles import like_counts, weights_matrix

    group = Taste(liked=np.array([7, 3, 7, 9]), liked_weight=np.ones(4, np.float32),
                  liked_count=np.array([1, 1, 1, 40], np.float32))  # row 9: a library folded, 40 papers
    person = Taste(liked=np.array([5, 2]), liked_weight=np.ones(2, np.float32))
    counts = like_counts([group, person])
    likes = weights_matrix([group, person], "liked", "liked_weight", 12)
    assert likes.nnz == len(counts)  # one count per entry, in the matrix's order
    assert dict(zip(likes.indices[:3].tolist(), counts[:3].tolist(), strict=True)) == {3: 1, 7: 1, 9: 40}
    assert counts[3:].tolist() == [1, 1]


@pytest.mark.parametrize("dense_at", [0, 10**9])  # dense blocks of means, or sparse copies of them
@pytest.mark.parametrize("block", [1, 3, 256])
def test_row_dots_are_each_papers_product_with_its_row(block, dense_at):
    """Across block edges, with rows no paper reads and papers with no terms."""
    rng = np.random.default_rng(block)
    library = normalize(sp.random(60, 40, density=0.2, format="csr", random_state=rng, dtype=np.float32))
    library.data[library.indptr[7] : library.indptr[8]] = 0  # a paper with no terms
    library.eliminate_zeros()
    means = normalize(sp.random(9, 40, density=0.4, format="csr", random_state=rng, dtype=np.float32))
    row_of = np.sort(rng.choice([0, 1, 4, 5, 8], size=50))  # rows 2, 3, 6 and 7 have no paper
    papers = rng.integers(0, 60, 50)
    papers[0] = 7
    expected = (library[papers].toarray() * means[row_of].toarray()).sum(axis=1)
    got = libraries.row_dots(library, papers, means, row_of, block=block, dense_at=dense_at)
    assert got == pytest.approx(expected, abs=1e-6) and got[0] == 0


@pytest.mark.parametrize("dense_at", [0, 10**9])
def test_a_folded_row_names_its_closest_paper_not_its_first_and_ties_go_to_the_first(monkeypatch, dense_at):
    """Both ways of measuring closeness: the middle paper of three is the mean's closest; two
    papers equally close (a mirror pair) name the one given first, whichever way it is summed."""
    monkeypatch.setattr(libraries, "DENSE_AT", dense_at)
    known = sp.csr_matrix(normalize(np.array([[1, 0, 0], [0.8, 0.6, 0], [0.6, 0.8, 0], [0, 1, 0],
                                              [0.3, 0.1, 0.9], [0.1, 0.3, 0.9]], np.float32)))
    owner, paper = np.array([0, 0, 0, 1, 1]), np.array([0, 1, 3, 5, 4])
    folded = libraries.fold(known, owner, paper, np.zeros(6, np.int32), terms=3)
    assert folded.representative.tolist() == [1, 5]


LIBRARY_VECTORS = normalize(sp.random(40, 30, density=0.3, format="csr", random_state=np.random.default_rng(3),
                                      dtype=np.float32))
LIBRARY_TOPICS = np.arange(40) % 3


def library_vectors(asked: list):
    """`vectors_of` for FoldCache over LIBRARY_VECTORS (paper id = row), noting the papers asked for."""
    def vectors_of(papers: np.ndarray):
        asked.append(papers.tolist())
        return LIBRARY_VECTORS[papers], LIBRARY_TOPICS[papers]
    return vectors_of


def assert_same_rows(got: libraries.LibraryRows, expected: libraries.LibraryRows) -> None:
    assert (got.vectors != expected.vectors).nnz == 0 and got.vectors.shape == expected.vectors.shape
    for name in ("topics", "owner", "named", "key", "row"):
        assert getattr(got, name).tolist() == getattr(expected, name).tolist(), name


one_library = st.dictionaries(st.integers(0, 39), st.integers(-3, 0), max_size=12)  # paper -> weight
libraries_strategy = st.dictionaries(st.integers(1, 6), one_library, max_size=6)  # owner -> their library


@hypothesis.settings(max_examples=150, deadline=None)
@given(libraries_strategy, st.lists(libraries_strategy, min_size=1, max_size=4), st.integers(0, 2**32 - 1))
def test_rows_kept_between_builds_are_those_a_fresh_fold_makes(first, changes, seed):
    """Whatever changes between builds (likes added, removed, re-timed, owners gone or new, the
    others kept), given in any order, the rows equal a fold made from nothing, and only the owners
    whose likes changed are refolded."""
    cache, previous, rng = libraries.FoldCache(), {}, np.random.default_rng(seed)
    for change in [first, *changes]:
        now = {**previous, **change}
        likes = sorted((o, p, w) for o, library in now.items() for p, w in library.items())  # ties: lowest id
        owner, paper, weight = (np.array([x[i] for x in likes], dtype) for i, dtype in
                                ((0, np.int64), (1, np.int64), (2, np.float64)))
        asked: list = []
        shuffled = rng.permutation(len(owner))
        got = cache.rows(("db", 1), owner[shuffled], paper[shuffled], weight[shuffled], library_vectors(asked), 30)
        expected = libraries.FoldCache().rows(("db", 1), owner, paper, weight, library_vectors([]), 30)
        assert_same_rows(got, expected)
        if len(owner):  # and both are the plain fold of the likes, named by paper id
            direct = fold(LIBRARY_VECTORS, owner, paper, LIBRARY_TOPICS, log2_weight=weight)
            assert (got.vectors != direct.vectors).nnz == 0
            assert got.named.tolist() == direct.representative.tolist()
            assert got.owner.tolist() == direct.owner.tolist()
            assert got.row[np.searchsorted(got.key, (owner << 32) | paper)].tolist() == direct.group_of.tolist()
        changed = {o for o, library in now.items() if library and library != previous.get(o)}
        assert cache.refolded == len(changed)
        assert {p for call in asked for p in call} == {p for o in changed for p in now[o]}
        previous = now


def test_another_model_refolds_every_library_and_the_last_two_are_kept():
    cache = libraries.FoldCache()
    owner, paper, weight = np.array([1, 1, 2]), np.array([4, 5, 4]), np.zeros(3)
    for version, refolded in [(1, 2), (1, 0), (2, 2), (1, 0), (2, 0), (3, 2), (1, 2)]:
        cache.rows(("db", version), owner, paper, weight, library_vectors([]), 30)
        assert cache.refolded == refolded, version


def test_a_build_refolds_only_the_library_whose_likes_changed_and_makes_the_tables_a_fresh_build_makes(
        seeded, settings):
    """On both databases: after one importer's 👎 on a library paper, the next build of the shared
    tables refolds that library alone, and its tables equal those built with nothing kept."""
    with Session(seeded) as session, session.begin():
        first, second = make_subscriber(session, 1), make_subscriber(session, 2)
        imported_library(session, first)
        model = textmodel.load(session, settings.model_dir)
        pool = recommend.candidates(session, DAY, 2)
        library = list(session.scalars(select(Paper).where(Paper.first_listed.is_(None)).order_by(Paper.id)))
        for paper in library[-4:]:
            subscribers.record_shown(session, second, [(paper.id, 0.0, "")], "search")
        for paper in library[:4]:  # the second's own library: papers no one else has
            extra = Paper(key=f"second:{paper.id}", title=f"{paper.title} revisited", abstract=paper.abstract,
                          first_listed=None)
            session.add(extra)
            session.flush()
            subscribers.record_shown(session, second, [(extra.id, 0.0, "")], "search")
            subscribers.vote(session, second, extra.id, 1, now=NOW)
        session.flush()
        folds = libraries.FoldCache()
        recommend.build_community(session, model, pool, rank.DEFAULT_PARAMS, folds=folds)
        assert folds.refolded == 2
        subscribers.vote(session, first, library[0].id, -1, now=NOW)
        session.flush()
        kept = recommend.build_community(session, model, pool, rank.DEFAULT_PARAMS, folds=folds)
        assert folds.refolded == 1
        fresh = recommend.build_community(session, model, pool, rank.DEFAULT_PARAMS, folds=libraries.FoldCache())
        assert kept.voted_ids == fresh.voted_ids
        assert kept.folded_key.tolist() == fresh.folded_key.tolist()
        assert kept.folded_row.tolist() == fresh.folded_row.tolist()
        assert (kept.prepared.corpus.known != fresh.prepared.corpus.known).nnz == 0


@pytest.mark.parametrize("owner,paper", [(2**31, 3), (-(2**31) - 1, 3), (1, 2**32), (1, -1)])
def test_ids_beyond_32_bits_are_refused_not_mixed_up(owner, paper):
    with pytest.raises(ValueError, match="32"):
        libraries.FoldCache().rows(("db", 1), np.array([owner]), np.array([paper]), np.zeros(1),
                                   library_vectors([]), 30)


def test_the_same_likes_are_not_refolded_for_a_zero_weight_of_the_other_sign_or_after_a_failed_build():
    cache = libraries.FoldCache()
    owner, paper = np.array([1, 2**31 - 1, -(2**31)]), np.array([4, 5, 6])
    cache.rows(("db", 1), owner, paper, np.zeros(3), library_vectors([]), 30)
    cache.rows(("db", 1), owner, paper, -np.zeros(3), library_vectors([]), 30)
    assert cache.refolded == 0

    def failing(papers):
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        cache.rows(("db", 1), owner, np.array([4, 5, 7]), np.zeros(3), failing, 30)
    cache.rows(("db", 1), owner, paper, np.zeros(3), library_vectors([]), 30)
    assert cache.refolded == 0  # the rows held before the failure are still held


def test_both_ways_of_measuring_closeness_give_the_same_values_even_for_near_duplicates():
    """Which way `row_dots` takes depends on the other rows folded beside a row (a refold of one
    library folds it alone), so the two must agree to the last bit, or a near tie names another paper."""
    rng = np.random.default_rng(0)
    for _ in range(100):
        dense = rng.random((150, 300)).astype(np.float32) * (rng.random((150, 300)) < 0.1)
        dense[1] = dense[0] * np.float32(1 + 1e-6 * rng.standard_normal(300))  # a near duplicate
        library = normalize(sp.csr_matrix(dense))
        row_of = np.zeros(150, np.int64)
        means = libraries.prune(sp.csr_matrix(library.mean(axis=0).astype(np.float32)), 400)
        papers = np.arange(150)
        sparse_way = libraries.row_dots(library, papers, means, row_of, dense_at=10**9, decimals=None)
        dense_way = libraries.row_dots(library, papers, means, row_of, dense_at=0, decimals=None)
        assert sparse_way.tolist() == dense_way.tolist()  # unrounded: the same bits
