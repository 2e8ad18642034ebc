"""Token-weighted evaluation (eval/metrics.py): the whole set and, in the same pass, the curve's subset
(the first batches, which interim evaluations score alone: training/evaluations.py)."""

from __future__ import annotations

import math

import pytest
import torch

from mlmtune.data.batching import Batch
from mlmtune.eval.metrics import evaluate_batches


class Fixed(torch.nn.Module):
    """An objective whose NLL sum and correct count per batch are read off the batch itself."""

    def forward(self, input_ids, attention_mask, labels, positions=None, targets=None):
        return input_ids[0, 0].double(), input_ids[0, 1].double()


def batch(nll: int, correct: int, masked: int) -> Batch:
    ids = torch.tensor([[nll, correct]])
    return Batch(ids, torch.ones_like(ids), ids, masked, 2)


def test_the_subset_is_scored_in_the_same_pass_as_the_whole_set():
    batches = [batch(20, 4, 10), batch(30, 1, 10), batch(50, 5, 20)]
    whole = evaluate_batches(Fixed(), batches, "cpu")
    assert whole.loss == pytest.approx(100 / 40) and whole.accuracy == pytest.approx(10 / 40)
    both, first = evaluate_batches(Fixed(), batches, "cpu", subset=1)
    assert both == whole
    assert first.masked_tokens == 10 and first.perplexity == pytest.approx(math.exp(2.0)) and first.accuracy == 0.4
    # the subset alone, as an interim evaluation scores it, gives the same figures
    assert evaluate_batches(Fixed(), batches[:1], "cpu") == first
    _, everything = evaluate_batches(Fixed(), batches, "cpu", subset=3)  # a subset of every batch: the whole set
    assert everything == whole


def test_the_subset_is_reduced_across_processes_with_the_whole():
    seen = []
    reduce = lambda t: seen.append(t.clone()) or t * 2  # noqa: E731  (two processes that scored alike)
    whole, first = evaluate_batches(Fixed(), [batch(20, 4, 10), batch(30, 1, 10)], "cpu", reduce=reduce, subset=1)
    assert len(seen) == 1 and seen[0].tolist() == [50, 5, 20, 20, 4, 10]  # one reduction for both
    assert whole.masked_tokens == 40 and first.masked_tokens == 20
