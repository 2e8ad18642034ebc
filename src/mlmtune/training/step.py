"""One optimizer step, and the state the training loop carries from step to step.

`train_step` is the whole step: forward and backward over the micro-batches (gradients sync on the
last), one reduce that agrees on the loss, a stop request and the budget spent, then clip, step,
schedule, zero. `benchmarks/train_throughput.py` times this very function.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import torch

from ..data.batching import Batch
from .optimizer import set_progress


@dataclass
class TrainState:
    """The loop's counters; a checkpoint saves them (with the step) and --resume restores them."""

    step: int = 0  # optimizer steps done
    tokens: int = 0  # training tokens seen, all processes together
    train_seconds: float = 0.0  # in training steps
    eval_seconds: float = 0.0
    warm_seconds: float = 0.0  # the warm start of a grown head
    budget_spent: float = 0.0  # of --max-time: the warm start and the steps (evaluations do not count)
    budget_agreed: float = 0.0  # the budget spent as all processes agreed at the last step: stopping decides on it
    grad_norm: torch.Tensor | None = None  # of the last step, read only when logged (no extra wait for the device)
    sessions: int = 1  # this one and the ones before it (--resume)
    wall_before: float = 0.0  # wall-clock seconds of the sessions before this one, to their last checkpoint
    session_start: float = field(default_factory=time.perf_counter)  # when this session started (perf_counter)

    SAVED = ("tokens", "train_seconds", "eval_seconds", "warm_seconds", "budget_spent", "sessions")

    @property
    def wall_seconds(self) -> float:
        """Wall-clock seconds of the whole run so far, all sessions together (a resumed run's total time)."""
        return self.wall_before + (time.perf_counter() - self.session_start)

    def counters(self) -> dict:
        """What a checkpoint's trainer_state.json keeps besides the step."""
        return {**{name: getattr(self, name) for name in self.SAVED}, "wall_seconds": round(self.wall_seconds, 3)}

    @classmethod
    def restored(cls, saved: dict, session_start: float | None = None) -> "TrainState":
        """The state a checkpoint recorded (a counter it lacks starts at 0), in a new session."""
        state = cls(step=int(saved["step"]))
        kinds = {f.name: f.type for f in fields(cls)}
        for name in cls.SAVED:
            if saved.get(name) is not None:
                setattr(state, name, int(saved[name]) if kinds[name] == "int" else float(saved[name]))
        state.sessions += 1  # this one too (a checkpoint of an older mlmtune counts as one session)
        wall = saved.get("wall_seconds")  # not in a checkpoint of an older mlmtune
        state.wall_before = float(wall) if isinstance(wall, (int, float)) and not isinstance(wall, bool) \
            and math.isfinite(wall) and wall > 0 else 0.0
        if session_start is not None:
            state.session_start = session_start
        return state


class NonFiniteLoss(Exception):
    """The step's loss is NaN or infinite; nothing was applied to the weights."""

    def __init__(self, loss: float):
        super().__init__(f"loss is {loss}")
        self.loss = loss


class StepResult(NamedTuple):
    nll: float  # summed over the masked tokens of the global batch
    masked: int  # masked tokens of the global batch
    stop: bool  # a signal reached some process: stop after this step


def train_step(accelerator, objective, optimizer, scheduler, micro: list[Batch], state: TrainState, *,
               max_grad_norm: float | None, budget: float | None = None, stop_signum: int | None = None,
               started: float | None = None) -> StepResult:
    """One optimizer step over `len(micro)` micro-batches. The loss is the NLL summed over the masked
    tokens of all of them on all processes, divided by their number, so it does not depend on how
    the global batch is split. DDP averages gradients over processes and Accelerate divides by the
    accumulation, hence `* world * accum`. With a `budget` (a schedule by time), the schedule follows
    the share of it spent. Updates state.budget_spent, budget_agreed and grad_norm."""
    started = time.perf_counter() if started is None else started
    device, world, accum = accelerator.device, accelerator.num_processes, len(micro)
    n_masked = accelerator.reduce(torch.tensor(float(sum(b.n_masked for b in micro)), device=device), "sum")
    step_nll = torch.zeros((), device=device)
    for b in micro:
        b = b.to(device)
        with accelerator.accumulate(objective):  # gradients sync on the last micro-batch only
            nll, _ = objective(b.input_ids, b.attention_mask, b.labels)
            accelerator.backward(nll * (world * accum) / n_masked.clamp(min=1))
        step_nll += nll.detach()
    # Agree on the loss, on stopping (a signal may reach one process only) and on the budget
    # spent; float() waits for the device, once per step, so a NaN never reaches the weights.
    spent = state.budget_spent + (time.perf_counter() - started)
    flags = accelerator.reduce(torch.stack([step_nll.float(), torch.tensor(float(stop_signum or 0), device=device),
                                            torch.tensor(spent, device=device)]), "sum")
    nll_sum, stop, agreed = float(flags[0]), bool(flags[1] > 0), float(flags[2]) / world
    agreed_at, state.budget_agreed = time.perf_counter(), agreed
    if not math.isfinite(nll_sum):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLoss(nll_sum)
    # clip_grad_norm_ returns the total norm before clipping (an infinite bound only measures it)
    state.grad_norm = accelerator.clip_grad_norm_(objective.parameters(), max_grad_norm or math.inf)
    optimizer.step()
    if budget is not None:
        set_progress(scheduler, agreed / budget)
    if not accelerator.optimizer_step_was_skipped:  # fp16: the grad scaler skips inf steps
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    # the optimizer's time counts too; each process adds its own, the next step's reduce averages
    state.budget_spent = agreed + (time.perf_counter() - agreed_at)
    return StepResult(nll_sum, int(n_masked), stop)
