"""Helpers shared by the benchmarks: databases to run on, timing, and the RESULT line."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.pgschema import fresh_schema

ROOT = Path(__file__).resolve().parent.parent
# ../shared next to the repository (or next to a folder holding it, for a checkout one level deeper).
SHARED = next((p / "shared" for p in ROOT.parents if (p / "shared" / "datasets").is_dir()), ROOT.parent / "shared")


def postgres_base_url() -> str:
    """The test PostgreSQL server's URL, starting it (scripts/postgres.sh) when needed."""
    url = os.environ.get("FEEDBOT_TEST_POSTGRES_URL")
    if not url:
        url = subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh")], check=True,
                             capture_output=True, text=True).stdout.strip()
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@contextmanager
def scratch_database(kind: str, folder: Path) -> Iterator[str]:
    """An empty database of `kind` ("sqlite" or "postgresql"), dropped afterwards."""
    if kind == "sqlite":
        path = folder / f"bench-{uuid.uuid4().hex[:8]}.db"
        yield f"sqlite:///{path}"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return
    with fresh_schema(postgres_base_url(), "bench") as url:
        yield url


def timed(function: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """Median wall time over `repeat` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def result_line(name: str, **values: object) -> str:
    parts = []
    for key, value in values.items():
        parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    return f"RESULT {name} " + " ".join(parts)
