"""Engine, sessions and migrations: the one place that knows which database is behind feedbot."""

from __future__ import annotations

import select
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
    engine = create_engine(url)
    event.listen(engine, "checkout", _drop_if_closed)
    return engine


def _drop_if_closed(dbapi_connection, connection_record, connection_proxy) -> None:
    """A pooled PostgreSQL connection the server has closed (a restart, `pg_terminate_backend`,
    an idle timeout) is replaced before use. The server's goodbye is already waiting on the socket,
    so one poll tells it, where `pool_pre_ping` costs a round trip per checkout: per digest taken."""
    if dbapi_connection.closed or dbapi_connection.broken:
        raise exc.DisconnectionError("connection closed")
    fd = dbapi_connection.pgconn.socket
    if select.select([fd], [], [], 0)[0]:  # idle, nothing was asked: anything to read is the end
        raise exc.DisconnectionError("connection closed by the server")


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
