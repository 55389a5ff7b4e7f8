"""FEEDBOT_SOURCES: which sources the worker fetches, e.g. `hf,arxiv:cs.LG+cs.CL`."""

from __future__ import annotations

import re
from dataclasses import dataclass

CATEGORY = re.compile(r"^[a-z]+(?:-[a-z]+)*(?:\.[A-Za-z]{2,}(?:-[a-z]+)*)?$")


class SourceSpecError(ValueError):
    """A source name or arXiv category that cannot be fetched."""


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "hf" | "arxiv"
    categories: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return self.kind if not self.categories else f"{self.kind}:{'+'.join(self.categories)}"


def check_category(name: str) -> str:
    if not CATEGORY.match(name):
        raise SourceSpecError(f"{name!r} is not an arXiv category (like cs.LG or hep-th)")
    return name


def parse_sources(text: str) -> list[SourceSpec]:
    """`hf,arxiv:cs.LG+cs.CL` → [hf, arxiv(cs.LG, cs.CL)]; empty text → no sources."""
    specs: list[SourceSpec] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kind, _, rest = part.partition(":")
        kind = kind.strip().lower()
        if kind == "hf":
            if rest.strip():
                raise SourceSpecError(f"'hf' takes no categories, got {part!r}")
            spec = SourceSpec("hf")
        elif kind == "arxiv":
            categories = tuple(check_category(c.strip()) for c in rest.split("+") if c.strip())
            if not categories:
                raise SourceSpecError(f"'arxiv' needs categories, e.g. arxiv:cs.LG+cs.CL, got {part!r}")
            spec = SourceSpec("arxiv", categories)
        else:
            raise SourceSpecError(f"unknown source {kind!r} (expected hf or arxiv:CATEGORIES)")
        if spec not in specs:
            specs.append(spec)
    return specs
