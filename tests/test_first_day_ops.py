"""The first day's operations: the year of a dump across New Year and time zones, an inbox whose
files cannot be moved, and the image's entrypoint giving the service user its folders."""

import os
import shutil
import subprocess
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from feedbot.sources import ingest
from feedbot.sources.dumps import infer_year
from feedbot.store.models import Paper, Sweep

ROOT = Path(__file__).resolve().parent.parent


def test_year_has_a_day_of_slack_across_new_year():
    assert infer_year(1, 1, date(2025, 12, 31)) == date(2026, 1, 1)  # page a day ahead of UTC
    assert infer_year(12, 31, date(2026, 1, 1)) == date(2025, 12, 31)
    assert infer_year(3, 12, date(2026, 3, 11)) == date(2026, 3, 12)
    assert infer_year(3, 13, date(2026, 3, 11)) == date(2025, 3, 13)  # two days ahead: last year


@pytest.mark.parametrize(("page", "saved_at", "zone", "listed"), [
    ("Jan 1", datetime(2026, 1, 1, 0, 30), "Asia/Tokyo", date(2026, 1, 1)),        # Dec 31 in UTC
    ("Dec 31", datetime(2025, 12, 31, 20, 0), "America/Los_Angeles", date(2025, 12, 31)),  # Jan 1 in UTC
    ("Mar 12", datetime(2026, 3, 12, 0, 30), "Europe/Berlin", date(2026, 3, 12)),  # Mar 11 23:30 UTC
    ("Mar 12", datetime(2026, 3, 12, 10, 0), "Pacific/Kiritimati", date(2026, 3, 12)),  # UTC+14
])
def test_dump_saved_in_any_zone_lands_on_its_date(engine, tmp_path, page, saved_at, zone, listed):
    path = tmp_path / "page.txt"
    path.write_text(f"new\n\n{page}\n\nA paper about clocks\n\nIts abstract.\n", encoding="utf-8")
    stamp = saved_at.replace(tzinfo=ZoneInfo(zone)).timestamp()
    os.utime(path, (stamp, stamp))
    assert ingest.ingest_file(engine, path).status == "ingested"
    with Session(engine) as session:
        assert session.scalar(select(Paper.first_listed)) == listed


def test_a_file_that_cannot_be_moved_is_logged_shown_and_skipped(engine, tmp_path, monkeypatch, caplog):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for n in range(3):
        (inbox / f"{n}.txt").write_bytes(f"new\n\nMar 11\n\nPaper {n}\n\nAbstract {n}.\n".encode())
    real_move = shutil.move

    def move(source, destination):  # refuses like a read-only done/ would, even for root
        if Path(source).name == "1.txt":
            raise PermissionError(13, "Permission denied", str(destination))
        return real_move(source, destination)

    monkeypatch.setattr(ingest.shutil, "move", move)
    reports = ingest.sweep_inbox(engine, inbox)
    assert [r.status for r in reports] == ["ingested"] * 3
    assert [bool(r.stuck) for r in reports] == [False, True, False]
    assert "NOT MOVED: cannot move it to done/: PermissionError: Permission denied" in reports[1].line()
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["0.txt", "2.txt"]
    assert (inbox / "1.txt").exists()
    assert "1.txt: cannot move it to done/" in caplog.text
    with Session(engine) as session:
        summary = session.scalar(select(Sweep.summary).where(Sweep.name == ingest.STUCK_SWEEP))
    assert summary.startswith("1 of 3 swept files could not be moved") and "1.txt" in summary
    monkeypatch.setattr(ingest.shutil, "move", real_move)
    assert [r.status for r in ingest.sweep_inbox(engine, inbox)] == ["duplicate"]
    with Session(engine) as session:
        assert "all 1 swept files moved" in session.scalar(select(Sweep.summary))


