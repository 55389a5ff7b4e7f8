"""Senders asking together are served by one fetch; a failure costs one sender; nothing fetched
is lost (`feedbot.delivery.batching`)."""

import asyncio
import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from feedbot.delivery.batching import Batches


class Source:
    """Items 0..size-1 handed out in order, failing the fetches whose number is in `failing`."""

    def __init__(self, size: int, failing: set[int] = frozenset()) -> None:
        self.left, self.failing = list(range(size)), failing
        self.fetches: list[int] = []  # how many each fetch was asked for
        self.unused: list[int] = []

    async def fetch(self, count: int) -> list[int]:
        self.fetches.append(count)
        await asyncio.sleep(0)  # in the database meanwhile: other senders queue up
        if len(self.fetches) - 1 in self.failing:
            raise RuntimeError("the database went away")
        taken, self.left = self.left[:count], self.left[count:]
        return taken

    async def give_back(self, item: int) -> None:
        self.unused.append(item)


async def gather_gets(batches: Batches, senders: int) -> list:
    return await asyncio.gather(*(batches.get() for _ in range(senders)), return_exceptions=True)


def test_senders_asking_together_are_served_by_one_fetch():
    source = Source(10)
    batches = Batches(source.fetch, source.give_back)
    got = asyncio.run(gather_gets(batches, 4))
    assert got == [0, 1, 2, 3]
    assert source.fetches == [4] and batches.largest == 4


def test_when_the_rows_run_out_the_senders_left_over_get_none():
    source = Source(2)
    got = asyncio.run(gather_gets(Batches(source.fetch, source.give_back), 4))
    assert got == [0, 1, None, None]


def test_a_failing_fetch_fails_one_sender_and_the_others_are_served():
    source = Source(10, failing={0})
    got = asyncio.run(gather_gets(Batches(source.fetch, source.give_back), 3))
    assert isinstance(got[0], RuntimeError) and got[1:] == [0, 1]
    assert source.fetches == [3, 2]


def test_an_item_fetched_for_a_sender_cancelled_meanwhile_is_given_back():
    source = Source(10)

    async def scenario():
        batches = Batches(source.fetch, source.give_back)
        first, second = asyncio.ensure_future(batches.get()), asyncio.ensure_future(batches.get())
        while not source.fetches:  # both asked; the fetch is under way
            await asyncio.sleep(0)
        first.cancel()
        return await second

    assert asyncio.run(scenario()) == 1
    assert source.unused == [0]


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 12), waves=st.lists(st.integers(1, 6), min_size=1, max_size=6),
       failing=st.sets(st.integers(0, 10), max_size=4))
def test_every_item_fetched_goes_to_exactly_one_sender(size, waves, failing):
    """Senders arriving in waves, some fetches failing: each sender gets one item, None or the
    error; no item twice; every item fetched is either got or given back."""
    source = Source(size, failing)

    async def scenario():
        batches = Batches(source.fetch, source.give_back)
        results = []
        for wave in waves:
            results += await gather_gets(batches, wave)
        return results

    results = asyncio.run(scenario())
    assert len(results) == sum(waves)
    items = [r for r in results if isinstance(r, int)]
    errors = [r for r in results if isinstance(r, RuntimeError)]
    assert len(items) == len(set(items))
    assert sorted(items + source.unused) == list(range(size - len(source.left)))
    assert len(errors) == sum(1 for n in range(len(source.fetches)) if n in failing)
    assert all(r is None or isinstance(r, int | RuntimeError) for r in results)


def test_an_item_handed_to_a_sender_cancelled_before_it_woke_is_given_back():
    """The fetch hands a sender its item, and the sender is cancelled before it runs again: the
    item is nobody's, so it goes back like one fetched for a sender cancelled earlier."""
    source = Source(10)

    async def scenario():
        batches = Batches(source.fetch, source.give_back)
        sender = asyncio.ensure_future(batches.get())
        fetch = source.fetch

        async def fetch_then_cancel(count: int) -> list[int]:
            items = await fetch(count)
            asyncio.get_running_loop().call_soon(sender.cancel)  # after the result is set, before it wakes
            return items

        batches.fetch = fetch_then_cancel
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await batches.settled()
        return sender.cancelled()

    assert asyncio.run(scenario())
    assert source.unused == [0]


def test_senders_are_not_left_waiting_when_the_fetch_itself_is_cancelled():
    """The serving task cancelled mid-fetch (the loop closing): its senders end, none waits for ever."""

    async def scenario():
        fetching = asyncio.Event()

        async def fetch(count: int) -> list[int]:
            fetching.set()
            await asyncio.sleep(60)
            return list(range(count))

        async def give_back(item: int) -> None:
            pass

        batches = Batches(fetch, give_back)
        senders = [asyncio.ensure_future(batches.get()) for _ in range(3)]
        await fetching.wait()
        late = asyncio.ensure_future(batches.get())  # queued for the next fetch
        await asyncio.sleep(0)
        batches.serving.cancel()
        done, pending = await asyncio.wait([*senders, late], timeout=5)
        return len(done), all(task.cancelled() for task in done)

    assert asyncio.run(scenario()) == (4, True)
