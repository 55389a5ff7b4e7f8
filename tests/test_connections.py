"""PostgreSQL connections from the pool: checked out without a round trip while in use, yet
replaced before use when the server ended them, vanished without a word, or whatever number the
operating system gave their socket."""

from __future__ import annotations

import os
import resource
import socket
import struct
import threading
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from feedbot.store import db
from feedbot.store.db import transaction

POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def backend_of(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar()


@POSTGRESQL
def test_checkouts_in_use_send_no_ping(engine):
    """A broadcast checks connections out back to back: no statement but its own goes to the server."""
    from sqlalchemy import event

    assert not engine.pool._pre_ping
    backend_of(engine)  # a connection in the pool
    sent = []
    event.listen(engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
    pings = []
    original = engine.dialect.do_ping
    engine.dialect.do_ping = lambda connection: pings.append(1) or original(connection)
    try:
        for _ in range(5):
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
    finally:
        engine.dialect.do_ping = original
    assert sent == ["SELECT 1"] * 5 and pings == []


@POSTGRESQL
def test_a_pooled_connection_the_server_ended_is_replaced_at_checkout(engine):
    backend = backend_of(engine)
    admin = create_engine(engine.url, poolclass=NullPool)  # not the pool under test
    try:
        with admin.connect() as connection:
            assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}).scalar()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with admin.connect() as connection:
                if not connection.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                                          {"pid": backend}).scalar():
                    break
            time.sleep(0.1)
    finally:
        admin.dispose()
    with transaction(engine) as session:  # at once: within the second that needs no ping
        assert session.execute(text("SELECT pg_backend_pid()")).scalar() != backend


class VanishingProxy:
    """A TCP proxy to PostgreSQL. `vanish()` is a failover or a host that died: the connections
    through it get no FIN (nothing waits on their sockets) and are reset at their next write, as by
    a new host behind the same address; new connections reach the server."""

    def __init__(self, host: str, port: int) -> None:
        self.target, self.pairs = (host, port), []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            pair = (client, socket.create_connection(self.target), [False])
            self.pairs.append(pair)
            threading.Thread(target=self._up, args=pair, daemon=True).start()
            threading.Thread(target=self._down, args=pair, daemon=True).start()

    def _up(self, client, upstream, gone) -> None:
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                return
            if gone[0]:  # the new host knows nothing of this connection: a reset
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                return
            if not data:
                upstream.close()
                return
            upstream.sendall(data)

    def _down(self, client, upstream, gone) -> None:
        while True:
            try:
                data = upstream.recv(65536)
            except OSError:
                return
            if not data or gone[0]:
                return  # the client is told nothing
            client.sendall(data)

    def vanish(self) -> None:
        for _, upstream, gone in self.pairs:
            gone[0] = True
            upstream.close()

    def close(self) -> None:
        self.sock.close()


@POSTGRESQL
def test_a_pooled_connection_to_a_vanished_server_is_replaced_once_idle(engine):
    """Nothing waits on the socket of a connection whose server vanished, so the poll cannot tell;
    a connection idle for over a second is pinged, and replaced when the ping fails."""
    real = engine.url
    proxy = VanishingProxy(real.host, real.port)
    through = db.make_engine(real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    try:
        with through.connect() as connection:
            connection.execute(text("SELECT 1"))
        proxy.vanish()
        time.sleep(db.PING_AFTER_IDLE_SECONDS + 0.2)  # idle: the next checkout pings
        with transaction(through) as session:  # e.g. the one writing a digest's end state
            assert session.execute(text("SELECT 1")).scalar() == 1
    finally:
        through.dispose()
        proxy.close()


@POSTGRESQL
def test_checkout_works_when_the_connections_socket_is_numbered_past_1023(database_url):
    """A worker with many sockets and files open gets descriptors past 1023, which `select.select`
    cannot take: every checkout of such a connection would fail."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1300 if hard == resource.RLIM_INFINITY else min(max(soft, 1300), hard)
    assert wanted >= 1300, "the suite needs a descriptor limit of at least 1300"
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # the next socket is past 1023
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as connection:
            assert connection.connection.dbapi_connection.pgconn.socket >= 1024
        time.sleep(db.PING_AFTER_IDLE_SECONDS + 0.2)  # both the poll and the ping on that socket
        for _ in range(2):
            with engine.connect() as connection:
                assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@POSTGRESQL
def test_keepalives_are_asked_for_unless_the_url_says_otherwise(database_url):
    """The main engine's connections ask for TCP keepalives (a dead peer turns into an error on an
    idle socket within seconds); what DATABASE_URL sets itself is kept."""
    engine = db.make_engine(str(make_url(database_url).update_query_dict({"connect_timeout": "7"})
                                .render_as_string(hide_password=False)))
    try:
        with engine.connect() as connection:
            parameters = connection.connection.dbapi_connection.info.get_parameters()
    finally:
        engine.dispose()
    assert parameters["keepalives"] == "1" and parameters["keepalives_idle"] == "5"
    assert parameters["tcp_user_timeout"] == "10000" and parameters["connect_timeout"] == "7"