def test_cli_sweep_with_an_unwritable_done_folder_carries_on_and_status_says_so(env, tmp_path):
    inbox = Path(env["FEEDBOT_DATA_DIR"]) / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "done").write_text("not a folder")  # cannot hold files, for root too
    (inbox / "a.txt").write_bytes(b"new\n\nMar 11\n\nPaper a\n\nAbstract a.\n")
    (inbox / "b.txt").write_bytes(b"new\n\nMar 11\n\nOnly a title\n")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "feedbot.cli", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    run("db", "upgrade")
    result = run("ingest")
    assert "Traceback" not in result.stderr
    assert "a.txt: 1 entries, 1 new papers" in result.stdout and "NOT MOVED" in result.stdout
    assert (inbox / "failed" / "b.txt").exists() and (inbox / "a.txt").exists()
    status = run("status").stdout
    assert "sweep inbox files:" in status and "could not be moved" in status and "a.txt" in status


@pytest.fixture
def open_dir():
    """A folder other users can reach (pytest's own temporary folders are private to their owner)."""
    folder = Path(tempfile.mkdtemp(prefix="feedbot-entrypoint-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_entrypoint_gives_the_service_user_its_folders(open_dir):
    data = open_dir / "data"
    (data / "inbox").mkdir(parents=True)
    (data / "feedbot.db").write_text("")
    env = {**os.environ, "FEEDBOT_DATA_DIR": str(data), "FEEDBOT_INBOX": str(data / "inbox"),
           "FEEDBOT_UID": "10001", "FEEDBOT_GID": "10001"}
    script = 'id -u; touch "$FEEDBOT_INBOX/done/x" "$FEEDBOT_INBOX/failed/y" && echo wrote'
    result = subprocess.run(["sh", str(ROOT / "deploy" / "entrypoint.sh"), "sh", "-c", script], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    uid, wrote = result.stdout.split()
    assert wrote == "wrote"
    if os.getuid() == 0:  # as in the image: fix ownership, then drop to the service user
        assert uid == "10001"
        assert {p.stat().st_uid for p in [data, data / "inbox", data / "inbox" / "done", data / "feedbot.db"]} \
            == {10001}
        assert data.stat().st_mode & 0o777 == 0o700  # the database and the model: the service's alone
    else:  # already unprivileged (docker run --user): runs as is
        assert uid == str(os.getuid())


def test_compose_and_image_use_the_entrypoint():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["feedbot-entrypoint"]' in dockerfile and "USER feedbot" not in dockerfile
    assert "--uid 10001 --gid 10001" in dockerfile


@pytest.mark.parametrize("body, folder", [("Paper 1\n\nAbstract 1.", "done"), ("Only a title", "failed")])
def test_a_file_the_inbox_will_not_let_go_leaves_no_copies_behind(engine, tmp_path, monkeypatch, body, folder):
    """A read-only inbox with a writable done/ (or failed/): renaming fails, a copy would succeed but
    the original cannot be removed. The file stays once, in the inbox, sweep after sweep."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "0.txt").write_bytes(b"new\n\nMar 11\n\nPaper 0\n\nAbstract 0.\n")
    stuck = inbox / "1.txt"
    stuck.write_bytes(f"new\n\nMar 11\n\n{body}\n".encode())
    real_rename, real_unlink = os.rename, os.unlink

    def refuse(real):
        def call(source, *args, **kwargs):  # as a directory the service user may not write, even for root
            if Path(source) == stuck:
                raise PermissionError(13, "Permission denied", str(source))
            return real(source, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "rename", refuse(real_rename))
    monkeypatch.setattr(os, "unlink", refuse(real_unlink))
    for _ in range(3):
        reports = {r.name: r for r in ingest.sweep_inbox(engine, inbox)}
        assert reports["1.txt"].stuck and stuck.exists()
    assert not [p.name for p in (inbox / folder).iterdir() if p.name.startswith("1.")]
    assert (inbox / "done" / "0.txt").exists()
