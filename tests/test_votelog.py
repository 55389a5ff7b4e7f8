"""The votes ranking keeps in memory (ranking.votelog) against a real database: after any sequence
of taps, imports, undos and /delete, the copy refreshed from the change log, and the co-likers
matrix built from it, equal a fresh read of every vote, and a refresh reads only the subscribers
whose votes changed. Imported 👍 are
community 👍 like any other, papers known only from a library included."""

from __future__ import annotations

import itertools
import os
import threading
from datetime import UTC, date, datetime
from urllib.parse import unquote

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, inspect, make_url, select, text, update
from sqlalchemy.orm import Session

from feedbot.library import jobs
from feedbot.library.parse import parse_bytes
from feedbot.library.resolve import Apis
from feedbot.ranking import textmodel
from feedbot.ranking.rank import DEFAULT_PARAMS
from feedbot.ranking.recommend import build_community, candidates, community_likes
from feedbot.ranking.votelog import VoteMirror, read_votes
from feedbot.sources.http import Client
from feedbot.sources.ingest import store_records
from feedbot.sources.records import from_dump
from feedbot.store import db, groups, subscribers
from feedbot.store.db import transaction
from feedbot.store.models import Paper, Subscriber, Vote, VoteChange, VoteCounter

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
DAY = date(2026, 3, 19)
TOPICS = ["sparse attention for long contexts", "protein folding with diffusion", "graph neural networks",
          "robot grasping from video", "speech recognition at scale", "causal inference in economics"]
TELEGRAM_IDS = itertools.count(1000)


def listed(engine) -> list[int]:
    """Six listed papers (stored once per database), their ids."""
    store_records(engine, "dump", "sha", [from_dump(f"Paper on {t}", f"We study {t} in depth.", DAY, n)
                                          for n, t in enumerate(TOPICS)])
    with Session(engine) as session:
        return list(session.scalars(select(Paper.id).where(Paper.first_listed.is_not(None)).order_by(Paper.id)))


def import_library(engine, server_url: str, telegram_id: int, topics: list[int]) -> None:
    """A library of papers known only from it (never listed), plus the listed papers' titles."""
    entries = b"".join(b"@misc{k%d, title={Library paper %d on %s}, abstract={Notes on %s.}}\n" % (
        t, t, TOPICS[t].encode(), TOPICS[t].encode()) for t in topics)
    client = Client(retries=0, backoff=0.0, sleep=lambda _: None)
    apis = Apis(f"{server_url}/api/query", server_url, client, client)
    try:
        report = jobs.run(engine, telegram_id, "lib.bib", lambda _: parse_bytes(entries), apis, None, NOW)
    finally:
        apis.close()
    assert report.ok, report.lines()


def tap(engine, subscriber_id: int, paper_id: int, value: int) -> None:
    with transaction(engine) as session:
        subscriber = session.get(Subscriber, subscriber_id)
        subscribers.record_shown(session, subscriber, [(paper_id, 0.0, "search")], "search", now=NOW)
        subscribers.vote(session, subscriber, paper_id, value, now=NOW)


def subscribe(engine, telegram_id: int) -> int:
    with transaction(engine) as session:
        return subscribers.subscribe(session, telegram_id, telegram_id)[0].id


