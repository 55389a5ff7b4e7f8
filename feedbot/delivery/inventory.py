"""What the database and the model folder hold, worded for `feedbot status`: papers per listing
date, dumps by status with the last failure, and the fitted text model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.orm import Session

from feedbot.ranking import textmodel
from feedbot.store import papers


def papers_report(session: Session) -> Iterator[str]:
    yield f"papers:   {papers.count_papers(session)}"
    for day, listed, first in papers.papers_per_date(session):
        yield f"  {day.isoformat()}: {listed} listed, {first} new"
    summaries = papers.dump_summaries(session)
    yield f"dumps:    {sum(s.count for s in summaries)}"
    for summary in summaries:
        yield f"  {summary.status}: {summary.count} (last: {summary.last_name})"
        if summary.status == "failed" and summary.last_error:
            yield f"    last error: {summary.last_error}"


def model_report(model_dir: Path) -> str:
    model = textmodel.load_latest(model_dir)
    if model is None:
        return "model:    not fitted yet (fitted after the first ingest, or `feedbot model refit`)"
    return (f"model:    {len(model.paper_ids)} papers, {model.vocabulary_size} terms, "
            f"fitted {model.fitted_at:%Y-%m-%d %H:%M} UTC in {model.fit_seconds:.1f} s")
