"""How long a run trains: a number of optimizer steps (--max-steps, or --epochs), or a --max-time budget;
and when it evaluates on the way.

By steps unless a --max-time budget alone decides (then the learning rate follows the share of the
budget spent, training/optimizer.py). A --max-time beside --max-steps only caps the run.

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

    def finished(self, step: int, spent: float) -> bool:
        """Every process must decide alike: `spent` is the budget time the processes agreed on."""
        if self.total_steps is not None and step >= self.total_steps:
            return True
        return self.budget is not None and spent >= self.budget

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
