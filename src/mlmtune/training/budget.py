"""How long a run trains: a number of optimizer steps (--max-steps, or --epochs), or a --max-time budget;
and when it evaluates on the way.

By steps unless a --max-time budget alone decides (then the learning rate follows the share of the
budget spent, training/optimizer.py). A --max-time beside --max-steps only caps the run.

A budget holds to about one step: the loop stops when the next step, expected to take as long as the
slowest of the last few (StepTimes), would end past the budget; results.json says by how much the
budget was exceeded (`budget_exceeded_seconds`) when a step took longer than that.

Evaluations: every --eval-every steps when given; else EVALUATIONS times over the plan, so the curves
are curves: every total/8 steps (rounded) when the plan counts steps (--max-steps, or --epochs), at
each eighth of the budget when --max-time decides. The last step is always evaluated (in full); the
others are interim (training/evaluations.py). With a budget, interim evaluations count against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import Config, parse_duration

EVALUATIONS = 8  # evaluations over a plan when --eval-every does not say (the last one at its end)


@dataclass(frozen=True)
class Totals:
    total_steps: int | None  # None: the budget decides
    budget: float | None  # seconds of --max-time
    steps_per_epoch: int  # 0 for a stream (no length)
    eval_every: int | None = None  # evaluate every N steps; None: at each 1/EVALUATIONS of the budget

    def eval_due(self, step: int, spent_before: float, spent: float) -> bool:
        """An interim evaluation after `step`, which took the budget from `spent_before` to `spent`
        seconds (the values all processes agreed on, so that they decide alike)?"""
        if self.eval_every is not None:
            return step % self.eval_every == 0
        if not self.budget:
            return False
        share = self.budget / EVALUATIONS
        return math.floor(spent / share) > math.floor(spent_before / share)

    def evaluations(self) -> str:
        """When the run evaluates, in words (train's data line)."""
        if self.eval_every is not None:
            return "after every step" if self.eval_every == 1 else f"every {self.eval_every:,} steps"
        return f"at each {EVALUATIONS}th of the {self.budget:,.0f} s budget"

    @property
    def by_time(self) -> bool:
        return self.total_steps is None

    def finished(self, step: int, spent: float, next_step: float = 0.0) -> bool:
        """Every process must decide alike: `spent` is the budget time the processes agreed on, and
        `next_step` what the next step is expected to take (agreed too): a budget stops the run when that
        step would not fit in it, rather than after it has run past it."""
        if self.total_steps is not None and step >= self.total_steps:
            return True
        return self.budget is not None and spent + next_step >= self.budget

    def progress(self, step: int, spent: float) -> float:
        """The share of the run done after `step` steps and `spent` seconds of the budget (0..1)."""
        if self.total_steps is not None:
            return min(1.0, step / max(self.total_steps, 1))
        return min(1.0, spent / self.budget)

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch if self.steps_per_epoch else 0.0


def plan_totals(cfg: Config, steps_per_epoch: int) -> Totals:
    budget = parse_duration(cfg.max_time) if cfg.max_time else None
    if cfg.max_steps is not None:
        total = cfg.max_steps
    elif budget is not None:
        total = None
    else:
        total = cfg.epochs * steps_per_epoch
    every = cfg.eval_every
    if every is None and total is not None:
        every = max(1, round(total / EVALUATIONS))
    return Totals(total, budget, steps_per_epoch, every)


class StepTimes:
    """The budget seconds of the last few training steps, from the budget the processes agreed on at each
    step (so every process expects the same next step). A resumed run starts from the expectation its
    checkpoint saved (`saved`), so a finished run resumed with its own budget takes no step past it."""

    def __init__(self, agreed: float, saved: float = 0.0, keep: int = 3):
        self.last, self.keep, self.times = agreed, keep, [saved] if saved > 0 else []

    def add(self, agreed: float, *, learned: bool = True) -> None:
        """The agreed budget after a step; a step that learned nothing (no forward) is no measure of one."""
        if learned:
            self.times = (self.times + [max(0.0, agreed - self.last)])[-self.keep:]
        self.last = agreed

    @property
    def next_step(self) -> float:
        return max(self.times, default=0.0)
