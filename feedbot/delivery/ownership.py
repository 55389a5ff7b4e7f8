"""Who is sending a delivery: an identity no restart can repeat.

A worker in a container is pid 1 on every start and keeps its hostname, and pids are reused after
a reboot, so `host:pid` names a dead run as readily as a live one. A process is named here by its
host, pid, start time (the kernel's, with the boot id) and a random token drawn once per run.
On this host an owner is alive when its pid runs with the same start time, and dead when this
process now holds its pid, when its pid is gone, or when the pid was reused (another start time).
Elsewhere an owner is alive while its worker heartbeat is fresh; only one without a heartbeat (a
one-off `feedbot digest --send` on another host) is judged by how long its row sat untouched.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

STALE = timedelta(minutes=10)  # a row in flight untouched this long: its sender made no progress


def as_utc(moment: datetime) -> datetime:
    """Datetimes read back from SQLite are naive; feedbot stores UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def process_start(pid: int) -> str | None:
    """When process `pid` started, as "<boot id>.<clock ticks since boot>"; None when no such
    process runs (or this system has no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return None
    return f"{boot}.{stat.rsplit(')', 1)[1].split()[19]}"  # field 22, counted after the command name


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    start: str  # process_start of pid; "" when unknown (and for names written by older versions)
    token: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}:{self.token}"

    @classmethod
    def parse(cls, name: str | None) -> Owner | None:
        parts = (name or "").split(":")
        if len(parts) == 2 and parts[1].isdigit():  # "host:pid", before tokens
            return cls(parts[0], int(parts[1]), "", "")
        if len(parts) == 4 and parts[1].isdigit():
            return cls(parts[0], int(parts[1]), parts[2], parts[3])
        return None


@cache
def _owner(pid: int) -> Owner:
    return Owner(socket.gethostname()[:64], pid, process_start(pid) or "", secrets.token_hex(4))


def identity() -> Owner:
    """This process (a child after fork gets its own)."""
    return _owner(os.getpid())


def this_process() -> str:
    """This process's owner name."""
    return str(identity())


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_alive(name: str | None, attempted_at: datetime | None, now: datetime,
                heartbeat_seen: datetime | None = None, dead_after: timedelta = STALE) -> bool:
    """Whether the process named `name` may still be sending the row it touched at
    `attempted_at`; `heartbeat_seen` is when that process last reported as a worker, if ever."""
    if name == this_process():
        return True
    owner = Owner.parse(name)
    if owner is not None and owner.host == identity().host:
        if owner.pid == os.getpid():
            return False  # this process holds that pid now: the owner was an earlier run
        started = process_start(owner.pid)
        if started is None and (Path("/proc/self/stat").exists() or not _pid_runs(owner.pid)):
            return False  # no such process
        if owner.start and started is not None:
            return started == owner.start  # a different start time: the pid was reused
    if heartbeat_seen is not None:
        return now - as_utc(heartbeat_seen) <= dead_after
    return attempted_at is not None and now - as_utc(attempted_at) < STALE
