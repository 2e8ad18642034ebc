"""How long a run trains: a number of optimizer steps (--max-steps, or --epochs), or a --max-time budget.

By steps unless a --max-time budget alone decides (then the learning rate follows the share of the
budget spent, training/optimizer.py). A --max-time beside --max-steps only caps the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config, parse_duration


@dataclass(frozen=True)
class Totals:
    total_steps: int | None  # None: the budget decides
    budget: float | None  # seconds of --max-time
    steps_per_epoch: int  # 0 for a stream (no length)

    @property
    def by_time(self) -> bool:
        return self.total_steps is None

    def finished(self, step: int, spent: float) -> bool:
        """Every process must decide alike: `spent` is the budget time the processes agreed on."""
        if self.total_steps is not None and step >= self.total_steps:
            return True
        return self.budget is not None and spent >= self.budget

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
    return Totals(total, budget, steps_per_epoch)
