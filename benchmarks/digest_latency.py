"""`/digest` latency with a large community: one subscriber's `/digest` (the conversation's real
call: rank, claim, record, render) while 100,000 subscribers' votes are in the database.

The database holds 10,000 older papers (a synthetic dump, 40 topics) and the example dumps as the
day's candidates; 100,000 subscribers, each with about 10 votes (4 in 5 of them 👍) on papers of
one or two topics and 3 of the day's papers already shown. Each `/digest` is timed for a different
subscriber, median over `--repeat`: with the shared tables cached (built by the first call,
then reused while the corpus is unchanged and other people's votes are newer than the lag bound)
against the same `/digest` building them every time (the cache holding nothing), in the same run.
Also timed: the first `/digest` past the lag bound after a vote (the tables are rebuilt once,
reading only the voter's votes again: `ranking.votelog`),
and `/digest`s as they come in a live deployment: before each,
another subscriber 👍 one of their papers and the asking subscriber 👍 one of theirs (papers no one
had voted on), so the votes always moved; the tables lag other people's votes by up to
`recommend.MAX_LAG_SECONDS` and are not rebuilt, while the asker's own vote counts at once.

    .venv/bin/python benchmarks/digest_latency.py [--subscribers 100000] [--repeat 20] [--postgresql]

Ends with `RESULT digest_latency subscribers=… median_s=… uncached_median_s=… speedup=… rebuild_s=…
voting_median_s=…`.
Goal: median ≤ 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from benchmarks.common import ROOT, result_line, scratch_database  # noqa: E402
from feedbot.chat.conversation import Chat, User  # noqa: E402
from feedbot.config import load_settings  # noqa: E402
from feedbot.ranking import recommend, textmodel, votelog  # noqa: E402
from feedbot.sources.ingest import ingest_paths  # noqa: E402
from feedbot.store import db, subscribers  # noqa: E402
from feedbot.store.db import insert_for, transaction  # noqa: E402
from feedbot.store.models import Paper, Shown, Subscriber, Vote  # noqa: E402

NOW = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
TOPICS = 40
FIRST_ID = 20_000_000


def write_old_papers(folder: Path, count: int, rng: np.random.Generator) -> np.ndarray:
    """A dump of `count` papers listed on Feb 1, each written from one of TOPICS word lists; their topics."""
    words = [[f"topic{t}word{w}" for w in range(60)] for t in range(TOPICS)]
    topic = rng.integers(0, TOPICS, count)
    lines = ["Daily papers", "Feb 1"]
    for n in range(count):
        own = rng.choice(words[topic[n]], size=45)
        lines.append(f"Study {n} of {' '.join(own[:5])}")
        lines.append(f"We present {' '.join(own[5:])} and show that it works well in practice.")
    path = folder / "old.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return topic


def populate(url: str, data_dir: Path, count: int, papers: int) -> None:
    db.upgrade(url)
    engine = db.make_engine(url)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        topic = write_old_papers(Path(folder), papers, rng)
        ingest_paths(engine, [Path(folder) / "old.txt", ROOT / "examples" / "dumps"], stamp=date(2026, 3, 20))
    with transaction(engine) as session:
        old = {int(title.split()[1]): pid for pid, title in session.execute(
            select(Paper.id, Paper.title).where(Paper.title.startswith("Study ")))}
        by_topic = [np.array([old[n] for n in np.flatnonzero(topic == t)]) for t in range(TOPICS)]
        day = [pid for (pid,) in session.execute(select(Paper.id).where(Paper.first_listed >= date(2026, 3, 11)))]
        insert = insert_for(session)
        for start in range(0, count, 10_000):
            session.execute(insert(Subscriber), [
                {"telegram_id": FIRST_ID + i, "chat_id": FIRST_ID + i, "name": "", "state": "active",
                 "timezone": "UTC", "send_time": "23:00", "digest_size": 5, "frequency": "daily",
                 "created_at": NOW} for i in range(start, min(count, start + 10_000))])
        ids = list(session.scalars(select(Subscriber.id).order_by(Subscriber.id)))
        votes, shown = [], []
        for sid in ids:
            pool = np.concatenate([by_topic[t] for t in rng.choice(TOPICS, size=int(rng.integers(1, 3)),
                                                                   replace=False)])
            for pid in rng.choice(pool, size=int(rng.integers(5, 16)), replace=False):
                votes.append({"subscriber_id": sid, "paper_id": int(pid), "value": 1 if rng.random() < 0.8 else -1,
                              "voted_at": NOW})
            for position, pid in enumerate(rng.choice(day, size=3, replace=False)):
                shown.append({"subscriber_id": sid, "paper_id": int(pid), "source": "digest", "position": position,
                              "score": 0.0, "reason": "", "shown_at": NOW})
        for rows, table in ((votes, Vote), (shown, Shown)):
            for start in range(0, len(rows), 20_000):
                session.execute(insert(table), rows[start : start + 20_000])
    with Session(engine) as session:
        textmodel.ensure(session, data_dir / "model")
    engine.dispose()
    print(f"  {count:,} subscribers, {len(votes):,} votes, {len(shown):,} shown rows, "
          f"{papers:,} older papers + {len(day)} of the day")


def digest_seconds(chat: Chat, telegram_ids: list[int]) -> list[float]:
    out = []
    for telegram_id in telegram_ids:
        start = time.perf_counter()
        replies = chat.digest(User(telegram_id, telegram_id))
        out.append(time.perf_counter() - start)
        assert replies and replies[0].keyboard, replies[0].text
    return out


def vote_on_a_shown_paper(engine, telegram_id: int) -> None:
    """The subscriber 👍 one of the day's papers they were shown (no one had voted on those)."""
    with transaction(engine) as session:
        voter = subscribers.get(session, telegram_id)
        paper = session.scalar(select(Shown.paper_id).where(Shown.subscriber_id == voter.id))
        subscribers.vote(session, voter, paper, 1, now=NOW)


