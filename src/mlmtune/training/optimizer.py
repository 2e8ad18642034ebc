"""The learning-rate schedule: linear warm-up and decay, by optimizer steps or by a time budget.

With `--max-time` and no `--max-steps`, the schedule follows the elapsed share of the budget (as in
Geiping and Goldstein's "Cramming"): warm-up over the first `--warmup-ratio` of the time, then linear
decay to 0 when the budget is spent, so any machine, fast or slow, ends its budget with a finished
schedule. The training loop sets `BudgetSchedule.progress` before each scheduler step; LambdaLR
saves the callable's attributes in its state_dict, so a resumed run continues where it was.
"""

from __future__ import annotations

import math

import torch


class BudgetSchedule:
    """LR factor by the elapsed share of a time budget (`progress`, 0..1), for LambdaLR.

    Warm-up is either the first `warmup_steps` optimizer steps or the first `warmup_share` of the
    budget; the decay is linear in time and reaches 0 when the budget is spent."""

    def __init__(self, warmup_share: float = 0.0, warmup_steps: int = 0):
        self.warmup_share = warmup_share
        self.warmup_steps = warmup_steps
        self.progress = 0.0

    def __call__(self, step: int) -> float:
        p = min(max(self.progress, 0.0), 1.0)
        if self.warmup_steps:
            return min(1.0, step / self.warmup_steps) * (1.0 - p)
        if p < self.warmup_share:
            return p / self.warmup_share
        return (1.0 - p) / (1.0 - self.warmup_share)


def build_scheduler(optimizer, *, total_steps: int | None, warmup_steps: int, warmup_ratio: float):
    """By steps (total_steps known) or by the time budget (total_steps None: a BudgetSchedule)."""
    from torch.optim.lr_scheduler import LambdaLR
    from transformers import get_scheduler

    if total_steps is not None:
        warmup = warmup_steps or math.ceil(warmup_ratio * total_steps)
        return get_scheduler("linear", optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    return LambdaLR(optimizer, BudgetSchedule(warmup_share=warmup_ratio, warmup_steps=warmup_steps))


def set_progress(scheduler, progress: float) -> None:
    """Tell a budget schedule how much of the budget is spent (no-op for a step schedule)."""
    inner = getattr(scheduler, "scheduler", scheduler)  # Accelerate's AcceleratedScheduler wraps it
    for fn in getattr(inner, "lr_lambdas", ()):
        if isinstance(fn, BudgetSchedule):
            fn.progress = progress


def build_optimizer(model: torch.nn.Module, *, lr: float, head_lr: float, weight_decay: float,
                    new_parameters: list[str]) -> torch.optim.Optimizer:
    """AdamW in four groups: pretrained/new x decayed/not. Biases and norm weights (ndim < 2) never decay;
    parameters the checkpoint lacked (a grown head) learn at head_lr."""
    new = set(new_parameters)
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((name in new, p.ndim >= 2), []).append(p)
    param_groups = [
        {"params": ps, "lr": head_lr if is_new else lr, "weight_decay": weight_decay if decays else 0.0}
        for (is_new, decays), ps in sorted(groups.items())
    ]
    fused = {"fused": True} if all(p.device.type in ("cpu", "cuda") for p in model.parameters()) else {}
    try:
        return torch.optim.AdamW(param_groups, lr=lr, **fused)
    except (RuntimeError, TypeError):  # fused kernels missing for this device or dtype
        return torch.optim.AdamW(param_groups, lr=lr, foreach=True)
