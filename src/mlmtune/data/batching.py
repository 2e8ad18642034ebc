"""Blocks -> masked batches: the epoch order, each process's share of it, the micro-batches of the
training steps, and the fixed eval batches.

The order of epoch e is a permutation drawn from (seed, e) and cut into global batches of
`batch_size x processes`; process r takes slice r of each. So 2 processes x 8 see the same global
batches as 1 process x 16, and a run resumed at optimizer step s knows where it is from s alone.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .blocks import Blocks
from .masking import EVAL_STREAM, IGNORE_INDEX, Masker
from .streaming import StreamingData, stream_batches

LENGTH_GROUP_BATCHES = 50  # line-by-line: sort by length within windows of this many global batches


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) int64, corrupted
    attention_mask: torch.Tensor  # (B, L) int64
    labels: torch.Tensor  # (B, L) int64, -100 where nothing is predicted
    n_masked: int
    n_tokens: int  # non-pad tokens
    # --compile: the labelled positions as flat indices into (B * L), padded to a fixed number of slots
    # (index 0, target -100), so the compiled forward sees one shape whatever the number masked
    positions: torch.Tensor | None = None  # (K,) int64
    targets: torch.Tensor | None = None  # (K,) int64

    def tensors(self) -> tuple:
        """What the objective's forward takes."""
        return self.input_ids, self.attention_mask, self.labels, self.positions, self.targets

    def map(self, fn) -> "Batch":
        moved = [None if t is None else fn(t) for t in self.tensors()]
        return Batch(*moved[:3], self.n_masked, self.n_tokens, *moved[3:])

    def to(self, device) -> "Batch":
        if torch.device(device).type == "cpu":
            return self
        return self.map(lambda t: t.to(device, non_blocking=True))

    def pin(self) -> "Batch":
        """In page-locked memory: its copy to a GPU (non_blocking) then overlaps the computation."""
        return self.map(lambda t: t.pin_memory())


SLOT_STEP = 32  # the number of slots is a multiple of this