def voting_digest_seconds(chat: Chat, engine, askers: list[int], voters: list[int]) -> list[float]:
    """Each asker's `/digest` right after another subscriber's 👍 and their own."""
    out = []
    for asker, voter in zip(askers, voters, strict=True):
        vote_on_a_shown_paper(engine, voter)
        vote_on_a_shown_paper(engine, asker)
        out.extend(digest_seconds(chat, [asker]))
    return out


def run(kind: str, work: Path, count: int, papers: int, repeat: int) -> dict[str, float]:
    with scratch_database(kind, work) as url:
        data_dir = work / f"data-{kind}"
        start = time.perf_counter()
        populate(url, data_dir, count, papers)
        print(f"  populated in {time.perf_counter() - start:.0f} s")
        settings = load_settings({"DATABASE_URL": url, "FEEDBOT_DATA_DIR": str(data_dir)})
        engine = db.make_engine(url)
        chat = Chat(engine, settings, lambda: NOW)
        users = [FIRST_ID + int(i) for i in np.random.default_rng(1).choice(count, size=4 * repeat + 2,
                                                                           replace=False)]
        cache = recommend.CACHE
        cache.size = 0  # nothing kept: every /digest builds the tables
        uncached = []
        for user in users[:repeat]:
            votelog.MIRROR.forget()  # nor the votes: every /digest reads them all, as before the change log
            uncached += digest_seconds(chat, [user])
        cache.size = 2
        first = digest_seconds(chat, users[repeat : repeat + 1])[0]
        cached = digest_seconds(chat, users[repeat + 1 : 2 * repeat + 1])
        vote_on_a_shown_paper(engine, users[0])  # the votes moved: the next /digest past the lag bound rebuilds
        cache.max_lag = 0
        rebuild = digest_seconds(chat, users[-1:])[0]
        cache.max_lag = recommend.MAX_LAG_SECONDS
        start = time.perf_counter()
        voting = voting_digest_seconds(chat, engine, users[2 * repeat + 1 : 3 * repeat + 1],
                                       users[3 * repeat + 1 : 4 * repeat + 1])
        voting_span = time.perf_counter() - start
        engine.dispose()
    out = {"median": statistics.median(cached), "uncached": statistics.median(uncached), "first": first,
           "rebuild": rebuild, "p90": sorted(cached)[int(0.9 * len(cached))],
           "voting": statistics.median(voting), "voting_max": max(voting)}
    print(f"  {kind}: cached median {out['median']:.3f} s (p90 {out['p90']:.3f}), uncached median "
          f"{out['uncached']:.2f} s, first /digest {first:.2f} s, first after a vote {rebuild:.2f} s;\n"
          f"  with votes between them: median {out['voting']:.3f} s, slowest {out['voting_max']:.3f} s "
          f"({len(voting)} /digests in {voting_span:.0f} s, lag bound {recommend.MAX_LAG_SECONDS:.0f} s)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--papers", type=int, default=10_000, help="older papers the votes are on")
    parser.add_argument("--repeat", type=int, default=20, help="/digests timed each way (one subscriber each)")
    parser.add_argument("--postgresql", action="store_true", help="also on PostgreSQL (the tests' server)")
    args = parser.parse_args()
    kinds = ["sqlite"] + (["postgresql"] if args.postgresql else [])
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind in kinds:
            print(f"{kind}:")
            results[kind] = run(kind, Path(folder), args.subscribers, args.papers, args.repeat)
    print(f"\n{'database':<12}{'cached median s':>17}{'uncached median s':>19}{'speedup':>9}{'after a vote s':>16}"
          f"{'voting median s':>17}")
    for kind, r in results.items():
        print(f"{kind:<12}{r['median']:>17.3f}{r['uncached']:>19.2f}{r['uncached'] / r['median']:>9.1f}"
              f"{r['rebuild']:>16.2f}{r['voting']:>17.3f}")
    main_kind = results["sqlite"]
    extra = {"postgresql_median_s": round(results["postgresql"]["median"], 3)} if "postgresql" in results else {}
    print(result_line("digest_latency", subscribers=args.subscribers, median_s=round(main_kind["median"], 3),
                      uncached_median_s=round(main_kind["uncached"], 2),
                      speedup=round(main_kind["uncached"] / main_kind["median"], 1),
                      rebuild_s=round(main_kind["rebuild"], 2), voting_median_s=round(main_kind["voting"], 3),
                      **extra))


if __name__ == "__main__":
    main()
