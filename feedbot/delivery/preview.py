"""A subscriber's picks as they would be ranked on a day, shown to the admin (`feedbot rank`):
the digest's ranking with any number of picks, sending and recording nothing."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy.orm import Session

from feedbot.config import Settings
from feedbot.delivery import digests
from feedbot.ranking import recommend
from feedbot.ranking.textmodel import ModelCache
from feedbot.store.models import Subscriber


def ranked(session: Session, settings: Settings, subscriber: Subscriber, day: date, now: datetime,
           size: int) -> digests.Digest:
    """Up to `size` picks among the papers listed up to `day`, each with its score and why-line;
    with none, the reason the subscriber would read."""
    model = ModelCache(settings.model_dir).get(session)  # None before the first listing: no picks
    ranking = recommend.recommend(session, model, [subscriber], day, now, settings.candidate_days,
                                  settings.vote_half_life_days, sizes={subscriber.id: size}) if model else {}
    picks = ranking.get(subscriber.id, [])
    listed_on = recommend.latest_listing(session, day)
    reason = "" if picks else digests.empty_reason(session, subscriber, day, listed_on)
    return digests.Digest(subscriber.id, day, listed_on, picks, reason, settings.paper_link)
