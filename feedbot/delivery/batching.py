"""Requests of concurrent senders served together: while one fetch is in the database, the
senders that ask meanwhile wait for the next one, which fetches as many items as they are. A
broadcast then costs one transaction per batch of rows rather than per row, and each sender
still asks only when it is ready to send (after its pace)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Batches(Generic[T]):
    """`get` one item; concurrent `get`s are fetched together by `fetch(n)`, which returns at most
    n items (fewer: there are no more, and the senders left over get None). A failing fetch fails
    one sender and is tried again for the others, so one bad moment costs one sender, as it
    would unbatched. An item fetched for a sender cancelled meanwhile goes to `unused`."""

    def __init__(self, fetch: Callable[[int], Awaitable[list[T]]],
                 unused: Callable[[T], Awaitable[None]]) -> None:
        self.fetch, self.unused = fetch, unused
        self.waiting: deque[asyncio.Future] = deque()
        self.serving: asyncio.Task | None = None
        self.largest = 0  # the most items one fetch served

    async def get(self) -> T | None:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        if self.serving is None or self.serving.done():
            self.serving = asyncio.create_task(self._serve())
        return await future

    async def _serve(self) -> None:
        while self.waiting:
            batch = [future for future in self.waiting if not future.done()]
            self.waiting.clear()
            if not batch:
                continue
            try:
                items = await self.fetch(len(batch))
            except Exception as exc:  # noqa: BLE001 - handed to the first sender; the others try again
                pending = [future for future in batch if not future.done()]
                if pending:
                    pending[0].set_exception(exc)
                    self.waiting.extendleft(reversed(pending[1:]))
                continue
            self.largest = max(self.largest, len(items))
            for n, future in enumerate(batch):
                item = items[n] if n < len(items) else None
                if not future.done():
                    future.set_result(item)
                elif item is not None:
                    try:
                        await self.unused(item)
                    except Exception:  # noqa: BLE001 - the others are still served; the log has it
                        log.exception("could not give back an item no sender took")
