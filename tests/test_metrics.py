"""Prometheus metrics over real HTTP: the worker's own wiring (`worker.application`) against the
fake Bot API server, a digest sweep and votes through the Chat, then /metrics scraped and parsed
with prometheus_client's text parser."""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from feedbot import metrics, worker
from feedbot.store import subscribers
from feedbot.store.db import transaction
from tests.conftest import BotRunner
from tests.test_worker import add_subscriber, an_hour_ago, digests_to


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample on /metrics: {(name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def served(seeded, settings, telegram):
    """The worker's Application (its Chat, rate limiter and Worker) polling the fake server, and its
    metrics served on a free loopback port."""
    import dataclasses

    bot_settings = dataclasses.replace(settings, telegram_token=telegram.token, telegram_api_url=telegram.base_url)
    meter = metrics.Metrics()
    app = worker.application(bot_settings, seeded, meter)
    the_worker = app.post_init.__self__
    the_worker.pacer = worker.Pacer(0)
    the_worker.part_pause = 0
    server, thread = metrics.serve(meter, seeded, "127.0.0.1", 0, due_every=0)  # who is due: counted at each scrape
    runner = BotRunner(app)
    runner.start()
    yield runner, the_worker, server.server_port
    runner.stop()
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_metrics_after_a_sweep_a_refusal_and_votes(served, telegram, seeded):
    runner, the_worker, port = served
    add_subscriber(seeded, 601, "UTC", an_hour_ago(), "language models")
    add_subscriber(seeded, 602, "UTC", an_hour_ago(), "speech recognition")
    add_subscriber(seeded, 603, "UTC", an_hour_ago())
    with transaction(seeded) as session:
        subscribers.stop(subscribers.get(session, 603))
    telegram.inject(602, "403", "sendMessage")

    before = scrape(port)
    assert before[("feedbot_database_up", ())] == 1
    assert before[("feedbot_deliveries_due_unsent", ())] == 2  # 601 and 602; 603 stopped
    assert before[("feedbot_papers_ingested", (("source", "inbox"),))] == 354
    assert before[("feedbot_papers_ingested", (("source", "hf"),))] == 0
    assert before[("feedbot_votes", (("vote", "like"),))] == 0

    runner.call(the_worker._guarded(the_worker.sweep_digests)())
    [digest] = digests_to(telegram, 601)
    for data in (digest.buttons[0][0]["callback_data"], digest.buttons[1][1]["callback_data"],
                 "v:999999:+"):  # the last was never shown: refused, and still a vote press handled
        telegram.wait_answer(telegram.press(601, digest, data))

    after = scrape(port)
    sent = [method for method, _ in telegram.calls].count("sendMessage") - 1  # all but the one refused with 403
    assert sent == len(telegram.messages_to(601)) == 1
    assert after[("feedbot_telegram_messages_total", (("method", "sendMessage"), ("result", "sent")))] == sent
    assert after[("feedbot_telegram_messages_total", (("method", "sendMessage"), ("result", "Forbidden")))] == 1
    assert after[("feedbot_deliveries_total", (("status", "sent"),))] == 1
    assert after[("feedbot_deliveries_total", (("status", "blocked"),))] == 1
    assert after[("feedbot_digest_send_seconds_count", ())] == 2
    assert after[("feedbot_vote_seconds_count", ())] == 3
    assert after[("feedbot_vote_seconds_sum", ())] > 0
    assert after[("feedbot_sweep_seconds_count", (("sweep", "digests"),))] == 1
    assert after[("feedbot_sweep_last_success_timestamp_seconds", (("sweep", "digests"),))] > 1.7e9
    assert ("feedbot_sweep_failures_total", (("sweep", "digests"),)) not in after
    assert after[("feedbot_deliveries_due_unsent", ())] == 0
    states = {state: after[("feedbot_subscribers", (("state", state),))] for state in ("active", "stopped", "blocked")}
    assert states == {"active": 1, "stopped": 1, "blocked": 1}
    assert after[("feedbot_votes", (("vote", "like"),))] == 1
    assert after[("feedbot_votes", (("vote", "dislike"),))] == 1


def test_a_failing_sweep_is_counted_and_keeps_its_last_success(served, seeded):
    runner, the_worker, port = served

    async def sweep_inbox():
        raise RuntimeError("disk gone")

    runner.call(the_worker._guarded(sweep_inbox)())
    runner.call(the_worker._guarded(the_worker.sweep_digests)())
    samples = scrape(port)
    assert samples[("feedbot_sweep_failures_total", (("sweep", "inbox"),))] == 1
    assert ("feedbot_sweep_last_success_timestamp_seconds", (("sweep", "inbox"),)) not in samples
    assert samples[("feedbot_sweep_seconds_count", (("sweep", "inbox"),))] == 1
    assert samples[("feedbot_sweep_last_success_timestamp_seconds", (("sweep", "digests"),))] > 1.7e9


def test_an_unreadable_database_gives_database_up_0_not_a_failed_scrape(seeded):
    from sqlalchemy import text

    meter = metrics.Metrics()
    server, thread = metrics.serve(meter, seeded, "127.0.0.1", 0)
    try:
        assert scrape(server.server_port)[("feedbot_database_up", ())] == 1
        with transaction(seeded) as session:
            session.execute(text("DROP TABLE votes"))
        samples = scrape(server.server_port)
        assert samples[("feedbot_database_up", ())] == 0
        assert ("feedbot_votes", (("vote", "like"),)) not in samples
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize(("name", "source"), [
    ("hf 2026-03-11", "hf"), ("arxiv:cs.LG+cs.CL 2026-03-12", "arxiv"), ("2026-03-11.txt", "inbox"),
    ("hf.txt", "inbox"), ("arxiv.txt", "inbox")])
def test_source_of_a_dump(name, source):
    assert metrics.source_of(name) == source


def test_papers_fetched_from_a_source_count_under_it(engine, settings):
    import dataclasses
    from datetime import date

    from feedbot.sources import run
    from feedbot.sources.http import Client
    from feedbot.sources.spec import SourceSpec
    from tests.source_fixtures import hf_json
    from tests.source_server import Canned, SourceServer

    source = SourceServer().start()
    meter = metrics.Metrics()
    server, thread = metrics.serve(meter, engine, "127.0.0.1", 0)
    try:
        source.serve("/api/daily_papers", Canned(hf_json()))
        report = run.run(engine, dataclasses.replace(settings, hf_api_url=source.base_url), SourceSpec("hf"),
                         Client(min_interval=0, timeout=5, retries=0), day=date(2024, 3, 5))
        assert report.new == 2
        samples = scrape(server.server_port)
        assert samples[("feedbot_papers_ingested", (("source", "hf"),))] == 2
        assert samples[("feedbot_papers_ingested", (("source", "inbox"),))] == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        source.stop()


def test_the_dashboard_and_prometheus_config_match_what_is_served(engine):
    """Every series the Grafana dashboard queries is one the worker serves; Prometheus scrapes the
    port compose gives the worker; the dashboard's datasource is the provisioned one."""
    import json
    import re

    from tests.conftest import ROOT

    meter = metrics.Metrics()
    server, thread = metrics.serve(meter, engine, "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10) as response:
            families = {f.name: f.type for f in text_string_to_metric_families(response.read().decode())}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    served = set(families)
    for name, kind in families.items():
        served |= {"counter": {name + "_total"}, "histogram": {name + s for s in ("_bucket", "_sum", "_count")}
                   }.get(kind, set())
    deploy = ROOT / "deploy"
    dashboard = json.loads((deploy / "grafana" / "dashboards" / "feedbot.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"feedbot_[a-z_]+", target["expr"])}
    assert queried and queried <= served, queried - served
    assert {f for f in families if not f.endswith("_created")} <= {re.sub(r"_(total|bucket|sum|count)$", "", q)
                                                                     for q in queried}  # every family is shown
    compose = (deploy / "docker-compose.yml").read_text()
    port = re.search(r'FEEDBOT_METRICS_PORT: "(\d+)"', compose).group(1)
    scrape = (deploy / "prometheus.yml").read_text()  # every replica of `--scale worker=N`
    assert 'names: ["worker"]' in scrape and f"port: {port}" in scrape
    assert "profiles: [metrics]" in compose and "./grafana/dashboards:/etc/grafana/dashboards:ro" in compose
    datasource = (deploy / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {"feedbot-prometheus"}
    assert "uid: feedbot-prometheus" in datasource and "url: http://prometheus:9090" in datasource
    provider = (deploy / "grafana" / "provisioning" / "dashboards" / "feedbot.yml").read_text()
    assert "path: /etc/grafana/dashboards" in provider


def test_a_metrics_port_in_use_stops_the_worker_with_a_clear_error(seeded, env, telegram):
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "feedbot.cli", "worker"], capture_output=True, text=True, timeout=60,
            env={**env, "TELEGRAM_BOT_TOKEN": telegram.token, "FEEDBOT_TELEGRAM_API_URL": telegram.base_url,
                 "FEEDBOT_METRICS_PORT": str(port), "FEEDBOT_METRICS_LISTEN": "127.0.0.1"})
    assert done.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port} (FEEDBOT_METRICS_PORT)" in done.stdout
    assert not [method for method, _ in telegram.calls if method == "getUpdates"]  # never started polling


def test_who_is_due_is_counted_at_most_once_per_interval(engine):
    from datetime import UTC, datetime

    from tests.test_worker import add_subscriber

    collector = metrics.DatabaseCollector(engine, clock=lambda: datetime(2026, 3, 14, 12, tzinfo=UTC), due_every=3600)

    def due_unsent() -> float:
        return next(f for f in collector.collect() if f.name == "feedbot_deliveries_due_unsent").samples[0].value

    assert due_unsent() == 0
    add_subscriber(engine, 611, "UTC", "08:00")  # due since 08:00
    assert due_unsent() == 0  # the count of an hour ago still stands
    collector.due_every = 0
    assert due_unsent() == 1


def test_a_digest_claimed_after_the_count_is_not_counted_twice(engine):
    """Between two counts of who is due, a digest the sweep claims is in flight: counted once,
    as in flight, not also as still due (on both databases)."""
    from datetime import UTC, date, datetime

    from feedbot.store.models import Delivery, Subscriber

    now = datetime(2026, 3, 14, 12, tzinfo=UTC)
    collector = metrics.DatabaseCollector(engine, clock=lambda: now, due_every=3600)

    def due_unsent() -> float:
        return next(f for f in collector.collect() if f.name == "feedbot_deliveries_due_unsent").samples[0].value

    for telegram_id in (612, 613):
        add_subscriber(engine, telegram_id, "UTC", "08:00")
    assert due_unsent() == 2
    with transaction(engine) as session:
        [first] = session.scalars(select(Subscriber.id).where(Subscriber.telegram_id == 612))
        session.add(Delivery(subscriber_id=first, local_date=date(2026, 3, 14), status="claimed", claimed_at=now))
    assert due_unsent() == 2  # one due, one in flight
    with transaction(engine) as session:
        session.query(Delivery).update({"status": "sent"})
    assert due_unsent() == 1  # one due; the sent one is neither