STEPS = st.lists(st.one_of(
    st.tuples(st.just("tap"), st.integers(0, 2), st.integers(0, 5), st.sampled_from([1, -1, 0])),
    st.tuples(st.just("import"), st.integers(0, 2), st.lists(st.integers(0, 5), min_size=1, max_size=3)),
    st.tuples(st.just("undo"), st.integers(0, 2)),
    st.tuples(st.just("delete"), st.integers(0, 2)),
    st.tuples(st.just("refresh")),
), max_size=10)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_the_votes_kept_from_the_change_log_equal_a_fresh_read(engine, server, steps):
    papers = listed(engine)
    mirror = VoteMirror()
    telegram = [next(TELEGRAM_IDS) for _ in range(3)]
    ids = [subscribe(engine, t) for t in telegram]
    everyone = set(ids)  # this example's subscribers, each /delete making a new one
    with Session(engine) as session:
        mirror.current(session)
    for step in [*steps, ("refresh",)]:
        kind, who = step[0], step[1] if len(step) > 1 else 0
        if kind == "tap":
            tap(engine, ids[who], papers[step[2]], step[3])
        elif kind == "import":
            import_library(engine, server.base_url, telegram[who], step[2])
        elif kind == "undo":
            with transaction(engine) as session:
                jobs.undo_last(session, ids[who])
        elif kind == "delete":
            with transaction(engine) as session:
                subscribers.delete_everything(session, session.get(Subscriber, ids[who]))
            ids[who] = subscribe(engine, telegram[who])
            everyone.add(ids[who])
        else:
            with Session(engine) as session:
                _, kept = mirror.current(session)
                fresh = read_votes(session)
                assert kept.as_set() == fresh.as_set()
                voted, people, likers = community_likes(kept)
                fresh_voted, fresh_people, fresh_likers = community_likes(fresh)
                assert voted.tolist() == fresh_voted.tolist() and people.tolist() == fresh_people.tolist()
                assert (likers != fresh_likers).nnz == 0
    assert mirror.reads[0] is None and all(r is not None and r <= len(everyone) for r in list(mirror.reads)[1:])


def test_a_refresh_reads_only_the_subscribers_whose_votes_changed(engine):
    papers = listed(engine)
    ids = [subscribe(engine, t) for t in (1, 2, 3)]
    for sid in ids:
        tap(engine, sid, papers[0], 1)
    mirror = VoteMirror()
    with Session(engine) as session:
        mirror.current(session)
    tap(engine, ids[1], papers[1], -1)
    with Session(engine) as session:
        version, votes = mirror.current(session)
        assert version == subscribers.votes_version(session)
        assert mirror.current(session)[1] is votes  # nothing changed since: nothing read
    assert list(mirror.reads) == [None, 1]
    with Session(engine) as session:  # the log holds each subscriber's latest change only
        assert dict(session.execute(select(VoteChange.voter_id, VoteChange.seq)).all()) == {
            ids[0]: 1, ids[2]: 3, ids[1]: 4}
    assert votes.as_set() == {(ids[0], papers[0], 1), (ids[1], papers[0], 1), (ids[1], papers[1], -1),
                              (ids[2], papers[0], 1)}
    assert votes.subscriber.nbytes + votes.paper.nbytes + votes.value.nbytes == 9 * 4  # per vote: two int32, an int8


def test_imported_likes_on_papers_known_only_from_a_library_are_folded_from_the_kept_votes(engine, server):
    papers = listed(engine)
    reader, importer = subscribe(engine, 1), subscribe(engine, 2)
    tap(engine, reader, papers[0], 1)
    import_library(engine, server.base_url, 2, [0, 2])
    tap(engine, importer, papers[0], 1)
    mirror = VoteMirror()
    with Session(engine) as session:
        model = textmodel.fit(session)
        pool = candidates(session, DAY, 2)
        library = list(session.scalars(select(Paper.id).where(Paper.first_listed.is_(None)).order_by(Paper.id)))
        assert len(library) == 2
        community = build_community(session, model, pool, DEFAULT_PARAMS, mirror)
        likers = community.prepared.corpus.likers.toarray()
        row = community.liker_row[importer]
        # the library papers have no row: folded into the importer's own, naming one of them, no one's co-likes
        assert not set(library) & community.row_of.keys()
        folded = community.folded_rows(importer, np.array(library))
        assert (folded >= 0).all() and {community.voted_ids[r] for r in folded} <= set(library)
        assert {community.voted_ids[c] for c in np.flatnonzero(likers[row])} == {papers[0]}
        assert likers[:, community.row_of[papers[0]]].sum() == 2
    with transaction(engine) as writer:
        jobs.undo_last(writer, importer)
    with Session(engine) as session:
        community = build_community(session, model, pool, DEFAULT_PARAMS, mirror)
        likers = community.prepared.corpus.likers.toarray()
        assert {community.voted_ids[c] for c in np.flatnonzero(likers[community.liker_row[importer]])} == {papers[0]}
        assert (community.folded_rows(importer, np.array(library)) == -1).all()
    assert list(mirror.reads) == [None, 1]


