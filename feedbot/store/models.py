"""The tables: papers and the dumps that listed them; subscribers, their votes and deliveries.

Integrity rules live here as constraints (not only in code), so two processes can never store the
same paper twice, nor deliver a subscriber the same paper or two digests for one local date.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from feedbot.clock import utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True)}


class Paper(Base):
    __tablename__ = "papers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(512), unique=True)
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text)
    # None: known only from a subscriber's imported library, never listed, so never a pick.
    first_listed: Mapped[date | None] = mapped_column(Date, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Where the paper lives, when its text or its source says: one row per arXiv id.
    arxiv_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    doi: Mapped[str | None] = mapped_column(String(255), unique=True)  # lower-case, without https://doi.org/
    url: Mapped[str | None] = mapped_column(Text)
    authors: Mapped[str | None] = mapped_column(Text)  # one name per line, in order
    code_url: Mapped[str | None] = mapped_column(Text)
    # Title, abstract and authors case- and accent-folded, so search matches "Über" for "über" on any DB.
    search_text: Mapped[str] = mapped_column(Text, default="")


class Dump(Base):
    __tablename__ = "dumps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    listed_on: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))  # ingested | failed
    error: Mapped[str | None] = mapped_column(Text)
    entries: Mapped[int] = mapped_column(Integer, default=0)
    new_papers: Mapped[int] = mapped_column(Integer, default=0)
    known_papers: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    __table_args__ = (CheckConstraint("status IN ('ingested', 'failed')", name="status"),)


class Listing(Base):
    """One sighting: dump D listed paper P under date L."""

    __tablename__ = "listings"

    dump_id: Mapped[int] = mapped_column(ForeignKey("dumps.id", ondelete="CASCADE"), primary_key=True)
    paper_id: Mapped[int] = mapped_column(
        ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    listed_on: Mapped[date] = mapped_column(Date, index=True)
    position: Mapped[int] = mapped_column(Integer)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(16), default="active")  # active | stopped | blocked
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    send_time: Mapped[str] = mapped_column(String(5), default="08:00")
    digest_size: Mapped[int] = mapped_column(SmallInteger, default=5)
    frequency: Mapped[str] = mapped_column(String(16), default="daily")
    paused_until: Mapped[date | None] = mapped_column(Date)
    awaiting: Mapped[str | None] = mapped_column(String(32))  # what the next plain message answers
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A person's private chat, or a group or channel served as one subscriber (telegram_id is then
    # the chat's id): its members' votes are in member_votes, never in their private profiles.
    kind: Mapped[str] = mapped_column(String(16), default="private", server_default="private")
    # The Sunday recap: None follows the default (on for weekly digests), True/False once set by /recap.
    recap: Mapped[bool | None] = mapped_column(Boolean)

    __table_args__ = (
        CheckConstraint("state IN ('active', 'stopped', 'blocked')", name="state"),
        CheckConstraint("kind IN ('private', 'group', 'channel')", name="kind"),
        CheckConstraint("frequency IN ('daily', 'weekdays', 'weekly')", name="frequency"),
        CheckConstraint("digest_size BETWEEN 1 AND 20", name="digest_size"),
    )


class Interest(Base):
    __tablename__ = "interests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("subscriber_id", "text"),)


class Mute(Base):
    __tablename__ = "mutes"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    word: Mapped[str] = mapped_column(String(100), primary_key=True)


class Import(Base):
    """One import of a subscriber's library (a file, pasted ids, a Zotero library): its 👍 carry its id,
    so `/import undo` takes back exactly what it added. At most one `running` per subscriber."""

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(255))  # the file name, "zotero" or "pasted ids"
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed | undone
    owner: Mapped[str | None] = mapped_column(String(128))  # host:pid running it
    entries: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)  # 👍 it stored
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    __table_args__ = (CheckConstraint("status IN ('running', 'done', 'failed', 'undone')", name="status"),)


class Vote(Base):
    __tablename__ = "votes"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    paper_id: Mapped[int] = mapped_column(
        ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    value: Mapped[int] = mapped_column(SmallInteger)  # +1 or -1
    voted_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A tap on a button, or a paper of the subscriber's imported library (a 👍 like any other).
    origin: Mapped[str] = mapped_column(String(16), default="tap", server_default="tap")
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id", ondelete="CASCADE"), index=True)

    __table_args__ = (
        CheckConstraint("value IN (-1, 1)", name="value"),
        CheckConstraint("origin IN ('tap', 'import')", name="origin"),
    )


class MemberVote(Base):
    """A group or channel member's own 👍/👎 on the group's pick: toggled by its member, counted on
    the button, and read together as the group's profile (ranking.groups)."""

    __tablename__ = "member_votes"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    paper_id: Mapped[int] = mapped_column(
        ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # the member's Telegram user id
    value: Mapped[int] = mapped_column(SmallInteger)  # +1 or -1
    voted_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (CheckConstraint("value IN (-1, 1)", name="value"),)


class Delivery(Base):
    """One digest for one subscriber's local date; claimed before it is sent, exactly once."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    local_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    message_ids: Mapped[str | None] = mapped_column(Text)  # every part's, comma-separated
    error: Mapped[str | None] = mapped_column(Text)
    # Parts of a split digest confirmed sent, recorded one by one: a retry resumes after them.
    parts_sent: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    source: Mapped[str] = mapped_column(String(16), default="schedule", server_default="schedule")
    owner: Mapped[str | None] = mapped_column(String(128))  # the sending process (delivery.ownership)
    attempted_at: Mapped[datetime | None]  # when that process last touched it
    # Picks in each part as first split ("2,1"): a resume renders only the picks after the parts
    # already sent, so a paper changed meanwhile can neither repeat nor drop a pick.
    part_picks: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("subscriber_id", "local_date"),
        CheckConstraint(
            "status IN ('claimed', 'sending', 'sent', 'failed', 'blocked', 'uncertain', 'skipped', 'empty')",
            name="status",
        ),
    )


class Recap(Base):
    """One weekly recap for one subscriber's week (the Monday it starts, local): claimed before it is
    sent, so zone changes and restarts never send a week's recap twice."""

    __tablename__ = "recaps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    week: Mapped[date] = mapped_column(Date, index=True)
    status: Mapped[str] = mapped_column(String(16))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    message_ids: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("subscriber_id", "week"),
        CheckConstraint("status IN ('claimed', 'sent', 'empty', 'failed', 'blocked')", name="status"),
    )


