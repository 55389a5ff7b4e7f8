"""Ingest throughput: papers per second for the seed dumps and a synthetic 100k-paper dump.

Runs feedbot's ingest (one transaction per dump, bulk upserts) and, in the same process as a
baseline, a naive ingest that checks and inserts one paper at a time through the ORM.
On SQLite and on PostgreSQL (started with scripts/postgres.sh when FEEDBOT_TEST_POSTGRES_URL
is unset).

    .venv/bin/python benchmarks/ingest.py [--papers 100000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from benchmarks.common import ROOT, result_line, scratch_database, timed  # noqa: E402
from feedbot.sources.dumps import parse_dump  # noqa: E402
from feedbot.sources.ingest import ingest_paths  # noqa: E402
from feedbot.store import db  # noqa: E402
from feedbot.store.models import Dump, Listing, Paper  # noqa: E402

STAMP = date(2026, 3, 20)


def synthetic_dump(path: Path, papers: int, seed: int = 0) -> None:
    """A dump of `papers` distinct entries made of words from the example dumps."""
    words = []
    for dump in sorted((ROOT / "examples" / "dumps").iterdir()):
        words += dump.read_text().split()
    rng = random.Random(seed)
    with path.open("w") as out:
        out.write("new\n\nSubscribe\n\nMar 12\n\n")
        for i in range(papers):
            title = " ".join(rng.choices(words, k=9)) + f" {i}"
            abstract = " ".join(rng.choices(words, k=110))
            out.write(f"{title}\n\n{abstract}\n\n")


def naive_ingest(url: str, path: Path) -> int:
    """The baseline: one SELECT and one INSERT per paper, committed once."""
    engine = db.make_engine(url)
    parsed = parse_dump(path.read_bytes(), path.name, STAMP)
    new = 0
    with Session(engine) as session, session.begin():
        dump = Dump(file_name=path.name, sha256=path.name, status="ingested", listed_on=STAMP)
        session.add(dump)
        session.flush()
        for position, entry in enumerate(parsed.entries):
            paper = session.scalar(select(Paper).where(Paper.key == entry.key))
            if paper is None:
                paper = Paper(key=entry.key, title=entry.title, abstract=entry.abstract,
                              first_listed=entry.listed_on)
                session.add(paper)
                session.flush()
                new += 1
            if session.get(Listing, (dump.id, paper.id)) is None:
                session.add(Listing(dump_id=dump.id, paper_id=paper.id, listed_on=entry.listed_on,
                                    position=position))
                session.flush()
    engine.dispose()
    return new


def feedbot_ingest(url: str, paths: list[Path]) -> int:
    engine = db.make_engine(url)
    reports = ingest_paths(engine, paths, stamp=STAMP)
    engine.dispose()
    assert all(r.status == "ingested" for r in reports), [r.line() for r in reports]
    return sum(r.entries for r in reports)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=100_000)
    parser.add_argument("--baseline-papers", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="feedbot-bench-"))
    seeds = sorted((ROOT / "examples" / "dumps").iterdir())
    big, small = work / "big.txt", work / "small.txt"
    synthetic_dump(big, args.papers)
    synthetic_dump(small, args.baseline_papers, seed=1)
    print(f"synthetic dumps: {args.papers:,} papers ({big.stat().st_size / 1e6:.0f} MB), "
          f"{args.baseline_papers:,} for the baseline")
    print(f"{'database':<11} {'input':<22} {'feedbot papers/s':>17} {'naive papers/s':>15} {'ratio':>6}")
    figures = {}
    for kind in ("sqlite", "postgresql"):
        def run(paths, kind=kind):
            with scratch_database(kind, work) as url:
                db.upgrade(url)
                return timed(lambda: feedbot_ingest(url, paths))

        def baseline(path, kind=kind):
            with scratch_database(kind, work) as url:
                db.upgrade(url)
                return timed(lambda: naive_ingest(url, path))

        seed_seconds, seed_entries = run(seeds)
        naive_seconds, _ = baseline(small)
        small_seconds, _ = run([small])
        big_seconds, big_entries = run([big])
        seed_rate = seed_entries / seed_seconds
        big_rate = big_entries / big_seconds
        small_rate = args.baseline_papers / small_seconds
        naive_rate = args.baseline_papers / naive_seconds
        print(f"{kind:<11} {'seeds (409 entries)':<22} {seed_rate:>17,.0f} {'':>15} {'':>6}")
        print(f"{kind:<11} {f'{args.baseline_papers:,} papers':<22} {small_rate:>17,.0f} "
              f"{naive_rate:>15,.0f} {small_rate / naive_rate:>6.1f}")
        print(f"{kind:<11} {f'{args.papers:,} papers':<22} {big_rate:>17,.0f} {'':>15} {'':>6}")
        figures[kind] = (seed_rate, big_rate, small_rate / naive_rate)
    print(result_line(
        "ingest",
        sqlite_seeds_per_s=round(figures["sqlite"][0]), sqlite_100k_per_s=round(figures["sqlite"][1]),
        pg_seeds_per_s=round(figures["postgresql"][0]), pg_100k_per_s=round(figures["postgresql"][1]),
        sqlite_vs_naive=figures["sqlite"][2], pg_vs_naive=figures["postgresql"][2],
    ))


if __name__ == "__main__":
    main()
