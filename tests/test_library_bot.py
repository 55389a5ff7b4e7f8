"""Library import in Telegram, end to end over real HTTP: a file sent at any time is imported with
its progress edited in place; `/import zotero` deletes the message holding the key, runs while the
chat keeps answering, and never shows or logs the key; bad files are refused unread or unstored."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from feedbot.chat.conversation import Chat
from feedbot.chat.telegram import build_application
from feedbot.store.models import Import, Vote
from tests.conftest import BotRunner
from tests.source_fixtures import arxiv_entry, arxiv_feed
from tests.source_server import Canned
from tests.test_bot import talk

ALICE = 111


@pytest.fixture
def library_bot(telegram, seeded, settings, server):
    bot_settings = dataclasses.replace(
        settings, telegram_token=telegram.token, telegram_api_url=telegram.base_url,
        arxiv_api_url=f"{server.base_url}/api/query", openalex_api_url=server.base_url,
        zotero_api_url=server.base_url)
    runner = BotRunner(build_application(bot_settings, Chat(seeded, bot_settings), timeout=2.0, max_retries=3))
    runner.start()
    yield runner
    runner.stop()


def subscribed(telegram) -> None:
    [welcome] = talk(telegram, "/start")
    assert ".bib or .ris file" in welcome.text  # onboarding offers the import


def import_votes(engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Vote).where(Vote.origin == "import"))


def test_a_library_file_is_imported_with_progress_edited_in_place(library_bot, telegram, seeded, server):
    server.serve("/api/query", Canned(arxiv_feed([arxiv_entry("2301.00001", "Fetched Preprint")]),
                                      "application/atom+xml"))
    subscribed(telegram)  # still in onboarding: a file is welcome at any time
    before = len(telegram.messages_to(ALICE))
    telegram.send_document(ALICE, "my library.bib", b"@misc{a, title={Alpha Paper}, abstract={About alpha.}}\n"
                                                    b"@misc{b, eprint={2301.00001}}\n@misc{c, title={Broken\n")
    progress, report = telegram.wait_messages(ALICE, before + 2)[before:]
    assert ("sendMessage", "Reading your library… 1 / 2") in [(m, c.get("text")) for m, c in telegram.calls]
    telegram.wait(lambda: progress.edits == ["Reading your library… 2 / 2"], what="the progress message edited")
    assert "Imported my library.bib (BibTeX file): 3 read" in report.text and "1 fetched" in report.text
    assert "skipped line 3" in report.text and "broken BibTeX" in report.text
    assert import_votes(seeded) == 2
    [liked] = talk(telegram, "/liked")
    assert "From your library: 2" in liked.text
    [undone] = talk(telegram, "/import undo")
    assert "2 papers left your library" in undone.text and import_votes(seeded) == 0


def test_zotero_key_message_deleted_chat_answers_meanwhile_key_never_shown(library_bot, telegram, seeded, server,
                                                                             caplog):
    caplog.set_level(logging.INFO)  # the worker's level (python-telegram-bot logs raw updates at DEBUG)
    caplog.set_level(logging.DEBUG, logger="feedbot")
    server.serve("/keys/current", Canned(json.dumps({"userID": 7, "access": {"user": {"library": True}}}).encode()))
    item = {"key": "A", "data": {"key": "A", "itemType": "journalArticle", "title": "Zotero Paper",
                                 "abstractNote": "From Zotero."}}
    server.paged["/users/7/items/top"] = {
        "0": Canned(json.dumps([item]).encode(), headers={"Total-Results": "2", "Backoff": "2"}),
        "1": Canned(json.dumps([{**item, "key": "B", "data": {**item["data"], "title": "Second"}}]).encode(),
                    headers={"Total-Results": "2"}),
    }
    subscribed(telegram)
    before = len(telegram.messages_to(ALICE))
    telegram.send(ALICE, "/import zotero 7 TOPSECRETKEY")
    telegram.wait(lambda: telegram.deleted, what="the key's message deleted")
    [(chat_id, _)] = telegram.deleted
    assert chat_id == ALICE
    [progress] = telegram.wait_messages(ALICE, before + 1)[before:]
    assert progress.text == "Reading your library… 1 / 2"
    [answer] = talk(telegram, "/help")  # the import sleeps out Zotero's Backoff meanwhile
    assert "/import" in answer.text
    with Session(seeded) as session:
        assert session.scalar(select(Import.status)) == "running"
    report = telegram.wait(lambda: next((m for m in telegram.messages_to(ALICE) if m.text.startswith("Imported")),
                                        None), what="the import's report")
    assert "Imported your Zotero library (Zotero library): 2 read" in report.text
    assert import_votes(seeded) == 2
    assert all("TOPSECRETKEY" not in m.text and "TOPSECRETKEY" not in "".join(m.edits) for m in telegram.sent)
    assert "TOPSECRETKEY" not in caplog.text


def test_bad_files_are_refused_and_store_nothing(library_bot, telegram, seeded):
    subscribed(telegram)
    before = len(telegram.messages_to(ALICE))
    telegram.send_document(ALICE, "huge.bib", b"@misc{a, title={A}}", size=50 * 1024 * 1024)
    [huge] = telegram.wait_messages(ALICE, before + 1)[before:]
    assert "50.0 MB" in huge.text and "Nothing was stored" in huge.text
    assert not any(method == "getFile" for method, _ in telegram.calls)  # refused unread
    before = len(telegram.messages_to(ALICE))
    telegram.send_document(ALICE, "lies.bib", b"%" * (21 * 1024 * 1024), size=1000)  # its size understated
    [lies] = telegram.wait_messages(ALICE, before + 1)[before:]
    assert "Import of lies.bib failed: Telegram would not hand me the file" in lies.text
    for name, content, why in [("photo.bib", b"\x89PNG\r\n\x1a\n\x00\x00IHDR", "binary data"),
                               ("empty.ris", b"", "empty"),
                               ("notes.txt", b"Just some notes about my day.", "no BibTeX, RIS, CSL-JSON")]:
        before = len(telegram.messages_to(ALICE))
        telegram.send_document(ALICE, name, content)
        [refusal] = telegram.wait_messages(ALICE, before + 1)[before:]
        assert f"Import of {name} failed" in refusal.text and why in refusal.text
    with Session(seeded) as session:
        assert session.scalar(select(func.count()).select_from(Import)) == 0
    assert import_votes(seeded) == 0


def test_more_imports_at_once_than_the_bot_handles_updates_never_stop_the_chat(library_bot, telegram, seeded,
                                                                                monkeypatch):
    """Imports take minutes (arXiv is read at one request every 3 s): however many run, other
    subscribers' commands are answered meanwhile, and every import still answers when done."""
    import threading

    from feedbot.library import jobs

    release, started = threading.Event(), []

    def slow_import(engine, settings, telegram_id, name, content, progress=None, now=None):
        started.append(name)
        release.wait(60)
        return jobs.ImportReport(name, "BibTeX file", read=1, added=1)

    monkeypatch.setattr(jobs, "import_bytes", slow_import)
    users = list(range(500, 512))  # more than the updates the bot handles at once, and its threads
    for user in users:
        talk(telegram, "/start", user=user)
    for user in users:
        telegram.send_document(user, f"lib{user}.bib", b"@misc{a, title={A}}")
    telegram.wait(lambda: len(started) >= 2, what="imports running")
    try:
        [answer] = talk(telegram, "/help")
        assert "/import" in answer.text
    finally:
        release.set()
    for user in users:
        assert "Imported lib" in telegram.wait_messages(user, 2, timeout=30)[-1].text