def test_a_group_merged_into_its_supergroup_moves_its_votes_in_the_kept_copy(engine):
    papers = listed(engine)
    with transaction(engine) as session:
        group = subscribers.subscribe(session, -5, -5, kind="group")[0].id
        supergroup = subscribers.subscribe(session, -1005, -1005, kind="group")[0].id
    tap(engine, group, papers[0], 1)
    tap(engine, supergroup, papers[1], 1)
    mirror = VoteMirror()
    with Session(engine) as session:
        mirror.current(session)
    with transaction(engine) as session:
        assert groups.migrate(session, -5, -1005)
    with Session(engine) as session:
        _, kept = mirror.current(session)
        assert kept.as_set() == read_votes(session).as_set() == {(group, papers[0], 1), (group, papers[1], 1)}
    assert list(mirror.reads) == [None, 2]


def made_anew(url: str, engine) -> None:
    """The database at `url` replaced by an empty, migrated one at the same address (the old SQLite
    file kept aside, as a backup would be)."""
    engine.dispose()
    if url.startswith("sqlite"):
        path = make_url(url).database
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.replace(path + suffix, f"{path}.old{suffix}")
    else:
        schema = unquote(url.rsplit("search_path%3D", 1)[1])
        admin = create_engine(url.split("?", 1)[0])
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
            connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
        admin.dispose()
    db.upgrade(url)


def test_a_database_made_anew_at_the_same_address_is_read_afresh(database_url):
    mirror = VoteMirror()
    engine = db.make_engine(database_url)
    try:
        db.upgrade(database_url)
        papers, who = listed(engine), subscribe(engine, 1)
        tap(engine, who, papers[0], 1)
        with Session(engine) as session:
            assert mirror.current(session)[1].as_set() == {(who, papers[0], 1)}
        made_anew(database_url, engine)
        papers, who = listed(engine), subscribe(engine, 2)
        tap(engine, who, papers[1], -1)  # the counter is where it was in the old database
        with Session(engine) as session:
            assert subscribers.votes_version(session) == 1
            version, kept = mirror.current(session)
            assert kept.as_set() == read_votes(session).as_set() == {(who, papers[1], -1)}
    finally:
        engine.dispose()
    assert list(mirror.reads) == [None, None]


def test_the_mirror_holds_the_latest_databases_only(tmp_path):
    mirror = VoteMirror(size=2)
    for n in range(3):
        url = f"sqlite:///{tmp_path / f'{n}.db'}"
        db.upgrade(url)
        engine = db.make_engine(url)
        with Session(engine) as session:
            mirror.current(session)
        engine.dispose()
    assert list(mirror._held) == [f"sqlite:///{tmp_path / f'{n}.db'}" for n in (1, 2)]


def test_a_change_no_counter_step_names_is_seen_within_the_full_read_interval(engine):
    papers = listed(engine)
    who = subscribe(engine, 1)
    tap(engine, who, papers[0], 1)
    clock = [0.0]
    mirror = VoteMirror(full_every=600, clock=lambda: clock[0])
    with Session(engine) as session:
        mirror.current(session)
    with transaction(engine) as session:  # as code from before the change log votes: the counter only
        session.execute(update(Vote).where(Vote.subscriber_id == who).values(value=-1))
        session.execute(update(VoteCounter).values(changes=VoteCounter.changes + 1))
    clock[0] = 599
    with Session(engine) as session:
        assert mirror.current(session)[1].as_set() == {(who, papers[0], 1)}  # not yet
    clock[0] = 600
    with Session(engine) as session:
        assert mirror.current(session)[1].as_set() == read_votes(session).as_set() == {(who, papers[0], -1)}
    assert list(mirror.reads) == [None, 0, None]


