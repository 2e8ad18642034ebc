"""How long a run trains: a number of optimizer steps (--max-steps, or --epochs), or a --max-time budget.

By steps unless a --max-time budget alone decides (then the learning rate follows the share of the
budget spent, training/optimizer.py). A --max-time beside --max-steps only caps the run.

A budget holds to about one step: the loop stops when the next step, expected to take as long as the
slowest of the last few (StepTimes), would end past the budget; results.json says by how much the
budget was exceeded (`budget_exceeded_seconds`) when a step took longer than that.
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

    def finished(self, step: int, spent: float, next_step: float = 0.0) -> bool:
        """Every process must decide alike: `spent` is the budget time the processes agreed on, and
        `next_step` what the next step is expected to take (agreed too): a budget stops the run when that
        step would not fit in it, rather than after it has run past it."""
        if self.total_steps is not None and step >= self.total_steps:
            return True
        return self.budget is not None and spent + next_step >= self.budget

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
