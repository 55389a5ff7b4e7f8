"""Fetch a source and store its papers as one batch, exactly like a dump (see feedbot.sources.ingest)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import date

from sqlalchemy import Engine

from feedbot.config import Settings
from feedbot.sources import arxiv, hf
from feedbot.sources.http import Client, SourceError
from feedbot.sources.ingest import IngestReport, store_records
from feedbot.sources.records import PaperRecord
from feedbot.sources.spec import SourceSpec, parse_sources

log = logging.getLogger(__name__)

DEFAULT_ARXIV_MAX = 200


def default_client(spec: SourceSpec) -> Client:
    return Client(min_interval=arxiv.MIN_INTERVAL if spec.kind == "arxiv" else 1.0)


def fingerprint(spec: SourceSpec, records: list[PaperRecord]) -> str:
    """The same answer fetched again is the same batch: a no-op, like a dump ingested twice."""
    canonical = json.dumps([spec.text] + [[r.arxiv_id, r.key, r.listed_on.isoformat(), r.authors, r.code_url]
                                          for r in records], ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def run(engine: Engine, settings: Settings, spec: SourceSpec, client: Client | None = None,
        day: date | None = None, limit: int = DEFAULT_ARXIV_MAX) -> IngestReport:
    """Fetch and store one source. A refused answer is reported as failed and stores nothing."""
    own = client is None
    client = client or default_client(spec)
    try:
        if spec.kind == "hf":
            records = hf.fetch(client, settings.hf_api_url, day)
        else:
            records = arxiv.fetch(client, settings.arxiv_api_url, spec.categories, limit)
    except SourceError as exc:
        log.warning("source %s refused: %s", spec.text, exc)
        return IngestReport(spec.text, "failed", error=str(exc))
    finally:
        if own:
            client.close()
    if not records:  # the parsers refuse an empty answer; this keeps a batch from ever being empty
        return IngestReport(spec.text, "failed", error="the answer held no papers")
    name = f"{spec.text} {(day or max(r.listed_on for r in records)).isoformat()}"
    report = store_records(engine, name, fingerprint(spec, records), records)
    log.info("source %s: %s", spec.text, report.line())
    return report


def run_configured(engine: Engine, settings: Settings,
                   client_factory: Callable[[SourceSpec], Client] = default_client) -> list[IngestReport]:
    """Every source in FEEDBOT_SOURCES, one after the other (the worker's scheduled job).

    Sources of one kind share one client, so two arXiv sources are still paced 3 s apart. One
    source's trouble, whatever it is, is that source's failed report: the others still run.
    """
    reports = []
    clients: dict[str, Client] = {}
    try:
        for spec in parse_sources(",".join(settings.sources)):
            client = clients.get(spec.kind) or clients.setdefault(spec.kind, client_factory(spec))
            try:
                reports.append(run(engine, settings, spec, client))
            except Exception as exc:  # a bug or a database outage: reported, and the sweep goes on
                log.exception("source %s failed", spec.text)
                reports.append(IngestReport(spec.text, "failed", error=f"{type(exc).__name__}: {exc}"))
    finally:
        for client in clients.values():
            client.close()
    return reports
