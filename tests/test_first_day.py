"""A fresh deployment: a subscriber before the first ingest, then a tiny first corpus (0, 1, 2, 3
and 10 papers), through ingest → onboarding → digest, on SQLite and PostgreSQL."""

import subprocess
import sys
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from feedbot.chat.commands import menu
from feedbot.chat.conversation import Chat, User
from feedbot.ranking import textmodel
from feedbot.sources.ingest import ingest_paths
from feedbot.store import subscribers
from feedbot.store.models import Shown

NOW = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
TOPICS = ["diffusion models for video", "robot grasping", "protein folding", "speech recognition",
          "graph neural networks", "sparse attention", "retrieval augmented generation", "tabular learning",
          "weather forecasting", "code generation"]


def write_dump(folder, n: int):
    lines = ["new", "", "Mar 12", ""]
    for i in range(n):
        lines += [f"Paper {i}: {TOPICS[i]}", "", f"We study {TOPICS[i]} with a new method number {i}.", ""]
    path = folder / f"first-{n}.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def say(chat, user, text):
    replies = chat.command(user, *text[1:].partition(" ")[::2]) if text.startswith("/") else chat.text(user, text)
    assert replies and all(r.text.strip() for r in replies), text
    return replies


def test_every_path_answers_before_the_first_ingest(engine, settings):
    chat = Chat(engine, settings, clock=lambda: NOW)
    alice = User(1, 1)
    say(chat, alice, "/start")
    [noted, none_yet, question] = say(chat, alice, "diffusion models")
    assert "no papers yet — your first digest comes after the first listing" in none_yet.text
    assert "time zone" in question.text
    assert "All set" in say(chat, alice, "/skip")[0].text
    [digest] = say(chat, alice, "/digest")
    assert "no papers yet — your first digest comes after the first listing" in digest.text
    for name, _ in menu():
        for args in ("", "1", "²", "add robots", "x" * 300):
            say(chat, alice, f"/{name} {args}".strip())
    with Session(engine) as session:
        tag = subscribers.tag(subscribers.get(session, 1))
    for data in ("v:1:+", "h:0", f"s:size:+:{tag}", f"s:pause:{tag}", f"s:resume:{tag}", f"d:no:{tag}"):
        answer = chat.button(alice, data)
        assert answer.notice or answer.text
        assert "earlier subscription" not in (answer.notice or answer.text)
        assert "not valid" not in (answer.notice or answer.text)
    # A newcomer's /skip at the interests question also completes onboarding.
    bob = User(2, 2)
    say(chat, bob, "/start")
    assert any("no papers yet" in r.text for r in say(chat, bob, "/skip"))
    assert "All set" in say(chat, bob, "/skip")[0].text


@pytest.mark.parametrize("n", [0, 1, 2, 3, 10])
def test_ingest_onboarding_digest_at_any_corpus_size(engine, settings, tmp_path, n):
    if n:
        reports = ingest_paths(engine, [write_dump(tmp_path, n)], stamp=date(2026, 3, 12))
        assert [r.status for r in reports] == ["ingested"]
        with Session(engine) as session:
            model, fitted = textmodel.ensure(session, settings.model_dir)
        assert fitted and len(model.paper_ids) == n
    chat = Chat(engine, settings, clock=lambda: NOW)
    user = User(5, 5)
    say(chat, user, "/start")
    replies = say(chat, user, "diffusion" if n else "robot learning")
    starters = [r for r in replies if r.keyboard]
    assert len(starters) == (1 if n else 0)
    if n:
        assert len(starters[0].keyboard) == min(n, 5)
        assert "(Saved 👍)" in f"({chat.button(user, starters[0].keyboard[0][0].data, starters[0].keyboard).notice})"
    assert "All set" in say(chat, user, "Europe/Berlin")[0].text
    digest = say(chat, user, "/digest")
    shown_in_digest = sum(len(r.keyboard) for r in digest)
    assert shown_in_digest == max(0, n - 5) if n else shown_in_digest == 0
    if n <= 5:
        expected = "you have seen them all" if n else "no papers yet — your first digest comes after"
        assert expected in digest[0].text
    with Session(engine) as session:
        shown = session.scalar(select(func.count()).select_from(Shown))
        distinct = session.scalar(select(func.count(func.distinct(Shown.paper_id))))
    assert shown == distinct == n


def test_first_cli_ingest_of_a_two_paper_dump_is_clean(env, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "feedbot.cli", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    assert run("db", "upgrade").returncode == 0
    refit = run("model", "refit")
    assert refit.returncode == 2 and "no papers to fit the text model on" in refit.stderr
    assert "Traceback" not in refit.stderr
    result = run("ingest", str(write_dump(tmp_path, 2)))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "2 new papers" in result.stdout
    assert "text model fitted: 2 papers" in result.stdout
    assert "model:    2 papers" in run("status").stdout


def test_interests_typed_before_the_first_listing_are_never_an_empty_vector(engine, settings, tmp_path):
    """Before the first ingest no vocabulary can check an interest; once papers land, an interest
    with no word the corpus uses must not "match" arbitrary papers."""
    chat = Chat(engine, settings, clock=lambda: NOW)
    alice, bob = User(1, 1), User(2, 2)
    for user, interests in ((alice, "xylophonic zebrafication"), (bob, "xylophonic zebrafication, speech recognition")):
        say(chat, user, "/start")
        say(chat, user, interests)
        say(chat, user, "/skip")
    ingest_paths(engine, [write_dump(tmp_path, 10)], stamp=date(2026, 3, 12))
    with Session(engine) as session:
        textmodel.ensure(session, settings.model_dir)
    for user in (alice, bob):
        text = "\n".join(r.text for r in say(chat, user, "/digest"))
        assert "Paper " in text, text
        assert "xylophonic" not in text, text
    assert "matches your interest “speech recognition”" in text


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_a_word_every_paper_of_a_tiny_corpus_uses_is_a_known_interest(engine, settings, tmp_path, n):
    """In a first listing of a few papers on one topic, that topic's word is the most useful term,
    not one to prune as too common."""
    lines = ["new", "", "Mar 12", ""]
    for i in range(n):
        lines += [f"Diffusion for {TOPICS[i]}", "", f"We train diffusion models for {TOPICS[i]}.", ""]
    (tmp_path / "one-topic.txt").write_text("\n".join(lines), encoding="utf-8")
    ingest_paths(engine, [tmp_path / "one-topic.txt"], stamp=date(2026, 3, 12))
    with Session(engine) as session:
        model, _ = textmodel.ensure(session, settings.model_dir)
    assert model.transform(["diffusion"]).nnz
    chat = Chat(engine, settings, clock=lambda: NOW)
    user = User(3, 3)
    say(chat, user, "/start")
    replies = say(chat, user, "diffusion")
    assert any("diffusion" in r.text and r.keyboard for r in replies), [r.text for r in replies]
    assert not any("no paper" in r.text.lower() and "could" in r.text.lower() for r in replies)
