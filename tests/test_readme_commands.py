"""Every command the README shows, run as written, as a real subprocess, on a seeded database
(SQLite and PostgreSQL); every subcommand the parser defines is in the README's Admin CLI table.

How the README's commands become runs:
- every inline code span or code-block line that starts with `feedbot ` is a command; `[…]` marks
  an optional part and `…` a repeatable one, so a command runs twice: with every optional part
  once (its "full" form) and with none (its "minimal" form);
- PLACEHOLDERS says what stands for each upper-case word (`ID`, `PATH`, `D`, …);
- CASES says, for each form as the README spells it, the exit status and the output it must
  show, and names any extra setup it needs from SETUPS. A new command in the README means one
  table row, plus one CASES entry saying what it prints (and a SETUPS entry if it needs one).
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from unittest import mock

import pytest
from sqlalchemy import inspect

from feedbot.store import db
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
USER = 4242  # the seeded subscriber: onboarded through the console chat, with interests and votes
DAY = "2026-03-12"  # the example dumps' second listing date
NEW_DUMP = textwrap.dedent("""\
    new

    Mar 12

    Speech recognition for whale songs

    We transcribe whale songs with a speech recognition model trained on ocean recordings.

    Sparse attention on very long contexts

    We make attention sparse so that language models read whole books at once.
    """)
HELP = "sends you the new papers you're most likely to want"


# --- reading the README ----------------------------------------------------------------------

def fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)


def code_spans(text: str) -> list[str]:
    """Inline code spans outside fenced blocks, plus every line of the fenced blocks."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    lines = [line.split("#")[0].strip() for block in fenced_blocks(text) for line in block.splitlines()]
    return re.findall(r"`([^`\n]+)`", prose) + [line for line in lines if line]


def forms(usage: str) -> list[str]:
    """The full form (every optional part once, repetition marks dropped) and the minimal one."""
    def tidy(text: str) -> str:
        return " ".join(word for word in text.replace("…", " ").split())

    full = tidy(usage.replace("[", " ").replace("]", " "))
    minimal = tidy(re.sub(r"\[[^\[\]]*\]", " ", usage))
    return list(dict.fromkeys([full, minimal]))


def readme_commands() -> list[str]:
    """Every `feedbot …` command form the README shows, without the leading `feedbot`."""
    found = []
    for span in code_spans(README):
        if re.match(r"feedbot [a-z]", span):
            found += [form.removeprefix("feedbot ") for form in forms(span)]
    return list(dict.fromkeys(found))


