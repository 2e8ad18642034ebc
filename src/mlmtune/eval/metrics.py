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
def evaluate_batches(objective, batches: list[Batch], device, reduce=None) -> EvalResult:
    """Sum NLL, correct predictions and masked tokens over `batches`; `reduce` sums the three
    across processes (Accelerator.reduce), so every process returns the same, global result."""
    was_training = objective.training
    objective.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for batch in batches:
        b = batch.to(device)
        nll, correct = objective(*b.tensors())
        sums += torch.stack([nll.double(), correct.double(), torch.tensor(float(b.n_masked), device=device, dtype=torch.float64)])
    if reduce is not None:
        sums = reduce(sums)
    objective.train(was_training)
    nll, correct, count = sums.tolist()
    return EvalResult.from_sums(nll, correct, count)