class Shown(Base):
    """A paper put in front of a subscriber (digest, starter set or search): never picked again."""

    __tablename__ = "shown"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    paper_id: Mapped[int] = mapped_column(
        ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True
    )
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    source: Mapped[str] = mapped_column(String(16))  # digest | starter | search
    position: Mapped[int] = mapped_column(SmallInteger, default=0)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    reason: Mapped[str] = mapped_column(Text, default="")
    shown_at: Mapped[datetime] = mapped_column(default=utcnow)


class Sweep(Base):
    """When each scheduled job last ran and what it did, for `feedbot status`."""

    __tablename__ = "sweeps"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    ran_at: Mapped[datetime]
    summary: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)  # the last run's failure; None once a run succeeds
    failing_since: Mapped[datetime | None]  # the first failure of the current run of failures


class Heartbeat(Base):
    """A worker process saying it is alive, so `feedbot status` can tell a stuck or dead one."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)  # the process (delivery.ownership)
    host: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime]
    sweep_started_at: Mapped[datetime | None]
    sweep_finished_at: Mapped[datetime | None]
    progress_at: Mapped[datetime | None]  # the last digest sent or recorded: a long sweep that moves is not stuck
    role: Mapped[str | None] = mapped_column(String(16))  # "leader" or "standby" (feedbot.roles)
    role_since: Mapped[datetime | None]  # when it took that role
    polling: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # holds the poller's turn


Index("ix_deliveries_local_date", Delivery.local_date)
Index("ix_deliveries_status_id", Delivery.status, Delivery.id)  # senders take the oldest `claimed` rows
Index("ix_shown_paper_id", Shown.paper_id)


class VoteCounter(Base):
    """One row: how many times any vote changed. Bumped in the same transaction as the change, so
    a reader that sees the same number sees the same votes (ranking caches its shared tables by it)."""

    __tablename__ = "vote_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    changes: Mapped[int] = mapped_column(BigInteger)


class VoteChange(Base):
    """Each subscriber whose votes ever changed, with the `VoteCounter` value of their latest change:
    one row each, so the log never grows past the subscribers. A log about subscribers, not a
    subscriber's own row (never merged or erased with them; /delete leaves only its row id and
    number, which tell readers its votes are gone): no foreign key."""

    __tablename__ = "vote_changes"

    voter_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # a subscribers.id
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
