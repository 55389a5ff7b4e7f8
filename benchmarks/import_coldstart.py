"""Day one with an imported library: the first digest of CiteULike-t users who imported their
library, against five onboarding ratings and typed interests only.

For each split seed, 20 % of CiteULike-t items are held out as the day's new papers (the quality
benchmark's protocol) and ingested as one dump through feedbot's ingest; users are drawn among those
with items on both sides (user seed 1). Each arm runs in its own SQLite database, so its co-likes are
its own subscribers' votes, with the text model fitted on that database as the worker would:

- import: each user's training items written out as a BibTeX file (title "citeulike item N",
  abstract = its words, as benchmarks/feedback_sim.py does) and imported through the real import
  path (feedbot.library.jobs: parse, resolve, one transaction);
- onboarding: feedbot's onboarding as a newcomer meets it — the user's three most frequent tags
  typed as interests (benchmarks/onboarding.py), then the five starter papers feedbot shows
  (interest-led, among the day's papers) rated 👍 when the user saved them and 👎 otherwise;
- interests: the three tags typed as interests, nothing rated;
- five liked: five of the user's own training items 👍, imported the same way (no onboarding can
  show a newcomer their own papers: an upper bound for five ratings, shown for comparison).

Hit rate = held-out papers the user saved among their first digest's 5 picks / 5. Parameters are
tuned on split seed 0 only; the report is the mean over split seeds 1, 2 and 3 with paired 95 %
intervals (the same users in every arm). Import speed: a 1,000-entry BibTeX file with abstracts
imported end to end (read, resolved, stored) into a fresh database, once per split.

    nice -n 19 .venv/bin/python benchmarks/import_coldstart.py [--split-seed N ...] [--users 400]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from benchmarks.citeulike import load, split  # noqa: E402
from benchmarks.common import result_line  # noqa: E402
from benchmarks.feedback_sim import ingest, write_dump  # noqa: E402
from benchmarks.onboarding import item_tags  # noqa: E402
from benchmarks.quality_citeulike import REPORT_SPLITS, bootstrap, paired_ratio  # noqa: E402
from feedbot.library import jobs  # noqa: E402
from feedbot.library.parse import parse_bytes  # noqa: E402
from feedbot.library.resolve import Apis  # noqa: E402
from feedbot.ranking import rank, recommend, textmodel  # noqa: E402
from feedbot.store import db, subscribers  # noqa: E402
from feedbot.store.db import transaction  # noqa: E402

DAY = date(2026, 1, 1)
NOW = datetime(2026, 1, 1, 8, tzinfo=UTC)
PICKS = 5
ARMS = ("import", "onboarding", "interests", "five liked")
NOWHERE = "http://127.0.0.1:9"  # every entry has its abstract: no API is ever asked


def bibtex(items: list[int], texts: list[str]) -> bytes:
    """The items as a library file, as a reference manager would export it."""
    return "".join(f"@article{{item{i},\n  title = {{citeulike item {i}}},\n"
                   f"  abstract = {{{texts[i] or 'empty'}.}}\n}}\n" for i in items).encode()


def apis() -> Apis:
    return Apis(NOWHERE, NOWHERE)


def import_library(engine, telegram_id: int, raw: bytes, name: str) -> jobs.ImportReport:
    report = jobs.run(engine, telegram_id, name, lambda _: parse_bytes(raw), apis(), None, NOW)
    if not report.ok or report.skipped:
        raise SystemExit(f"the import refused a simulated library: {report.lines()[:3]}")
    return report


def arm_database(work: Path, arm: str, dump: Path) -> object:
    url = f"sqlite:///{work / f'{arm}.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    ingest(engine, dump, DAY)
    return engine


def evaluate(data, tags, split_seed: int, user_seed: int, n_users: int) -> tuple[dict[str, np.ndarray], float]:
    held = split(data, seed=split_seed)
    test_items = np.flatnonzero(held)
    eligible = [u for u, lib in enumerate(data.libraries) if (~held[lib]).sum() >= 5 and held[lib].any()]
    users = np.random.default_rng(user_seed).choice(eligible, size=min(n_users, len(eligible)), replace=False)
    rng = np.random.default_rng(split_seed)
    work = Path(tempfile.mkdtemp(prefix="feedbot-import-"))
    dump = work / "new-papers.txt"
    write_dump(dump, DAY, test_items.tolist(), data.texts)

    # Import speed: 1,000 training items with abstracts into a fresh database, end to end.
    speed = arm_database(work, "speed", dump)
    with transaction(speed) as session:
        subscribers.subscribe(session, 1, 1)
    sample = rng.choice(np.flatnonzero(~held), size=1000, replace=False).tolist()
    raw = bibtex(sample, data.texts)
    started = time.perf_counter()
    report = jobs.import_bytes(speed, _settings(), 1, "library.bib", raw, None, NOW)
    seconds = time.perf_counter() - started
    assert report.ok and report.added == 1000, report.lines()[:3]
    speed.dispose()

    hits = {arm: np.zeros(len(users)) for arm in ARMS}
    for arm in ARMS:
        engine = arm_database(work, arm, dump)
        imported = 0
        arm_started = time.perf_counter()
        for n, u in enumerate(users):
            telegram_id = 1000 + n
            with transaction(engine) as session:
                subscriber, _ = subscribers.subscribe(session, telegram_id, telegram_id)
                if arm in ("onboarding", "interests"):
                    counts = Counter(t for i in data.libraries[u] if not held[i] for t in tags[i])
                    for tag, _ in counts.most_common(3):
                        with suppress(subscribers.UserError):  # a tag feedbot refuses is not kept
                            subscribers.add_interests(session, subscriber, tag.replace("-", " ").replace("_", " "))
            train = [int(i) for i in data.libraries[u] if not held[i]]
            if arm == "five liked":
                train = sorted(np.random.default_rng([split_seed, int(u)]).choice(train, size=5, replace=False)
                               .tolist())
            if arm in ("import", "five liked"):
                imported += len(train)
                import_library(engine, telegram_id, bibtex(train, data.texts), f"user{u}.bib")
        if arm == "onboarding":
            rate_starters(engine, users, data)
        arm_seconds = time.perf_counter() - arm_started
        with Session(engine) as session:
            model = textmodel.fit(session)
            subs = [subscribers.get(session, 1000 + n) for n in range(len(users))]
            picks = recommend.recommend(session, model, subs, DAY, NOW, candidate_days=1,
                                        sizes={s.id: PICKS for s in subs})
            title_item = {}
            for sub, u, n in zip(subs, users, range(len(users)), strict=True):
                for pick in picks[sub.id]:
                    title_item[pick.paper_id] = int(pick.paper.title.rsplit(" ", 1)[1])
                saved = set(data.libraries[u].tolist())
                hits[arm][n] = sum(title_item[p.paper_id] in saved for p in picks[sub.id]) / PICKS
        engine.dispose()
        print(f"split {split_seed} {arm:<10} hit rate {hits[arm].mean():.4f}  "
              f"({imported:,} entries imported in {arm_seconds:.1f} s)", flush=True)
    print(f"split {split_seed}: {len(users)} users, {len(test_items):,} new papers; a 1,000-entry BibTeX "
          f"imported in {seconds:.2f} s", flush=True)
    return hits, seconds


def rate_starters(engine, users, data) -> None:
    """Each newcomer is shown feedbot's five starter papers and rates them: 👍 saved, 👎 not."""
    with Session(engine) as session, session.begin():
        model = textmodel.fit(session)
        pool = recommend.candidates(session, DAY, 1)
        # What recommend.starters does for one newcomer, with the day's topic order computed once.
        vectors = model.vectors_for(session, [p.id for p in pool])
        order = rank.starter_order(vectors, PICKS)
        for n, u in enumerate(users):
            subscriber = subscribers.get(session, 1000 + n)
            typed = subscribers.interests(session, subscriber)
            chosen = rank.interest_starters(vectors, model.transform(typed) if typed else None, order, PICKS)
            shown = [pool[i] for i in chosen]
            subscribers.record_shown(session, subscriber, [(p.id, 0.0, "starter") for p in shown], "starter",
                                     now=NOW - timedelta(hours=1))
            saved = set(data.libraries[u].tolist())
            for paper in shown:
                liked = int(paper.title.rsplit(" ", 1)[1]) in saved
                subscribers.vote(session, subscriber, paper.id, 1 if liked else -1, now=NOW - timedelta(hours=1))