def test_refreshes_racing_with_taps_miss_no_change(engine):
    papers = listed(engine)
    people = [subscribe(engine, t) for t in range(10, 34)]  # one tap each: a change missed stays missed
    mirror = VoteMirror()
    with Session(engine) as session:
        start = subscribers.votes_version(session)
        mirror.current(session)
    release, done = threading.Barrier(len(people) + 1), threading.Event()
    failures: list[BaseException] = []

    def tapper(n: int, who: int) -> None:
        try:
            release.wait()
            tap(engine, who, papers[n % len(papers)], 1 if n % 3 else -1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    def refresher() -> None:
        try:
            release.wait()
            while not done.is_set():
                with Session(engine) as session:
                    mirror.current(session)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    threads = [threading.Thread(target=tapper, args=(n, who)) for n, who in enumerate(people)]
    reading = threading.Thread(target=refresher)
    for thread in [*threads, reading]:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reading.join()
    assert not failures
    with Session(engine) as session:
        assert subscribers.votes_version(session) == start + len(people)  # one step per tap, none lost
        seqs = list(session.scalars(select(VoteChange.seq)))
        assert len(seqs) == len(set(seqs)) == len(people)
        _, kept = mirror.current(session)
        assert kept.as_set() == read_votes(session).as_set()


def test_the_change_log_revision_goes_down_and_up_again_on_a_database_with_votes(database_url):
    db.upgrade(database_url)
    engine = db.make_engine(database_url)
    try:
        papers = listed(engine)
        first, second = subscribe(engine, 1), subscribe(engine, 2)
        tap(engine, first, papers[0], 1)
        tap(engine, second, papers[1], -1)
        db.downgrade(database_url, "0011")
        assert "vote_changes" not in inspect(engine).get_table_names()
        with engine.begin() as connection:  # a vote as the code before the change log makes it
            connection.execute(text("UPDATE votes SET value = 1 WHERE subscriber_id = :s"), {"s": second})
            connection.execute(text("UPDATE vote_counter SET changes = changes + 1"))
        db.upgrade(database_url)
        with Session(engine) as session:
            assert subscribers.votes_version(session) == 3
            assert session.scalar(select(func.count()).select_from(VoteChange)) == 0
            assert VoteMirror().current(session)[1].as_set() == {(first, papers[0], 1), (second, papers[1], 1)}
        tap(engine, first, papers[2], -1)
        with Session(engine) as session:
            assert dict(session.execute(select(VoteChange.voter_id, VoteChange.seq)).all()) == {first: 4}
    finally:
        engine.dispose()


def test_only_a_like_of_a_never_listed_paper_is_read_with_its_time(engine):
    """The fold weighs library 👍 by their time; no other vote's time is read (0 in its place)."""
    papers = listed(engine)
    reader = subscribe(engine, 1)
    tap(engine, reader, papers[0], 1)
    with Session(engine) as session:
        assert read_votes(session).hour.tolist() == [0]  # no library paper at all
    when = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    with transaction(engine) as session:
        library = [Paper(key=f"library:{n}", title=f"Library paper {n}", abstract="Notes.") for n in range(2)]
        session.add_all(library)
        session.flush()
        session.add_all([Vote(subscriber_id=reader, paper_id=library[0].id, value=1, voted_at=when, origin="import"),
                         Vote(subscriber_id=reader, paper_id=library[1].id, value=-1, voted_at=when)])
        ids = [p.id for p in library]
    with Session(engine) as session:
        votes = read_votes(session)
        assert dict(zip(votes.paper.tolist(), votes.hour.tolist(), strict=True)) == {
            papers[0]: 0, ids[0]: int(when.timestamp()) // 3600, ids[1]: 0}