def admin_table_rows() -> list[str]:
    """The first column of the Admin CLI table: each cell's `feedbot …` usages."""
    section = README.split("## Admin CLI", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `feedbot ")]
    return [span for row in rows for span in re.findall(r"`(feedbot [^`]+)`", row.split(" | ")[0])]


# --- what stands for the placeholders, and what each command must do -------------------------

PLACEHOLDERS: dict[str, str] = {
    "ID": str(USER),
    "PATH": "{tmp}/new/whales.txt",
    "D": DAY,
    "YYYY-MM-DD": DAY,
    "REV": "base",
    "CAT": "cs.LG",
    "WORDS": "speech",
    "N": "3",
    "FILE": "{tmp}/out.png",  # an output file by default; a case whose FILE is read overrides it
    "FILE.png": "{tmp}/stats.png",
    "ZOTERO_USER_ID": "7",
}


@dataclass
class Case:
    out: tuple[str, ...]  # each must appear in stdout + stderr, after {user}, {head}, {tmp} are filled in
    status: int = 0
    setup: tuple[str, ...] = ()  # names in SETUPS
    stdin: str = ""
    values: dict[str, str] = field(default_factory=dict)  # placeholder values for this case only
    check: Callable[[Run], None] | None = None  # more to check after the run


def moved_to_done(run: Run) -> None:
    assert (run.tmp / "data" / "inbox" / "done" / "whales.txt").exists()


def database_empty(run: Run) -> None:
    engine = db.make_engine(run.env["DATABASE_URL"])
    assert db.current_revision(engine) is None and set(inspect(engine).get_table_names()) <= {"alembic_version"}


def sent_to_user(run: Run) -> None:
    assert [m for m in run.telegram.messages_to(USER) if "for you" in m.text]


def plot_written(run: Run) -> None:
    assert (run.tmp / "stats.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def library_liked(run: Run) -> None:
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from feedbot.store.models import Subscriber, Vote

    engine = db.make_engine(run.env["DATABASE_URL"])
    with Session(engine) as session:
        imported = session.scalar(select(func.count()).select_from(Vote).join(Subscriber)
                                  .where(Subscriber.telegram_id == USER, Vote.origin == "import"))
    engine.dispose()
    assert imported == 2


def asked_arxiv_for_three(run: Run) -> None:
    assert run.sources.requests[-1].query["max_results"] == "3"


CASES: dict[str, Case] = {
    "db upgrade REV": Case(("at revision {head}",), values={"REV": "head"}),
    "db upgrade": Case(("at revision {head}",)),
    "db downgrade REV": Case(("downgraded to base",), check=database_empty),
    "ingest PATH --date YYYY-MM-DD": Case(("whales.txt: 2 entries, 2 new papers, 0 already known",
                                           "total: 1 dumps, 2 new papers", "text model fitted: 356 papers")),
    "ingest": Case(("sweeping inbox", "whales.txt: 2 entries, 2 new papers", "total: 1 dumps, 2 new papers"),
                   setup=("inbox",), check=moved_to_done),
    "fetch hf --date D": Case((f"hf {DAY}: 2 entries, 2 new papers", "text model fitted: 356 papers"),
                              setup=("sources",)),
    "fetch hf --date YYYY-MM-DD": Case((f"hf {DAY}: 2 entries, 2 new papers",), setup=("sources",)),
    "fetch hf": Case(("hf 2024-03-05: 2 entries, 2 new papers",), setup=("sources",)),
    "fetch arxiv --category CAT --max N": Case(("arxiv:cs.LG 2024-03-04: 1 entries, 1 new papers",),
                                               setup=("sources",), check=asked_arxiv_for_three),
    "fetch arxiv --category CAT": Case(("arxiv:cs.LG 2024-03-04: 1 entries, 1 new papers",), setup=("sources",)),
    "fetch arxiv --category cs.LG --category cs.CL --max N": Case(
        ("arxiv:cs.LG+cs.CL 2024-03-04: 1 entries, 1 new papers",), setup=("sources",), check=asked_arxiv_for_three),
    "fetch arxiv --category cs.LG": Case(("arxiv:cs.LG 2024-03-04: 1 entries, 1 new papers",), setup=("sources",)),
    "status --check": Case(("problem: no worker has ever reported",), status=1),
    "status": Case(("schema:   {head}", "papers:   354", f"  {DAY}: 159 listed, 143 new", "ingested: 5",
                    "subscribers: 1 (1 active)", "recaps this week: none", "model:    354 papers")),
    "papers --date D --search WORDS --limit N": Case(("(3 papers)", f"  {DAY}  ")),
    "papers": Case((f"  {DAY}  Yi: Open Foundation Models by 01.AI", "(20 papers)")),
    "model refit": Case(("text model fitted: 354 papers",)),
    "rank --user ID --date D --limit N": Case(("picks for {user} from papers listed up to 2026-03-12:", " 3. [+",
                                              "because you liked “")),
    "rank --user ID": Case(("picks for {user} from papers listed up to 2026-03-12:", " 5. [+")),
    "digest --dry-run --user ID": Case(("== {user} (UTC", "5 picks for you from the listing of 12 Mar")),
    "digest --dry-run": Case(("== {user} (UTC", "5 picks for you from the listing of 12 Mar")),
    "digest --send --user ID": Case(("to {user}: sent",), setup=("telegram",), check=sent_to_user),
    "digest --send": Case(("--send needs --user ID",), status=2),
    "subscribers": Case(("        {user}  UTC", "(1 subscribers)")),
    "chat --user ID": Case(("> /status", "bye"), stdin="/status\nquit\n"),
    "chat": Case(("> /help", HELP, "bye"), stdin="/help\nquit\n"),
    "stats --days N --plot FILE.png": Case(("digests  picks  👍 rate", "total", "plot written to {tmp}/stats.png"),
                                           check=plot_written),
    "stats --plot FILE.png": Case(("digests  picks  👍 rate", "total", "plot written to {tmp}/stats.png"),
                                  check=plot_written),
    "stats": Case(("digests  picks  👍 rate", "total"),),
    "import --user ID FILE": Case(("Imported library.bib (BibTeX file): 2 read", "2 added to your library"),
                                  setup=("library",), values={"FILE": "{tmp}/library.bib"}, check=library_liked),
    "import --user ID --zotero ZOTERO_USER_ID": Case(("Imported", "2 read", "2 added to your library"),
                                                     setup=("zotero",), check=library_liked),
    "worker": Case(("worker starting: database", "subscriber=", "status=sent", "worker stopped"),
                   setup=("telegram",)),  # run by run_worker: it answers /help and sends the due digest
}


# --- setup ------------------------------------------------------------------------------------

@dataclass
class Run:
    tmp: Path
    env: dict[str, str]
    engine: object
    stack: ExitStack
    telegram: object = None
    sources: object = None

    def fill(self, text: str) -> str:
        return text.format(user=USER, head=db.head_revision(), tmp=self.tmp)


def onboard(engine) -> None:
    """The subscriber as a newcomer leaves onboarding: an interest, two 👍, due an hour ago (UTC)."""
    from feedbot.store import papers, subscribers
    from feedbot.store.db import transaction

    with transaction(engine) as session:
        subscriber, _ = subscribers.subscribe(session, USER, USER, "admin")
        subscriber.timezone, subscriber.send_time = "UTC", f"{datetime.now(UTC) - timedelta(hours=1):%H:%M}"
        subscribers.add_interests(session, subscriber, "speech recognition")
        liked = papers.search_papers(session, "speech recognition", 2)
        subscribers.record_shown(session, subscriber, [(p.id, 0.0, "starter") for p in liked], "starter")
        for paper in liked:
            subscribers.vote(session, subscriber, paper.id, 1)


def drop_in_inbox(run: Run) -> None:
    inbox = run.tmp / "data" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "whales.txt").write_text(NEW_DUMP)


def serve_sources(run: Run) -> None:
    from tests.source_fixtures import arxiv_entry, arxiv_feed, hf_json
    from tests.source_server import Canned, SourceServer

    run.sources = SourceServer().start()
    run.stack.callback(run.sources.stop)
    run.sources.serve("/api/daily_papers", Canned(hf_json()))
    run.sources.serve("/api/query", Canned(arxiv_feed([arxiv_entry("2403.09999", "New one")]), "application/atom+xml"))
    run.env.update(FEEDBOT_HF_API_URL=run.sources.base_url, FEEDBOT_ARXIV_API_URL=run.sources.base_url + "/api/query")


def serve_telegram(run: Run) -> None:
    from tests.fake_telegram import FakeTelegram

    run.telegram = FakeTelegram().start()
    run.stack.callback(run.telegram.stop)
    run.env.update(TELEGRAM_BOT_TOKEN=run.telegram.token, FEEDBOT_TELEGRAM_API_URL=run.telegram.base_url)


LIBRARY = """\
@article{whale, title={Listening to whales with neural networks}, abstract={We classify whale calls.},
  timestamp={2025-01-02}}
@misc{books, title={Reading whole books with sparse attention}, abstract={Long contexts made cheap.}}
"""


def write_library(run: Run) -> None:
    (run.tmp / "library.bib").write_text(LIBRARY)


def serve_zotero(run: Run) -> None:
    import json

    from tests.source_server import Canned, SourceServer

    def item(key: str, title: str) -> dict:
        return {"key": key, "data": {"key": key, "itemType": "journalArticle", "title": title,
                                     "abstractNote": f"About {title}.", "dateAdded": "2025-02-02T02:02:02Z"}}

    run.sources = SourceServer().start()
    run.stack.callback(run.sources.stop)
    key = {"userID": 7, "access": {"user": {"library": True}}}
    run.sources.serve("/keys/current", Canned(json.dumps(key).encode()))
    run.sources.serve("/users/7/items/top", Canned(json.dumps([item("A", "Whale song grammar"),
                                                               item("B", "Sparse attention for books")]).encode(),
                                                   headers={"Total-Results": "2"}))
    run.env.update(FEEDBOT_ZOTERO_API_URL=run.sources.base_url, ZOTERO_API_KEY="Readme0Key0123")


SETUPS: dict[str, Callable[[Run], None]] = {"inbox": drop_in_inbox, "sources": serve_sources,
                                           "telegram": serve_telegram, "library": write_library,
                                           "zotero": serve_zotero}


@pytest.fixture
def ready(seeded, env, tmp_path):
    """The example dumps ingested, the model fitted, one onboarded subscriber, a new dump to ingest."""
    onboard(seeded)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "whales.txt").write_text(NEW_DUMP)
    with ExitStack() as stack:
        yield Run(tmp_path, dict(env), seeded, stack)


def feedbot(run: Run, argv: list[str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "feedbot.cli", *argv], env=run.env, input=stdin,
                          capture_output=True, text=True, timeout=180)


def argv_of(form: str, run: Run, values: dict[str, str]) -> list[str]:
    return [run.fill({**PLACEHOLDERS, **values}.get(word, word)) for word in shlex.split(form)]


def run_worker(run: Run, argv: list[str]) -> tuple[int, str]:
    """`feedbot worker` against the fake Bot API: it sends the due digest, answers /help, and stops
    on SIGTERM with status 0."""
    worker_env = {**run.env, "FEEDBOT_LOG_LEVEL": "INFO"}
    process = subprocess.Popen([sys.executable, "-m", "feedbot.cli", *argv], env=worker_env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        telegram = run.telegram
        telegram.wait(lambda: any(m == "getUpdates" for m, _ in telegram.calls), 90, "the worker to poll")
        telegram.send(USER, "/help")
        telegram.wait(lambda: any(HELP in m.text for m in telegram.messages_to(USER)), 60, "an answer to /help")
        telegram.wait(lambda: any("for you" in m.text for m in telegram.messages_to(USER)), 90, "the due digest")
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out


# --- the tests --------------------------------------------------------------------------------

COMMANDS = readme_commands()


def test_the_readme_shows_commands_and_each_has_a_case():
    assert len(COMMANDS) >= 20 and "rank --user ID" in COMMANDS
    missing = [form for form in COMMANDS if form not in CASES]
    assert not missing, f"add a CASES entry (what it must print) for the README's `feedbot {missing[0]}`"
    stale = [form for form in CASES if form not in COMMANDS]
    assert not stale, f"CASES has `{stale[0]}`, which the README no longer shows"


@pytest.mark.parametrize("form", COMMANDS)
def test_readme_command_runs_as_documented(form, ready):
    case = CASES[form]
    for name in case.setup:
        SETUPS[name](ready)
    argv = argv_of(form, ready, case.values)
    if argv[0] == "worker":
        status, output = run_worker(ready, argv)
    else:
        result = feedbot(ready, argv, case.stdin)
        status, output = result.returncode, result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert status == case.status, f"feedbot {' '.join(argv)} exited {status}:\n{output}"
    for expected in case.out:
        assert ready.fill(expected) in output, f"feedbot {' '.join(argv)}: no {ready.fill(expected)!r} in:\n{output}"
    if case.check:
        case.check(ready)


def leaf_commands(parser) -> dict[str, object]:
    """Every runnable command path ("db upgrade", "rank", …) and its parser."""
    import argparse

    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                inner = leaf_commands(sub)
                out.update({f"{name} {k}".strip(): v for k, v in inner.items()} if inner else {name: sub})
    return out


def test_every_subcommand_and_option_is_in_the_admin_table_and_every_row_parses():
    from feedbot.cli import build_parser

    rows = admin_table_rows()
    leaves = leaf_commands(build_parser())
    for path, sub in leaves.items():
        row = [r for r in rows if r == f"feedbot {path}" or r.startswith(f"feedbot {path} ")]
        assert row, f"`feedbot {path}` is not in the README's Admin CLI table"
        for action in sub._actions:
            for option in action.option_strings:
                assert option in ("-h", "--help") or any(option in r.split() or f"[{option}" in r for r in row), \
                    f"`feedbot {path}`: option {option} is not in its Admin CLI row"
    for row in rows:
        for form in forms(row.removeprefix("feedbot ")):
            argv = [PLACEHOLDERS.get(word, word).format(tmp="/tmp") for word in shlex.split(form)]
            try:
                build_parser().parse_args(argv)
            except SystemExit as exc:
                raise AssertionError(f"the Admin CLI row `{row}` does not parse as `feedbot {' '.join(argv)}`") from exc


def test_demo_script_sets_up_once_and_chats(database_url, tmp_path):
    """The README's first command, twice, with a chat script on stdin: the second run installs
    nothing (pip is pointed at a closed port and forbidden an index) and ingests nothing new."""
    stamps = sorted((ROOT / ".venv").glob(".feedbot-installed*"))
    assert stamps, "set up .venv with `bash scripts/setup.sh dev` first (scripts/test.sh does)"
    before = {p: p.stat().st_mtime_ns for p in stamps}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("FEEDBOT_", "TELEGRAM_", "PIP_"))},
           "DATABASE_URL": database_url, "FEEDBOT_DATA_DIR": str(tmp_path / "data"),
           "PIP_NO_INDEX": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/"}
    script = "/start\nspeech recognition\n1\n/digest\nquit\n"
    outputs = []
    for _ in range(2):
        result = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=env, input=script,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append(result.stdout)
    first, second = outputs
    assert "total: 5 dumps, 354 new papers" in first and "papers:   354" in first
    assert "total: 5 dumps, 0 new papers" in second and second.count("already ingested") == 5
    for out in outputs:
        assert "> /digest" in out and "picks for you" in out and out.rstrip().endswith("bye")
    assert {p: p.stat().st_mtime_ns for p in stamps} == before


def test_scraper_snippet_delivers_a_dump_the_sweep_ingests(engine, env, tmp_path):
    """The README's shell line for scrapers, run as written: its file lands complete under its final
    name, and `feedbot ingest` sweeps it into the database."""
    [snippet] = [line for block in fenced_blocks(README) for line in block.splitlines() if "html2text" in line]
    page = "<html><body>" + "".join(f"<p>{line}</p>" for line in NEW_DUMP.split("\n\n")) + "</body></html>"

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    Thread(target=server.serve_forever, daemon=True).start()
    tools = tmp_path / "bin"  # html2text as a scraper would install it: HTML in, text out
    tools.mkdir()
    (tools / "html2text").write_text(f"#!{sys.executable}\n" + textwrap.dedent("""\
        import html, re, sys
        text = re.sub(r"</p>", "\\n\\n", sys.stdin.read())
        sys.stdout.write(html.unescape(re.sub(r"<[^>]+>", "", text)))
        """))
    (tools / "html2text").chmod(0o755)
    inbox = tmp_path / "data" / "inbox"
    inbox.mkdir(parents=True)
    run_env = {**env, "PAGE": f"http://127.0.0.1:{server.server_address[1]}/papers", "FEEDBOT_INBOX": str(inbox),
               "PATH": f"{tools}{os.pathsep}{env['PATH']}"}
    try:
        subprocess.run(["bash", "-euo", "pipefail", "-c", snippet], env=run_env, check=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    [dropped] = list(inbox.iterdir())
    assert re.fullmatch(r"\d{4}-\d\d-\d\d-\d{4}\.txt", dropped.name)
    result = subprocess.run([sys.executable, "-m", "feedbot.cli", "ingest"], env=run_env, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0 and f"{dropped.name}: 2 entries, 2 new papers" in result.stdout, result.stdout
    assert (inbox / "done" / dropped.name).exists()


def benchmark_commands() -> list[tuple[str, list[str]]]:
    """(script, arguments) for every benchmark command line the README shows, in each form."""
    found = []
    for span in code_spans(README):
        match = re.fullmatch(r"(?:nice -n 19 )?(?:\.venv/bin/python )?(?:benchmarks/)?(\w+\.py)((?: .*)?)", span)
        if match and (span.startswith((".venv/", "nice ")) or match.group(2)):
            for form in forms(match.group(2)):
                found.append((match.group(1), [{"N": "1", "V": "300"}.get(w, w) for w in shlex.split(form)]))
    return list(dict.fromkeys((script, tuple(args)) for script, args in found))


class Parsed(Exception):
    pass


@pytest.mark.parametrize("script,args", benchmark_commands())
def test_benchmark_command_lines_parse_with_their_own_parser(script, args):
    assert (ROOT / "benchmarks" / script).is_file(), f"the README names benchmarks/{script}, which does not exist"
    module = importlib.import_module(f"benchmarks.{script.removesuffix('.py')}")
    original = __import__("argparse").ArgumentParser.parse_args

    def parse_then_stop(self, argv=None, namespace=None):
        raise Parsed(original(self, argv, namespace))

    with mock.patch("argparse.ArgumentParser.parse_args", parse_then_stop), \
            mock.patch.object(sys, "argv", [script, *args]), pytest.raises(Parsed):
        module.main()


def test_benchmarks_the_readme_shows_are_found():
    scripts = {script for script, _ in benchmark_commands()}
    assert {"ingest.py", "quality_citeulike.py", "feedback_sim.py", "rank_scale.py", "delivery.py",
            "vote_latency.py", "onboarding.py", "group_sim.py"} <= scripts


def test_placeholders_cover_every_upper_case_word_in_the_table():
    words = {w.strip("[]…") for row in admin_table_rows() for w in row.split()}
    unknown = {w for w in words if re.fullmatch(r"[A-Z][A-Z-]*", w) and w not in PLACEHOLDERS}
    assert not unknown, f"add these to PLACEHOLDERS: {sorted(unknown)}"


def test_extraction_reads_usage_marks():
    assert forms("feedbot ingest [PATH…] [--date YYYY-MM-DD]") == [
        "feedbot ingest PATH --date YYYY-MM-DD", "feedbot ingest"]
    assert forms("feedbot fetch arxiv --category cs.LG [--category cs.CL …] [--max N]") == [
        "feedbot fetch arxiv --category cs.LG --category cs.CL --max N", "feedbot fetch arxiv --category cs.LG"]
    assert forms("feedbot model refit") == ["feedbot model refit"]