def _settings():
    from feedbot.config import Settings

    return Settings(data_dir=Path("."), inbox=Path("."), database_url="", log_level="WARNING", telegram_token=None,
                    telegram_api_url=None, ingest_every_minutes=10, candidate_days=1, vote_half_life_days=90.0,
                    arxiv_api_url=NOWHERE, openalex_api_url=NOWHERE, zotero_api_url=NOWHERE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-seed", type=int, action="append", help=f"default {REPORT_SPLITS}")
    parser.add_argument("--user-seed", type=int, default=1)
    parser.add_argument("--users", type=int, default=400)
    args = parser.parse_args()
    splits = args.split_seed or list(REPORT_SPLITS)
    started = time.perf_counter()
    data = load()
    tags = item_tags(len(data.texts))
    runs = [evaluate(data, tags, seed, args.user_seed, args.users) for seed in splits]
    per_arm = {arm: [hits[arm] for hits, _ in runs] for arm in ARMS}
    seconds = [s for _, s in runs]
    print(f"\nmean over split seeds {splits}: share of the first digest's {PICKS} picks the user saved")
    for arm in ARMS:
        values = np.concatenate(per_arm[arm])
        low, high = bootstrap(values)
        print(f"{arm:<12}{values.mean():.4f} [{low:.4f}, {high:.4f}]")
    for other in ARMS[1:]:
        ratio, low, high = paired_ratio(per_arm["import"], per_arm[other])
        difference = np.concatenate(per_arm["import"]) - np.concatenate(per_arm[other])
        d_low, d_high = bootstrap(difference)
        print(f"import / {other}: {ratio:.2f}x [{low:.2f}, {high:.2f}]; paired difference "
              f"{difference.mean():+.4f} [{d_low:+.4f}, {d_high:+.4f}]")
    per_1000 = statistics.median(seconds)
    print(f"1,000-entry BibTeX imported end to end: median {per_1000:.2f} s over {len(seconds)} runs "
          f"({', '.join(f'{s:.2f}' for s in seconds)}); ran in {time.perf_counter() - started:.0f} s")
    means = {arm: float(np.mean([h.mean() for h in per_arm[arm]])) for arm in ARMS}
    print(result_line("import", day1_import=round(means["import"], 4), day1_onboarding=round(means["onboarding"], 4),
                      day1_interests=round(means["interests"], 4), day1_five_liked=round(means["five liked"], 4),
                      ratio=round(means["import"] / max(means["onboarding"], 1e-9), 2),
                      import_seconds_per_1000=round(per_1000, 2), splits="+".join(map(str, splits))))


if __name__ == "__main__":
    main()
