"""A one-line progress bar on a terminal (and nothing when output is piped), for admin commands
that work through many files."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

Progress = Callable[[int, int, Path], None]


def bar(stream: TextIO = sys.stderr, width: int = 30) -> Progress | None:
    """A callback showing `[####....] 3/10 name`, or None when `stream` is not a terminal."""
    if not stream.isatty():
        return None

    def show(index: int, total: int, path: Path) -> None:
        if total < 3:
            return
        filled = int(width * (index + 1) / total)
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {index + 1}/{total} {path.name[:40]:40}")
        if index + 1 == total:
            stream.write("\r" + " " * (width + 50) + "\r")
        stream.flush()

    return show
