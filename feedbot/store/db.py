"""Engine, sessions and migrations: the one place that knows which database is behind feedbot."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, exc, inspect, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from feedbot.config import private_dir, private_file

ALEMBIC_DIR = Path(__file__).resolve().parent / "migrations"


class SchemaError(RuntimeError):
    """The database is not migrated to the revision this code expects."""


WRITE = "feedbot_write"  # execution option: this SQLite transaction will write


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys, a busy timeout, read transactions that take
    no lock and write transactions (`transaction`) that take the write lock up front."""
    if url.startswith("sqlite"):
        _private_sqlite_file(make_url(url).database)
        engine = create_engine(url, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    given = make_url(url).query  # what the URL sets itself is kept
    engine = create_engine(url, connect_args={k: v for k, v in CLIENT_KEEPALIVE.items() if k not in given})
    event.listen(engine, "checkin", _checked_in)
    event.listen(engine, "checkout", lambda *args: _drop_if_closed(engine, *args))
    return engine


# A dead peer (a host gone, a failover behind the same address) turns into an error on an idle
# socket within seconds rather than at the operating system's two-hour default (libpq's
# parameters): keepalive probes after 5 s idle, every 2 s, 3 unanswered; or data sent and not
# acknowledged for 10 s. Both end before the server's own keepalives (`locks.KEEPALIVE`).
CLIENT_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
                    "tcp_user_timeout": 10_000, "connect_timeout": 10}
PING_AFTER_IDLE_SECONDS = 1.0


def _checked_in(dbapi_connection, connection_record) -> None:
    connection_record.info["checked_in"] = time.monotonic()


def _drop_if_closed(engine: Engine, dbapi_connection, connection_record, connection_proxy) -> None:
    """A pooled PostgreSQL connection that no longer works is replaced before use. One the server
    closed (a restart, `pg_terminate_backend`, an idle timeout) has its goodbye waiting on the
    socket, so a poll tells it; one idle for over a second is also pinged, for a server that
    vanished without a word. A broadcast checks its connections out back to back, so its takes
    and writes pay no round trip for this (`pool_pre_ping` costs one per checkout)."""
    if dbapi_connection.closed or dbapi_connection.broken:
        raise exc.DisconnectionError("connection closed")
    poller = select.poll()  # not select.select, which cannot take a descriptor past 1023
    poller.register(dbapi_connection.pgconn.socket, select.POLLIN | select.POLLPRI)
    if poller.poll(0):  # idle, nothing asked (feedbot never LISTENs): anything to read is the end
        raise exc.DisconnectionError("connection closed by the server")
    checked_in = connection_record.info.get("checked_in")  # None: a new connection, just made
    if checked_in is not None and time.monotonic() - checked_in > PING_AFTER_IDLE_SECONDS:
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.DisconnectionError(f"connection lost: {error}") from error


SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def _private_sqlite_file(database: str | None) -> None:
    """Create the SQLite file (and its folder) without group or other access before SQLite opens it:
    SQLite gives its -wal, -shm and -journal files the database file's mode."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    private_dir(path.parent)
    private_file(path)
    for suffix in SQLITE_SIDECARS:  # left readable by an earlier feedbot
        private_file(path.with_name(path.name + suffix), create=False)


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_on_begin(connection) -> None:
    # A write transaction (`transaction`) takes the write lock up front with IMMEDIATE: one that
    # reads, then writes, can then never fail with "database is locked" when another process
    # wrote meanwhile. Everything else (ranking, model fits, status, dry runs) is a plain
    # deferred read: in WAL mode it takes no lock, so it never makes a vote wait.
    write = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A write transaction: commits as one unit, or rolls back whole on any error. Keep it short
    (no ranking or fitting inside): on SQLite it holds the database's single write lock."""
    if engine.dialect.name == "sqlite":
        engine = engine.execution_options(**{WRITE: True})  # BEGIN IMMEDIATE (see _sqlite_on_begin)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


@contextmanager
def read_only(engine: Engine) -> Iterator[Session]:
    """A read transaction for answers that write nothing (/status, /liked, /history…): a deferred
    BEGIN, which on SQLite takes no lock and so never queues behind a writer. Writing in it fails
    (SQLite `query_only`, PostgreSQL `READ ONLY`); it is rolled back at the end."""
    with Session(engine, expire_on_commit=False) as session:
        connection = session.connection()
        sqlite = engine.dialect.name == "sqlite"
        connection.exec_driver_sql("PRAGMA query_only = ON" if sqlite else "SET TRANSACTION READ ONLY")
        try:
            yield session
        finally:
            if sqlite:  # the connection goes back to the pool writable
                connection.exec_driver_sql("PRAGMA query_only = OFF")
            session.rollback()


def insert_for(engine_or_session) -> type:
    """The dialect's INSERT construct, which has `on_conflict_do_nothing` / `_do_update`."""
    bind = engine_or_session.get_bind() if isinstance(engine_or_session, Session) else engine_or_session
    return postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert


def chunks(items: list, size: int) -> Iterator[list]:
    """`items` in slices of at most `size`, so IN lists and multi-row inserts stay under parameter limits."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["database_url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("")).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_schema(engine: Engine) -> None:
    """Fail with a clear instruction when the database has not been migrated to head."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        if current is None and not inspect(engine).get_table_names():
            raise SchemaError("the database is empty: run `feedbot db upgrade` first")
        raise SchemaError(
            f"the database is at revision {current}, this feedbot needs {head}: "
            "run `feedbot db upgrade`"
        )
