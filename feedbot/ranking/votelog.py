"""Everyone's votes, held in memory per database and kept current from the vote change log: a
refresh reads the counter and then only the votes of the subscribers whose votes changed since
(`store.subscribers.changed_since`), so rebuilding the community tables does not read every vote
again. Imports, undo and /delete are changes like any tap."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import and_, case, null, select, text
from sqlalchemy.orm import Session

from feedbot.store.db import chunks
from feedbot.store.models import Paper, Vote
from feedbot.store.subscribers import changed_since, votes_version


@dataclass(frozen=True)
class Votes:
    """One vote per entry, in no particular order (the votes' key makes each pair unique)."""

    subscriber: np.ndarray  # int32, as the ids' columns: 13 bytes a vote, kept by every process that ranks
    paper: np.ndarray  # int32
    value: np.ndarray  # int8: +1 or -1
    hour: np.ndarray  # int32: a library 👍's time in hours since 1970 (UTC), for the fold's weights; 0 for the rest

    @classmethod
    def of(cls, rows: list, timed: bool = True) -> Votes:
        """From (subscriber, paper, value, voted_at or None) rows, or (subscriber, paper, value) rows
        when not `timed`; flattened first, as numpy reads database rows (not tuples) one attribute
        at a time, 100 times slower."""
        array = np.fromiter((x for row in rows for x in row[:3]), np.int64, count=3 * len(rows)).reshape(-1, 3)
        hours = np.zeros(len(rows), np.int32)
        dated = [n for n, row in enumerate(rows) if row[3] is not None] if timed else []
        if dated:
            hours[dated] = [_hour(rows[n][3]) for n in dated]
        return cls(array[:, 0].astype(np.int32), array[:, 1].astype(np.int32), array[:, 2].astype(np.int8), hours)

    def where(self, keep: np.ndarray) -> Votes:
        return Votes(self.subscriber[keep], self.paper[keep], self.value[keep], self.hour[keep])

    def without(self, subscribers: np.ndarray) -> Votes:
        return self.where(~np.isin(self.subscriber, subscribers))

    def plus(self, other: Votes) -> Votes:
        return Votes(np.concatenate([self.subscriber, other.subscriber]), np.concatenate([self.paper, other.paper]),
                     np.concatenate([self.value, other.value]), np.concatenate([self.hour, other.hour]))

    def as_set(self) -> set[tuple[int, int, int]]:
        """For comparisons: every vote as (subscriber, paper, value)."""
        return set(zip(self.subscriber.tolist(), self.paper.tolist(), self.value.tolist(), strict=True))


def _hour(when: datetime) -> int:
    """Hours since 1970 of a vote's time (SQLite hands back naive UTC)."""
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() // 3600)


def read_votes(session: Session, subscriber_ids: list[int] | None = None) -> Votes:
    """Every vote, or the votes of `subscriber_ids`. Only the 👍 on papers never listed (those a
    library fold weighs by date) come with their time: no other vote's is read or converted, and
    with no such paper (no library imported) the votes are read as they were before libraries.
    A paper imported between the two reads is read again with the next change (its votes' change
    comes after the counter the caller read)."""
    unlisted = select(Paper.id).where(Paper.first_listed.is_(None))
    timed = session.scalar(unlisted.limit(1)) is not None
    query = select(Vote.subscriber_id, Vote.paper_id, Vote.value)
    if timed:
        query = query.add_columns(case((and_(Vote.value > 0, Vote.paper_id.in_(unlisted)), Vote.voted_at),
                                       else_=null()))
    if subscriber_ids is None:
        return Votes.of(session.execute(query).all(), timed)
    rows = []
    for chunk in chunks(subscriber_ids, 900):
        rows += session.execute(query.where(Vote.subscriber_id.in_(chunk))).all()
    return Votes.of(rows, timed)


def identity(session: Session) -> object:
    """What tells apart two databases made one after the other at the same address: on PostgreSQL
    the change log's table oid (new with every database or schema made anew, the oid counter being
    the server's), on SQLite the file's device and inode (None: a database in memory)."""
    if session.get_bind().dialect.name == "postgresql":
        return session.scalar(text("SELECT 'vote_changes'::regclass::oid"))
    path = next((row[2] for row in session.execute(text("PRAGMA database_list")) if row[1] == "main"), "")
    if not path:
        return None
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


class VoteMirror:
    """The votes of each database as of a counter value, refreshed incrementally. `reads` counts
    the subscribers whose votes were read again (None for a full read), the latest 1,000 refreshes,
    for tests and figures. It holds the votes of the last `size` databases (addresses) it read.
    Every vote is read again at least every `full_every` seconds, which bounds how long a change
    that no counter step names stays unseen (one made by a process still running the code from
    before the change log, during an upgrade, or by hand in the database)."""

    def __init__(self, size: int = 2, full_every: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.size, self.full_every, self.clock = size, full_every, clock
        self._held: dict[str, tuple[object, int, Votes, float]] = {}
        self._lock = threading.Lock()
        self.reads: deque[int | None] = deque(maxlen=1000)

    def forget(self) -> None:
        """Hold nothing: the next read of each database reads every vote."""
        with self._lock:
            self._held.clear()

    def current(self, session: Session) -> tuple[int, Votes]:
        """The counter value read and the votes as of at least that value. The counter is read
        first: every change numbered up to it has committed, so reading the subscribers it names
        afterwards misses none (a later change read as well is read again next time: harmless)."""
        url = str(session.get_bind().url)
        with self._lock:
            made, version, now = identity(session), votes_version(session), self.clock()
            held = self._held.pop(url, None)
            if held is not None and (held[0] != made or now - held[3] >= self.full_every):
                held = None  # a database made anew under the same address, or time for a full read
            read_at = now if held is None else held[3]
            if held is not None and held[1] == version:
                votes = held[2]
            elif held is None or version < held[1]:  # the counter went back: not the database read before
                votes, read_at = read_votes(session), now
                self.reads.append(None)
            else:
                changed = changed_since(session, held[1])
                votes = held[2].without(np.array(changed, np.int64)).plus(read_votes(session, changed))
                self.reads.append(len(changed))
            self._held[url] = (made, version, votes, read_at)  # the latest read last: the oldest goes first
            while len(self._held) > self.size:
                del self._held[next(iter(self._held))]
            return version, votes


MIRROR = VoteMirror()
