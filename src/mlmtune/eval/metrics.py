"""Token-weighted evaluation on the fixed masks.

Perplexity is exp(total NLL / number of masked tokens) over the whole evaluation set, summed
across processes. (The seed averages per-batch means, which weights a batch with 10 masked tokens
like one with 300.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..data.batching import Batch


@dataclass
class EvalResult:
    loss: float  # mean NLL per masked token
    perplexity: float
    accuracy: float  # share of masked tokens whose argmax is the label
    masked_tokens: int

    @classmethod
    def from_sums(cls, nll: float, correct: float, count: float) -> "EvalResult":
        if count <= 0:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        loss = nll / count
        return cls(loss, math.exp(loss) if loss < 700 else float("inf"), correct / count, int(count))

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate_batches(objective, batches: list[Batch], device, reduce=None, *, subset: int | None = None):
    """Sum NLL, correct predictions and masked tokens over `batches`; `reduce` sums them across processes
    (Accelerator.reduce), so every process returns the same, global result.

    With `subset` (a number of this process's first batches, the same on every process), returns
    `(all, subset)`: the figures of the whole set and of those first batches, from the one pass (the
    training curve's points are scored on that subset: training/evaluations.py)."""
    was_training = objective.training
    objective.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    first = None
    for i, batch in enumerate(batches):
        if i == subset:
            first = sums.clone()
        b = batch.to(device)
        nll, correct = objective(*b.tensors())
        sums += torch.stack([nll.double(), correct.double(), torch.tensor(float(b.n_masked), device=device, dtype=torch.float64)])
    if subset is not None and first is None:  # the subset is every batch
        first = sums.clone()
    both = sums if subset is None else torch.cat([sums, first])
    if reduce is not None:
        both = reduce(both)
    objective.train(was_training)
    values = both.tolist()
    whole = EvalResult.from_sums(*values[:3])
    return whole if subset is None else (whole, EvalResult.from_sums(*values[3:]))
