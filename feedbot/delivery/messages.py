"""What feedbot says, as plain data: HTML text plus button rows. Telegram and the console chat
each turn a Reply into their own form; nothing here knows about either.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field, replace

from feedbot.store.models import Paper
from feedbot.store.papers import links_of

MAX_TEXT = 4096  # Telegram's limit for one message, in UTF-16 units of its text (see `telegram_length`)
MAX_CALLBACK_BYTES = 64  # Telegram's limit for a button's callback data
VOTE_DATA = re.compile(r"^v:([0-9]{1,12}):([+-])$")
COUNT_LABEL = re.compile(r"^([0-9]{1,3})\. ")


@dataclass(frozen=True)
class Button:
    label: str
    data: str

    def __post_init__(self) -> None:
        if len(self.data.encode()) > MAX_CALLBACK_BYTES:
            raise ValueError(f"callback data over {MAX_CALLBACK_BYTES} bytes: {self.data!r}")


@dataclass
class Reply:
    text: str  # Telegram HTML: every outside string passed through `escape`
    keyboard: list[list[Button]] = field(default_factory=list)
    document: tuple[str, bytes] | None = None  # (file name, content), sent with `text` as caption
    delivery: int | None = None  # a digest part: sent through feedbot.delivery.deliveries, recorded part by part


@dataclass
class Answer:
    """The outcome of a button press: a short notice, and what to change or send."""

    notice: str
    keyboard: list[list[Button]] | None = None  # new buttons for the pressed message
    text: str | None = None  # new text for the pressed message
    replies: list[Reply] = field(default_factory=list)
    alert: bool = False


def escape(text: str) -> str:
    return html.escape(text, quote=False)


_LINK = re.compile(r'<a href="([^"]*)">(.*?)</a>', re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def telegram_length(text: str) -> int:
    """A message's length as Telegram counts it against MAX_TEXT: UTF-16 code units of the text
    it shows — tags dropped, `&amp;` one character, an emoji or a mathematical letter two."""
    return len(html.unescape(_TAG.sub("", text)).encode("utf-16-le")) // 2


def plain(text: str) -> str:
    """HTML to plain text: the fallback when Telegram cannot parse our entities, and the console.

    Links keep their target as a plain URL after the text: `Title (https://…)`.
    """
    def spell(match: re.Match[str]) -> str:
        url, label = match.group(1), match.group(2)
        return url if re.sub(r"<[^>]+>", "", label) == url else f"{label} ({url})"

    return html.unescape(re.sub(r"<[^>]+>", "", _LINK.sub(spell, text)))


def snippet(abstract: str, limit: int = 260) -> str:
    """The abstract's opening, cut at a word boundary."""
    text = " ".join(abstract.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def link(url: str, text: str) -> str:
    """A Telegram-HTML link; `text` must already be escaped."""
    return f'<a href="{html.escape(url, quote=True)}">{text}</a>'


def paper_item(lead: str, paper: Paper, paper_link: str, *, title_chars: int | None = None,
               byline: bool = True, listed: bool = False, abstract_chars: int | None = None,
               why: str | None = None) -> str:
    """One paper as every list shows it (digest, starters, /search, /liked, /export, /history):
    `lead` (its number or vote mark), the bold title linked to the paper (`paper_link` is the
    FEEDBOT_PAPER_LINK template), its authors and code link when known; then, when asked for, its
    listing date, the abstract's opening and why it was picked."""
    links = links_of(paper, paper_link)
    title = paper.title
    if title_chars is not None and len(title) > title_chars:
        title = title[: title_chars - 1] + "…"
    lines = [f"{lead} <b>{link(links.url, escape(title))}</b>"]
    credits = [escape(links.authors)] if byline and links.authors else []
    if byline and links.code_url:
        credits.append(link(links.code_url, "code"))
    if credits:
        lines.append(" · ".join(credits))
    if listed:
        lines[-1] += f" ({paper.first_listed:%d %b %Y})"
    if abstract_chars is not None:
        lines.append(escape(snippet(paper.abstract, abstract_chars)))
    if why is not None:
        lines.append(f"<i>{escape(why if len(why) <= 600 else why[:599] + '…')}</i>")
    return "\n".join(lines)


def vote_row(number: int, paper_id: int, vote: int) -> list[Button]:
    """👍/👎 for one pick; the current vote is marked ✅."""
    return [
        Button(f"{'✅ ' if vote > 0 else ''}👍 {number}", f"v:{paper_id}:+"),
        Button(f"{'✅ ' if vote < 0 else ''}👎 {number}", f"v:{paper_id}:-"),
    ]


def count_row(number: int, paper_id: int, up: int, down: int) -> list[Button]:
    """👍/👎 for one pick of a group's or channel's digest: how many members tapped each, never who."""
    return [Button(f"{number}. 👍 {up}", f"v:{paper_id}:+"), Button(f"👎 {down}", f"v:{paper_id}:-")]


def vote_keyboard(numbered: list[tuple[int, int]], votes: dict[int, int]) -> list[list[Button]]:
    """Rows of 👍/👎 for (number, paper id) pairs."""
    return [vote_row(number, pid, votes.get(pid, 0)) for number, pid in numbered]


def numbered_papers(keyboard: list[list[Button]]) -> list[tuple[int, int]]:
    """The (number, paper id) pairs a vote keyboard was built from; other buttons are ignored."""
    out = []
    for row in keyboard:
        match = VOTE_DATA.match(row[0].data) if row else None
        if match:
            lead = COUNT_LABEL.match(row[0].label)  # a group's `3. 👍 2`, else a person's `👍 3`
            number = lead.group(1) if lead else row[0].label.rsplit(" ", 1)[-1]
            out.append((int(number) if number.isascii() and number.isdecimal() else len(out) + 1, int(match.group(1))))
    return out


def split_items(header: str, items: list[tuple[str, list[Button]]], limit: int = MAX_TEXT,
                separator: str = "\n\n") -> list[Reply]:
    """Pack items (text + its button row) into as few messages as fit, splitting only between items."""
    replies: list[Reply] = []
    current, size = Reply(header), telegram_length(header)
    gap = telegram_length(separator)
    for text, row in items:
        length = telegram_length(text)
        if current.text and size + gap + length > limit:
            replies.append(current)
            current, size = Reply(""), 0
        current.text = f"{current.text}{separator}{text}" if current.text else text
        size += (gap if size else 0) + length
        if row:
            current.keyboard.append(row)
    replies.append(current)
    return fit(replies, limit)


def fit(replies: list[Reply], limit: int = MAX_TEXT) -> list[Reply]:
    """Replies as Telegram takes them: one too long is cut between lines (never inside a tag),
    its buttons and file going with the last part; a single line too long for any message is cut
    anywhere, as plain text."""
    out: list[Reply] = []
    for reply in replies:
        if telegram_length(reply.text) <= limit:
            out.append(reply)
            continue
        parts = _cut(reply.text, limit)
        out += [Reply(part) for part in parts[:-1]]
        out.append(replace(reply, text=parts[-1]))
    return out


def _cut(text: str, limit: int) -> list[str]:
    """`text` in pieces of at most `limit` (telegram_length), cut where no tag is open."""
    blocks: list[str] = []  # runs of whole lines that open and close the same tags
    run: list[str] = []
    depth = 0
    for line in text.split("\n"):
        run.append(line)
        depth += len(re.findall(r"<[^/]", line)) - len(re.findall(r"</", line))
        if depth <= 0:
            blocks.append("\n".join(run))
            run, depth = [], 0
    if run:
        blocks.append("\n".join(run))
    pieces: list[str] = []
    current, size = "", 0
    for block in blocks:
        length = telegram_length(block)
        if length > limit:  # one line longer than a message: its words, cut as plain text
            pieces += [current] if current.strip() else []
            current, size = "", 0
            pieces += [escape(chunk) for chunk in _plain_chunks(html.unescape(_TAG.sub("", block)), limit)]
            continue
        if current and size + 1 + length > limit:
            pieces.append(current)
            current, size = "", 0
        current, size = (f"{current}\n{block}", size + 1 + length) if current else (block, length)
    pieces.append(current)
    return [piece.strip() for piece in pieces if piece.strip()] or [""]


def _plain_chunks(text: str, limit: int) -> list[str]:
    chunks, current, size = [], [], 0
    for char in text:
        units = 2 if ord(char) > 0xFFFF else 1
        if size + units > limit:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += units
    chunks.append("".join(current))
    return chunks
