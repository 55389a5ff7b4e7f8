"""Matching words people type against paper text: the one `fold` that search, mutes and interests
share; mutes such as `c++`, `c#` or `.net` (where `\\b…\\b` never matches), in any case and with or
without accents; and whether an interest has a word that could ever match a paper.
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"\w{2,}")


def fold(text: str) -> str:
    """Text for matching, the one fold every matcher uses: compatibility-normalised, case-folded,
    accents dropped (`Naïve ＣＡＦÉ` and `naive cafe` both become `naive cafe`; `c++`, `c#` and `.net`
    keep their symbols).

    NFKD first, so compatibility letters (`㎒`, `𝐀`, full width) reach casefold as plain ones; NFKD
    again, as casefold can leave text unnormalised (`ᾳ` → `αι` plus a mark); marks dropped; NFC.
    Stored as papers.search_text, so SQLite and PostgreSQL match alike whatever their collation
    (SQLite's LIKE folds ASCII only).
    """
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def mute_pattern(words: list[str]) -> re.Pattern[str] | None:
    """One pattern for a subscriber's muted words, to search in `fold`ed text.

    A word edge is required only where the muted word itself starts or ends with a word
    character, so `c++` matches "C++ templates" and "C++11", `.net` matches "ASP.NET", and `gan`
    does not match "organ".
    """
    parts = []
    for word in {fold(w).strip() for w in words}:
        if not word:
            continue
        before = r"(?<!\w)" if re.match(r"\w", word) else ""
        after = r"(?!\w)" if re.search(r"\w$", word) else ""
        parts.append(before + re.escape(word) + after)
    return re.compile("|".join(sorted(parts))) if parts else None


def could_match(text: str) -> bool:
    """Whether text has a word a paper could be found by: not only stop words, emoji or symbols."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS  # local: storing papers needs fold, not sklearn

    return any(w not in ENGLISH_STOP_WORDS for w in _WORD.findall(fold(text)))
