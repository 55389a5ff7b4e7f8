"""PostgreSQL advisory locks held for as long as a worker has a role (the leader's, the poller's).

A lock lives on a connection of its own: PostgreSQL drops it the moment that session ends — the
process was killed, or its connection was lost. The session asks the server for TCP keepalives, so
a leader cut off by the network loses its lock within about half a minute, and `held` (a query on
that connection) tells the holder it lost it. The client gives up on the connection sooner than
the server (its own keepalives, and a TCP user timeout on an unanswered query), so `held` answers
within seconds when the network is gone, never after minutes of waiting on a query. Advisory locks
are database-wide, so a key is made from the database, the schema and the lock's name: two feedbot
databases (or schemas) on one server never share a lock.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from feedbot.store.db import CLIENT_KEEPALIVE

log = logging.getLogger(__name__)

# The server ends a session whose peer stopped answering after idle + interval × count seconds.
KEEPALIVE = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}
# The client gives up on a silent server sooner: `db.CLIENT_KEEPALIVE`.


def key(connection: Connection, name: str) -> int:
    """A signed 64-bit lock key for `name` in this connection's database and schema."""
    where = connection.execute(text("SELECT current_database() || '.' || coalesce(current_schema(), '')")).scalar()
    digest = hashlib.blake2b(f"feedbot:{where}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class AdvisoryLock:
    """A session-level advisory lock named `name`, taken without waiting and held on a dedicated
    connection until `release` (or until the process or its connection dies)."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.name = name
        # Its own connections, with the client's keepalives, never pooled: a closed one ends its session.
        self.engine = create_engine(engine.url, poolclass=NullPool, connect_args=CLIENT_KEEPALIVE)
        self._connection: Connection | None = None

    @property
    def holding(self) -> bool:
        return self._connection is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; whether this process holds it now."""
        if self._connection is not None:
            return self.held()
        connection = self.engine.connect()
        try:
            for setting, value in KEEPALIVE.items():
                connection.execute(text(f"SET {setting} = {int(value)}"))
            lock_key = key(connection, self.name)
            got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key}).scalar()
            connection.commit()
        except Exception:
            connection.invalidate()
            connection.close()
            raise
        if not got:
            connection.close()
            return False
        self._connection = connection
        return True

    def held(self) -> bool:
        """Keepalive: whether the lock's session still answers. False (and the lock let go) when
        the connection was lost: the server ended the session, and with it the lock."""
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1")).scalar()
            self._connection.commit()
            return True
        except Exception as exc:  # noqa: BLE001 - any failure means the session, and the lock, may be gone
            log.warning("lost the %s lock's database connection: %s", self.name, exc)
            self._drop()
            return False

    def release(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.execute(text("SELECT pg_advisory_unlock_all()"))
            self._connection.commit()
        except Exception:  # noqa: BLE001 - closing the session releases it anyway
            pass
        self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        try:
            connection.invalidate()  # never back to the pool: the session goes, with its locks
            connection.close()
        except Exception:  # noqa: BLE001
            pass
