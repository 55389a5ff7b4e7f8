"""Webhook mode over real HTTP: the real `feedbot worker` process registers its webhook with the
fake Bot API server (secret included), refuses updates without the secret, answers the rest; two
workers on one PostgreSQL database each answer what is posted to them, on the one database."""

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from feedbot.store.models import Subscriber, Vote
from tests.test_metrics import scrape
from tests.test_worker import digests_to
from tests.test_workers import POSTGRESQL, roles, start_worker, stop, wait_roles

SECRET = "s3cret-token_1"
HOOK = "https://bot.example.org/feedbot/hook"  # the public URL; the worker serves its path


def webhook_env(port: int) -> dict[str, str]:
    """A worker's webhook settings, listening on 127.0.0.1:`port`."""
    return {"FEEDBOT_WEBHOOK_URL": HOOK, "FEEDBOT_WEBHOOK_SECRET": SECRET, "FEEDBOT_WEBHOOK_LISTEN": "127.0.0.1",
            "FEEDBOT_WEBHOOK_PORT": str(port)}


def free_ports(count: int) -> list[int]:
    """`count` different free ports: bound all at once, so the system cannot hand out one twice."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def post(url: str, update: dict, secret: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    request = urllib.request.Request(url, json.dumps(update).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def answers_to(telegram, user: int, count: int) -> list:
    """Wait for `count` answers to `user`; return them all. The leader's digest sweep may send a
    newcomer a digest at any moment (between 08:00 and 20:00 UTC one is due at once): not an answer."""
    def answers():
        digests = digests_to(telegram, user)
        return [m for m in telegram.messages_to(user) if m not in digests]
    telegram.wait(lambda: len(answers()) >= count, 30, f"{count} answers to {user}")
    return answers()


def help_update(update_id: int, user_id: int) -> dict:
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 1700000000, "chat": {"id": user_id, "type": "private"},
        "from": {"id": user_id, "is_bot": False, "first_name": "Ada"}, "text": "/help",
        "entities": [{"type": "bot_command", "offset": 0, "length": 5}]}}


def test_webhook_checks_the_secret_and_answers(seeded, env, telegram):
    port, metrics_port = free_ports(2)
    worker = subprocess.Popen(
        [sys.executable, "-m", "feedbot.cli", "worker"],
        env={**env, "TELEGRAM_BOT_TOKEN": telegram.token, "FEEDBOT_TELEGRAM_API_URL": telegram.base_url,
             "FEEDBOT_LOG_LEVEL": "INFO", **webhook_env(port), "FEEDBOT_METRICS_PORT": str(metrics_port),
             "FEEDBOT_METRICS_LISTEN": "127.0.0.1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        hook = telegram.wait(lambda: telegram.webhook, 60, "setWebhook")
        assert hook["url"] == HOOK and hook["secret_token"] == SECRET
        url = f"http://127.0.0.1:{port}/feedbot/hook"
        telegram.wait(lambda: telegram.commands, 30, "the command menu")  # post_init done: handlers ready
        telegram.wait(lambda: listening(port), 30, "the webhook server")

        for wrong in (None, "", "s3cret-token_2", SECRET + "x"):
            assert post(url, help_update(1, 501), wrong) == 403
        assert post(f"http://127.0.0.1:{port}/other", help_update(2, 502), SECRET) == 404
        assert post(url, help_update(3, 503), SECRET) == 200
        [reply] = telegram.wait_messages(503, 1, 30)
        assert "/digest" in reply.text
        assert telegram.messages_to(501) == [] and telegram.messages_to(502) == []
        assert not any(method == "getUpdates" for method, _ in telegram.calls)  # no polling beside it
        # The process serves its metrics too; the count follows Telegram's answer, so wait for it.
        sent = ("feedbot_telegram_messages_total", (("method", "sendMessage"), ("result", "sent")))
        deadline = time.monotonic() + 15
        while not (samples := scrape(metrics_port)).get(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert samples[sent] == 1 and samples[("feedbot_database_up", ())] == 1

        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=15)
        assert worker.returncode == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        output = worker.communicate()[0]
    assert SECRET not in output and telegram.token not in output

    # Back to long polling (no URL): the webhook is deleted at start, as Telegram requires.
    polling = subprocess.Popen(
        [sys.executable, "-m", "feedbot.cli", "worker"],
        env={**env, "TELEGRAM_BOT_TOKEN": telegram.token, "FEEDBOT_TELEGRAM_API_URL": telegram.base_url},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        telegram.wait(lambda: any(method == "getUpdates" for method, _ in telegram.calls), 60, "polling")
        assert telegram.webhook is None and any(method == "deleteWebhook" for method, _ in telegram.calls)
        polling.send_signal(signal.SIGTERM)
        assert polling.wait(timeout=15) == 0
    finally:
        if polling.poll() is None:
            polling.kill()


@POSTGRESQL
def test_two_webhook_workers_on_one_database_check_the_secret_and_answer_on_it(seeded, env, telegram):
    user = 601
    ports = free_ports(2)
    workers = [start_worker(env, telegram, **webhook_env(port)) for port in ports]
    try:
        wait_roles(seeded, workers)  # one leads the schedules, in webhook mode too
        for port in ports:
            telegram.wait(lambda port=port: listening(port), 60, "both webhook servers")  # after post_init
        first, second = (f"http://127.0.0.1:{port}/feedbot/hook" for port in ports)
        for url in (first, second):
            for wrong in (None, "s3cret-token_2"):
                assert post(url, telegram.text_update(user, "/start"), wrong) == 403
        assert telegram.messages_to(user) == []

        # One subscriber's conversation, its steps posted to one worker, then the other.
        assert post(first, telegram.text_update(user, "/start"), SECRET) == 200
        [welcome] = answers_to(telegram, user, 1)
        assert "Welcome to feedbot" in welcome.text
        assert post(second, telegram.text_update(user, "speech recognition, graph neural networks"), SECRET) == 200
        noted, starter, question = answers_to(telegram, user, 4)[1:]  # the second worker read the first's state
        assert "speech recognition" in noted.text and len(starter.buttons) == 5 and "time zone" in question.text
        taps = [telegram.tap_update(user, starter, starter.buttons[i][0]["callback_data"]) for i in range(2)]
        for url, tap in zip((first, second), taps, strict=True):
            assert post(url, tap, SECRET) == 200
            assert telegram.wait_answer(tap["callback_query"]["id"], 30)["text"] == "Saved 👍"
        with Session(seeded) as session:
            subscriber = session.scalar(select(Subscriber).where(Subscriber.telegram_id == user))
            votes = session.scalar(select(func.count()).select_from(Vote).where(Vote.subscriber_id == subscriber.id))
        assert votes == 2
        time.sleep(1)  # room for a second answer to arrive, were one sent
        assert len(answers_to(telegram, user, 4)) == 4  # each update answered once
        assert len(digests_to(telegram, user)) <= 1  # and a digest, if one was due, sent once

        assert telegram.webhook["url"] == HOOK
        assert not any(method == "getUpdates" for method, _ in telegram.calls)  # neither long-polls
        assert not any(polling for _, polling in roles(seeded).values())
    finally:
        stop(workers)
    assert all(worker.returncode == 0 for worker in workers)


def test_a_webhook_port_in_use_stops_the_worker_with_a_clear_error(seeded, env, telegram):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "feedbot.cli", "worker"], capture_output=True, text=True, timeout=60,
            env={**env, "TELEGRAM_BOT_TOKEN": telegram.token, "FEEDBOT_TELEGRAM_API_URL": telegram.base_url,
                 "FEEDBOT_WEBHOOK_URL": "https://bot.example.org/hook", "FEEDBOT_WEBHOOK_SECRET": SECRET,
                 "FEEDBOT_WEBHOOK_LISTEN": "127.0.0.1", "FEEDBOT_WEBHOOK_PORT": str(port)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert (f"cannot listen for the webhook on 127.0.0.1:{port} (FEEDBOT_WEBHOOK_LISTEN, FEEDBOT_WEBHOOK_PORT)"
            in done.stdout)
    assert telegram.webhook is None and not telegram.calls  # nothing reached Telegram
