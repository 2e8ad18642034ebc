"""Batches for the GPU path (data/batching.py): prefetched in a background thread, the same batches in
the same order; a failure where the batch is taken; the thread ends when the run does."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from mlmtune.data.batching import Batch, Prefetch, slot_capacity


def numbered(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise RuntimeError(f"cannot read batch {i}")
        ids = torch.full((2, 4), i)
        yield Batch(ids, torch.ones_like(ids), torch.full_like(ids, -100), 0, 8)


def test_prefetched_batches_are_the_generators_in_its_order():
    with Prefetch(numbered(20), depth=3) as batches:
        assert [int(b.input_ids[0, 0]) for b in batches] == list(range(20))


def test_a_failure_reaches_the_loop_where_the_batch_is_taken():
    with Prefetch(numbered(10, fail_at=4)) as batches:
        assert [int(next(batches).input_ids[0, 0]) for _ in range(4)] == [0, 1, 2, 3]
        with pytest.raises(RuntimeError, match="batch 4"):
            next(batches)


def test_the_thread_stops_when_the_run_does():
    def endless():
        i = 0
        while True:
            yield from numbered(1)
            i += 1

    before = threading.active_count()
    with Prefetch(endless(), depth=2) as batches:
        next(batches)
        time.sleep(0.2)  # the thread is blocked on a full queue now
    deadline = time.time() + 5
    while threading.active_count() > before and time.time() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before


def test_slots_hold_a_batch_nearly_always():
    """5 standard deviations above the expected count: of 2,000 simulated 16 x 128 batches at 0.15, none
    overflows, and the slots stay within 40% of the mean (the head's extra work under --compile)."""
    capacity = slot_capacity(16, 128, 0.15)
    counts = np.random.default_rng(0).binomial(16 * 128, 0.15, size=2000)
    assert counts.max() <= capacity <= 1.4 * 16 * 128 * 0.15
