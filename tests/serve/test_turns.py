"""Turns (serve/turns.py): one piece of model work at a time; a waiting small request goes before the
steps of large ones, a large step waits behind at most SMALL_BURST small turns, a cancelled waiter
neither keeps its place nor strands the turn; and which requests count as small."""

from __future__ import annotations

import asyncio

from mlmtune.serve import turns
from mlmtune.serve.turns import LARGE, SMALL, Turns


async def take_turns(gate: Turns, queued: list[tuple[str, str]]) -> list[str]:
    """While `hold` has the turn, queue `queued` (name, lane) in that order; the names in the order served."""
    order: list[str] = []
    release = asyncio.Event()

    async def hold():
        async with gate.turn(LARGE):
            await release.wait()

    async def one(name: str, which: str):
        async with gate.turn(which):
            order.append(name)
            await asyncio.sleep(0)

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiters = []
    for name, which in queued:
        waiters.append(asyncio.create_task(one(name, which)))
        await asyncio.sleep(0)  # queued in this order
    release.set()
    await asyncio.gather(holder, *waiters)
    return order


def test_a_waiting_small_request_goes_before_queued_large_steps():
    order = asyncio.run(take_turns(Turns(), [("L1", LARGE), ("L2", LARGE), ("S1", SMALL), ("S2", SMALL)]))
    assert order == ["S1", "S2", "L1", "L2"]


def test_small_turns_cannot_starve_a_large_step():
    queued = [("L1", LARGE)] + [(f"S{i}", SMALL) for i in range(5)]
    order = asyncio.run(take_turns(Turns(burst=2), queued))
    assert order == ["S0", "S1", "L1", "S2", "S3", "S4"]


def test_a_cancelled_waiter_leaves_the_queue_and_the_turn_moves_on():
    async def scenario() -> list[str]:
        gate, order = Turns(), []
        release = asyncio.Event()

        async def hold():
            async with gate.turn(SMALL):
                await release.wait()

        async def one(name, which):
            async with gate.turn(which):
                order.append(name)

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        gone = asyncio.create_task(one("gone", SMALL))
        kept = asyncio.create_task(one("kept", LARGE))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, kept), 5)  # a stranded turn would hang here
        assert gone.cancelled() and not gate.busy
        return order

    assert asyncio.run(scenario()) == ["kept"]


def test_a_turn_handed_to_a_cancelled_request_is_passed_on():
    """The turn is granted and the request cancelled before it runs: the next waiter gets it."""
    async def scenario() -> list[str]:
        gate, order, tasks = Turns(), [], {}
        release = asyncio.Event()

        async def hold():
            async with gate.turn(SMALL):
                await release.wait()
            assert gate.busy  # handed to `first`, which has not run yet
            tasks["first"].cancel()

        async def one(name):
            async with gate.turn(SMALL):
                order.append(name)

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        tasks["first"] = asyncio.create_task(one("first"))
        second = asyncio.create_task(one("second"))
        await asyncio.sleep(0)
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, second), 5)
        assert tasks["first"].cancelled() and not gate.busy
        return order

    assert asyncio.run(scenario()) == ["second"]


def test_run_steps_drives_a_generator_to_its_value():
    def steps():
        yield
        yield
        return "answer"

    assert asyncio.run(turns.run_steps(Turns(), LARGE, steps())) == "answer"


def test_which_requests_are_small():
    sentence = "The [MASK] is happy."
    assert turns.lane([sentence], [1], 50) == SMALL
    assert turns.lane([sentence, sentence], [1, 1], 1) == LARGE  # several texts: in steps
    long = "word " * 399 + "[MASK]"  # 2,000 characters: 8 masks x top_k 50 decode 400 of them
    assert turns.lane([long], [8], 50) == LARGE
    assert turns.lane([long], [1], 5) == SMALL
