"""Why a subscriber gets no digest (or an empty one), worded once per audience.

The decision is made in one place — `schedule.decide` for timing, `digests.empty_reason_code`
for an empty day — and returns a code; /status, the empty-day message, `feedbot status` and
`digest --dry-run` all word that code from this table, so they cannot disagree.
"""

from __future__ import annotations

# code: (to the subscriber, to the admin)
TEXT: dict[str, tuple[str, str]] = {
    "due": ("due now: it goes out within a minute", "due now: the next digest sweep sends it"),
    "before_time": ("comes at {at}", "before their time ({time} {zone}): due {at}"),
    "too_soon": ("comes at {at}, 12 hours after your last one",
                 "last digest under 12 h ago (time or zone changed): due {at}"),
    "delivered": ("today's digest is done; the next comes at {at}", "already has today's digest"),
    "missed": ("today's digest could not go out in time; the next comes at {at}",
               "missed: today's late window closed undelivered (recorded as skipped)"),
    "not_today": ("no digest on {weekday}s ({frequency}); the next comes at {at}",
                  "no digest on {weekday}s ({frequency})"),
    "paused": ("your digest is paused{until} (send /resume to restart it)", "paused{until}"),
    "stopped": ("you have unsubscribed (send /start to come back)", "unsubscribed"),
    "blocked": ("this chat blocked the bot", "blocked the bot"),
    "dump_failed": ("the latest papers dump could not be read; the admin sees why in `feedbot status`",
                    "the latest dump failed to ingest (see dumps above)"),
    "no_papers": ("no papers yet — your first digest comes after the first listing",
                  "no papers have been listed yet"),
    "seen_all": ("no new papers since the listing of {listed_on} (you have seen them all)",
                 "has seen every paper since the listing of {listed_on}"),
}
AUDIENCES = ("subscriber", "admin")


def word(code: str, audience: str, **facts: object) -> str:
    """The sentence for `code` as `audience` reads it; facts fill its blanks."""
    text = TEXT[code][AUDIENCES.index(audience)]
    return text.format_map(_Blank(facts))


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def explain(subscriber, slot, audience: str) -> str:
    """`schedule.decide`'s slot for this subscriber, worded for `audience`: times in the
    subscriber's zone (labelled) for them, in UTC (labelled) for the admin."""
    from datetime import UTC

    from feedbot.store.subscribers import zone

    at = ""
    if slot.at is not None:
        local = slot.at.astimezone(zone(subscriber.timezone))
        at = (f"{local:%a %d %b %H:%M} ({subscriber.timezone})" if audience == "subscriber"
              else f"{slot.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    until = ""
    if subscriber.paused_until is not None and subscriber.paused_until.year < 9999:
        until = f" until {subscriber.paused_until:%a %d %b}"
    return word(slot.reason, audience, at=at, time=subscriber.send_time, zone=subscriber.timezone,
                weekday=f"{slot.day:%A}", frequency=subscriber.frequency, until=until)
