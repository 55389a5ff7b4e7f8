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
    would unbatched. An item fetched for a sender cancelled meanwhile — before its fetch ended, or
    after it was handed its item but before it ran again — goes to `unused` (`settled` waits for
    that); if the fetch itself is cancelled, its senders are cancelled too, none waits for ever."""

    def __init__(self, fetch: Callable[[int], Awaitable[list[T]]],
                 unused: Callable[[T], Awaitable[None]]) -> None:
        self.fetch, self.unused = fetch, unused
        self.waiting: deque[asyncio.Future] = deque()
        self.serving: asyncio.Task | None = None
        self.largest = 0  # the most items one fetch served
        self._giving_back: set[asyncio.Task] = set()

    async def get(self) -> T | None:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        if self.serving is None or self.serving.done():
            self.serving = asyncio.create_task(self._serve())
        try:
            return await future
        except asyncio.CancelledError:
            # Cancelled after its item was handed over but before this sender woke to take it:
            # nobody else will, so it goes back like any other item fetched for a cancelled sender.
            if future.done() and not future.cancelled() and future.exception() is None \
                    and future.result() is not None:
                self._give_back(future.result())
            raise

    def _give_back(self, item: T) -> None:
        task = asyncio.get_running_loop().create_task(self._give_back_now(item))
        self._giving_back.add(task)
        task.add_done_callback(self._giving_back.discard)

    async def _give_back_now(self, item: T) -> None:
        try:
            await self.unused(item)
        except Exception:  # noqa: BLE001 - the others are still served; the log has it
            log.exception("could not give back an item no sender took")

    async def settled(self) -> None:
        """Wait for the fetch under way and the items being given back."""
        while True:
            busy = [task for task in (self.serving, *self._giving_back) if task is not None and not task.done()]
            if not busy:
                return
            await asyncio.wait(busy)

    async def _serve(self) -> None:
        batch: list[asyncio.Future] = []
        try:
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
                left: list[T] = []  # every live sender is served before anything is given back
                for n, future in enumerate(batch):
                    item = items[n] if n < len(items) else None
                    if not future.done():
                        future.set_result(item)
                    elif item is not None:
                        left.append(item)
                for item in left:
                    await self._give_back_now(item)
        finally:  # cancelled itself (the loop is closing): no sender is left waiting for ever
            for future in [*batch, *self.waiting]:
                future.cancel()
            self.waiting.clear()
