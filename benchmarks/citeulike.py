"""Load CiteULike-t (from ../shared/datasets) as texts and user libraries for the ranking benchmarks."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import SHARED

DATASET = SHARED / "datasets" / "citeulike-t"


@dataclass
class CiteULike:
    texts: list[str]  # one per item: its bag of words written out as text
    libraries: list[np.ndarray]  # items saved by each user


def missing(folder: Path = DATASET) -> str | None:
    """Why the dataset cannot be read from `folder`, or None when it can."""
    if (folder / "mult.dat").exists():
        return None
    return (f"CiteULike-t not found at {folder}: this benchmark needs ../shared/datasets/citeulike-t "
            "(mult.dat, vocabulary.dat, users.dat, tag-item.dat, tags.dat) next to the repository")


def load(folder: Path = DATASET) -> CiteULike:
    """Items as texts (each word repeated by its count) and every user's library."""
    if (why := missing(folder)) is not None:
        sys.exit(why)
    vocabulary = (folder / "vocabulary.dat").read_text(encoding="utf-8").split("\n")
    texts = []
    for line in (folder / "mult.dat").read_text().splitlines():
        words = []
        for pair in line.split()[1:]:
            word, count = pair.split(":")
            words += [vocabulary[int(word)]] * int(count)
        texts.append(" ".join(words))
    libraries = [np.array([int(x) for x in line.split()[1:]], dtype=np.int64)
                 for line in (folder / "users.dat").read_text().splitlines()]
    return CiteULike(texts, libraries)


def split(data: CiteULike, share: float = 0.2, seed: int = 0) -> np.ndarray:
    """Which items are held out as "new papers" (the ranking-lab protocol)."""
    return np.random.default_rng(seed).random(len(data.texts)) < share


def item_tags(folder: Path = DATASET) -> tuple[list[str], list[np.ndarray]]:
    """The tag names, and each item's tag ids (tag-item.dat lists the items of each tag)."""
    names = (folder / "tags.dat").read_text(encoding="utf-8").split("\n")  # tag id = line number
    n_items = len((folder / "mult.dat").read_text().splitlines())
    owners: list[list[int]] = [[] for _ in range(n_items)]
    for tag, line in enumerate((folder / "tag-item.dat").read_text().splitlines()):
        for item in line.split()[1:]:
            owners[int(item)].append(tag)
    return names, [np.array(t, dtype=np.int64) for t in owners]
