"""Whose turn it is to use the models: small requests stay prompt while large ones run.

The models do one thing at a time (a forward pass already uses every core), so requests take turns.
A small request (one text whose answer is short) does all its work in one turn, in the small lane.
A large one (several texts, or many long sequences) does its work in steps (FillMask.predict_steps:
the forward pass of one text, or ~0.1 s of decoding), one turn per step, in the large lane. When the
models are free, the oldest waiting small request goes first, so a small request waits for at most one
step of a large one, however many large ones are queued; a large step goes first after SMALL_BURST
small turns in a row, so a stream of small requests cannot starve a large one.

The turns are kept on the event loop (no thread locks): the work itself runs in the thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from starlette.concurrency import run_in_threadpool

SMALL, LARGE = "small", "large"
SMALL_BURST = 4  # small turns in a row while a large step waits
# A request is small when it has one text and its answer's sequences hold at most this many characters
# (masks x top_k x the text's length): about 5,000 tokens to decode, ~25 ms on 2 shared cores.
SMALL_SEQUENCE_CHARS = 20_000


def lane(texts: list[str], masks: list[int], per_mask: int) -> str:
    """SMALL or LARGE for a request of `texts` with `masks[i]` masks each and `per_mask` predictions a mask."""
    if len(texts) != 1:
        return LARGE
    return SMALL if masks[0] * per_mask * len(texts[0]) <= SMALL_SEQUENCE_CHARS else LARGE


class Turns:
    """One turn at a time; the small lane first, but at most SMALL_BURST small turns while a large one waits."""

    def __init__(self, burst: int = SMALL_BURST):
        self.burst = burst
        self.busy = False
        self.waiting: dict[str, deque[asyncio.Future]] = {SMALL: deque(), LARGE: deque()}
        self.small_in_a_row = 0

    @contextlib.asynccontextmanager
    async def turn(self, which: str):
        if self.busy:
            granted = asyncio.get_running_loop().create_future()
            self.waiting[which].append(granted)
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():  # the turn came as the request was cancelled
                    self._next()
                else:
                    self.waiting[which].remove(granted)
                raise
        else:
            self.busy = True
        self.small_in_a_row = self.small_in_a_row + 1 if which == SMALL else 0
        try:
            yield
        finally:
            self._next()

    def _next(self) -> None:
        """Hand the turn to the next waiter (it stays busy), or free it."""
        small, large = self.waiting[SMALL], self.waiting[LARGE]
        while small or large:
            large_due = large and (not small or self.small_in_a_row >= self.burst)
            granted = (large if large_due else small).popleft()
            if not granted.cancelled():
                granted.set_result(None)
                return
        self.busy = False


async def run(turns: Turns, which: str, work, *args):
    """`work(*args)` in the thread pool, in one turn of lane `which`."""
    async with turns.turn(which):
        return await run_in_threadpool(work, *args)


async def run_steps(turns: Turns, which: str, steps):
    """Drive the generator `steps` (FillMask.predict_steps) one step a turn; its return value."""
    while True:
        async with turns.turn(which):
            done, value = await run_in_threadpool(_advance, steps)
        if done:
            return value


def _advance(steps) -> tuple[bool, object]:
    try:
        next(steps)
    except StopIteration as stop:  # would not cross the thread pool's future as itself
        return True, stop.value
    return False, None