def slot_capacity(batch_size: int, length: int, probability: float, *, whole_word: bool = False) -> int:
    """Slots for the labelled positions of a (batch_size, length) batch: the expected number masked and
    5 standard deviations (twice that with whole words, chosen together), rounded up to SLOT_STEP. A
    batch above it (about once in 3 million) takes the next multiple: one more compiled shape."""
    n = batch_size * length
    spread = 5 * math.sqrt(n * probability * (1 - probability)) * (2 if whole_word else 1)
    return max(SLOT_STEP, -(-int(math.ceil(n * probability + spread)) // SLOT_STEP) * SLOT_STEP)


def with_slots(batch: Batch, capacity: int) -> Batch:
    """`batch` with its labelled positions in `capacity` static slots (more, in steps, if it holds more)."""
    flat = batch.labels.reshape(-1)
    where = torch.nonzero(flat != IGNORE_INDEX).reshape(-1)
    k = max(capacity, -(-len(where) // SLOT_STEP) * SLOT_STEP)
    positions = torch.zeros(k, dtype=torch.long)
    targets = torch.full((k,), IGNORE_INDEX, dtype=torch.long)
    positions[:len(where)] = where
    targets[:len(where)] = flat[where]
    return Batch(batch.input_ids, batch.attention_mask, batch.labels, batch.n_masked, batch.n_tokens, positions,
                 targets)


def make_batch(blocks: Blocks, indices: np.ndarray, masker: Masker, *, seed: int, stream: int,
               pad_id: int, pad_to_multiple_of: int = 1, sample_ids: np.ndarray | None = None) -> Batch:
    """Pad, mask and tensorise the examples at `indices`. Their masks depend on their ids (`indices`
    unless `sample_ids` is given), not on the batch they are in."""
    padded = blocks.batch(indices, pad_id, pad_to_multiple_of)
    attention = padded["attention_mask"]
    ids = np.asarray(indices if sample_ids is None else sample_ids)
    corrupted, labels = masker(padded["input_ids"], attention, ids, seed=seed, stream=stream,
                               word_ids=padded["word_ids"] if masker.spec.whole_word else None)
    n_masked = int((labels != IGNORE_INDEX).sum())
    return Batch(torch.from_numpy(corrupted), torch.from_numpy(attention.astype(np.int64)),
                 torch.from_numpy(labels), n_masked, int(attention.sum()))


def epoch_order(n: int, *, seed: int, epoch: int, lengths: np.ndarray | None = None,
                global_batch: int = 1) -> np.ndarray:
    """The example order of one epoch. With `lengths`, windows of global batches are sorted by length,
    so each batch pads little (line-by-line mode)."""
    order = np.random.default_rng([seed, 1000 + epoch]).permutation(n)
    if lengths is not None:
        window = LENGTH_GROUP_BATCHES * global_batch
        order = np.concatenate([
            chunk[np.argsort(-lengths[chunk], kind="stable")] for chunk in np.array_split(order, max(1, -(-n // window)))
        ]) if n else order
    return order


def process_batches(order: np.ndarray, *, batch_size: int, rank: int, world: int) -> list[np.ndarray]:
    """This process's micro-batches; the last incomplete global batch is dropped so every process
    takes the same number of steps."""
    global_batch = batch_size * world
    n_full = len(order) // global_batch
    return [order[i * global_batch + rank * batch_size: i * global_batch + (rank + 1) * batch_size]
            for i in range(n_full)]


def train_batches(examples: Blocks | StreamingData, masker: Masker, *, first_step: int, steps_per_epoch: int,
                  accumulation: int, batch_size: int, rank: int, world: int, seed: int, pad_id: int,
                  pad_to_multiple_of: int = 1, line_by_line: bool = False, stream_id: int | None = None,
                  slots: int | None = None) -> Iterator[Batch]:
    """This process's micro-batches from optimizer step `first_step` on, epoch after epoch (a stream:
    block after block). Masks are drawn from (seed, epoch or `stream_id`, example id), so a resumed run
    and a run on more processes mask every example alike. `slots`: static slots for the labelled
    positions (with_slots; --compile)."""
    batches = _train_batches(examples, masker, first_step=first_step, steps_per_epoch=steps_per_epoch,
                             accumulation=accumulation, batch_size=batch_size, rank=rank, world=world, seed=seed,
                             pad_id=pad_id, pad_to_multiple_of=pad_to_multiple_of, line_by_line=line_by_line,
                             stream_id=stream_id)
    return batches if slots is None else (with_slots(b, slots) for b in batches)


def _train_batches(examples: Blocks | StreamingData, masker: Masker, *, first_step: int, steps_per_epoch: int,
                   accumulation: int, batch_size: int, rank: int, world: int, seed: int, pad_id: int,
                   pad_to_multiple_of: int, line_by_line: bool, stream_id: int | None) -> Iterator[Batch]:
    if isinstance(examples, StreamingData):  # each process reads its own share of the stream (`rank` of `world`)
        start_block = first_step * accumulation * batch_size
        for blocks, ids in stream_batches(examples, start_block=start_block, batch_size=batch_size):
            yield make_batch(blocks, np.arange(len(ids)), masker, seed=seed, stream=0 if stream_id is None else stream_id,
                             pad_id=pad_id, pad_to_multiple_of=pad_to_multiple_of, sample_ids=ids)
        return
    epoch, skip = divmod(first_step, steps_per_epoch)
    lengths = examples.lengths if line_by_line else None
    while True:
        order = epoch_order(len(examples), seed=seed, epoch=epoch, lengths=lengths, global_batch=batch_size * world)
        mine = process_batches(order, batch_size=batch_size, rank=rank, world=world)
        for indices in mine[skip * accumulation:steps_per_epoch * accumulation]:
            yield make_batch(examples, indices, masker, seed=seed, stream=epoch if stream_id is None else stream_id,
                             pad_id=pad_id, pad_to_multiple_of=pad_to_multiple_of)
        epoch, skip = epoch + 1, 0


def eval_batches(blocks: Blocks, masker: Masker, *, seed: int, batch_size: int, pad_id: int,
                 pad_to_multiple_of: int = 1, rank: int = 0, world: int = 1, slots: int | None = None) -> list[Batch]:
    """The evaluation set, masked once from `seed` and kept: this process's share.

    Batch j goes to process j % world. Every process gets the same number of batches (an empty-label
    copy fills a gap), so sharded models see the same number of forward calls everywhere; no
    example is scored twice.
    """
    order = np.arange(len(blocks))
    if len(blocks) > 1 and pad_to_multiple_of > 1:
        order = order[np.argsort(-blocks.lengths, kind="stable")]  # similar lengths together: little padding
    groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    mine = [make_batch(blocks, g, masker, seed=seed, stream=EVAL_STREAM, pad_id=pad_id,
                       pad_to_multiple_of=pad_to_multiple_of) for g in groups[rank::world]]
    per_process = -(-len(groups) // world)
    while len(mine) < per_process:
        template = make_batch(blocks, groups[0], masker, seed=seed, stream=EVAL_STREAM, pad_id=pad_id)
        mine.append(Batch(template.input_ids, template.attention_mask,
                          torch.full_like(template.labels, IGNORE_INDEX), 0, 0))
    return mine if slots is None else [with_slots(b, slots) for b in mine]


_END = object()


class Prefetch:
    """`with Prefetch(batches, pin=...) as batches:` the next `depth` batches built in a background thread
    while the current step runs (building and masking a 16 x 128 batch takes ~5 ms on a CPU, 12 ms at
    256: a real share of a fast GPU step). With `pin` (CUDA) they wait in page-locked memory, so their
    copy to the GPU (Batch.to, non_blocking) does not hold up the step either. The batches are the
    generator's, in its order: prefetching changes when they are made, not what they are."""

    def __init__(self, batches: Iterator[Batch], *, depth: int = 2, pin: bool = False):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(iter(batches), pin), name="mlmtune-prefetch",
                                        daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self, batches: Iterator[Batch], pin: bool) -> None:
        try:
            for batch in batches:
                if not self._put(batch.pin() if pin else batch):
                    return
            self._put(_END)
        except BaseException as exc:  # a stream's reading error: raised where the batch is taken
            self._put(exc)

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        item = self._queue.get()
        if item is _END:
            self._queue.put(_END)  # stays exhausted
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> "Prefetch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
