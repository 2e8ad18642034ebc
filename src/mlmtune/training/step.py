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
    empty_steps: int = 0  # global batches with no masked token, skipped: the data is at step + empty_steps
    step_seconds: float = 0.0  # what the next step is expected to take of a budget (budget.StepTimes)
    sessions: int = 1  # this one and the ones before it (--resume)
    wall_before: float = 0.0  # wall-clock seconds of the sessions before this one, to their last checkpoint
    session_start: float = field(default_factory=time.perf_counter)  # when this session started (perf_counter)

    SAVED = ("tokens", "train_seconds", "eval_seconds", "warm_seconds", "budget_spent", "empty_steps",
             "step_seconds", "sessions")

    @property
    def position(self) -> int:
        """The optimizer steps' worth of batches drawn so far: where the data goes on from."""
        return self.step + self.empty_steps

    @property
    def wall_seconds(self) -> float:
        """Wall-clock seconds of the whole run so far, all sessions together (a resumed run's total time)."""
        return self.wall_before + (time.perf_counter() - self.session_start)

    def counters(self) -> dict:
        """What a checkpoint's mlmtune_state.json keeps besides the step."""
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
    masked: int  # masked tokens of the global batch; 0: nothing was learned, no optimizer step was taken
    stop: bool  # a signal reached some process: stop after this step


def train_step(accelerator, objective, optimizer, scheduler, micro: list[Batch], state: TrainState, *,
               max_grad_norm: float | None, budget: float | None = None, stop_signum: int | None = None,
               started: float | None = None, expected_step: float = 0.0) -> StepResult:
    """One optimizer step over `len(micro)` micro-batches. The loss is the NLL summed over the masked
    tokens of all of them on all processes, divided by their number, so it does not depend on how
    the global batch is split. DDP averages gradients over processes and Accelerate divides by the
    accumulation, hence `* world * accum`. With a `budget` (a schedule by time), the schedule follows
    the share of it spent by the end of the next step (this one's time, or `expected_step` when a recent
    step took longer), so the step the budget ends with runs at a learning rate near 0, however few
    steps fit. Updates state.budget_spent, budget_agreed and grad_norm."""
    started = time.perf_counter() if started is None else started
    device, world, accum = accelerator.device, accelerator.num_processes, len(micro)
    n_masked = accelerator.reduce(torch.tensor(float(sum(b.n_masked for b in micro)), device=device), "sum")
    if float(n_masked) == 0:  # nothing to predict on any process: no forward, and no step of the weights,
        # the moments or the schedule (AdamW would still move them); the loop does not count it
        return _agree_without_learning(accelerator, state, stop_signum, started)
    step_nll, previous = torch.zeros((), device=device), state.budget_agreed
    for i, b in enumerate(micro):
        b = b.to(device)
        with accelerator.accumulate(objective):  # gradients sync on the last micro-batch only
            nll, _ = objective(*b.tensors())
            step_nll += nll.detach()
            if i == accum - 1:  # before the last backward: under DeepSpeed that backward also steps the optimizer
                nll_sum, stop, agreed, agreed_at = agree(accelerator, state, step_nll, stop_signum, started)
                if not math.isfinite(nll_sum):  # so a NaN never reaches the weights
                    optimizer.zero_grad(set_to_none=True)
                    raise NonFiniteLoss(nll_sum)
            accelerator.backward(nll * (world * accum) / n_masked.clamp(min=1))
    next_step = max(expected_step, agreed - previous)  # agreed values: the same on every process
    # clip_grad_norm_ returns the total norm before clipping (an infinite bound only measures it); under
    # DeepSpeed the engine clipped inside its step (--max-grad-norm is its gradient_clipping) and this is its norm
    state.grad_norm = accelerator.clip_grad_norm_(objective.parameters(), max_grad_norm or math.inf)
    optimizer.step()
    if budget is not None:
        set_progress(scheduler, (agreed + next_step) / budget)
    if not accelerator.optimizer_step_was_skipped:  # fp16: the grad scaler skips inf steps
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    # the optimizer's time counts too; each process adds its own, the next step's reduce averages
    state.budget_spent = agreed + (time.perf_counter() - agreed_at)
    return StepResult(nll_sum, int(n_masked), stop)


def _agree_without_learning(accelerator, state: TrainState, stop_signum: int | None, started: float) -> StepResult:
    """A global batch with no masked token: the processes still agree on stopping and on the budget spent."""
    device, world = accelerator.device, accelerator.num_processes
    spent = state.budget_spent + (time.perf_counter() - started)
    flags = accelerator.reduce(torch.tensor([float(stop_signum or 0), spent], device=device), "sum")
    state.budget_agreed = float(flags[1]) / world
    state.budget_spent = state.budget_agreed
    return StepResult(0.0, 0, bool(flags[0] > 0))


def agree(accelerator, state: TrainState, step_nll: torch.Tensor, stop_signum: int | None,
          started: float) -> tuple[float, bool, float, float]:
    """One reduce that agrees on the step's loss, on stopping (a signal may reach one process only) and
    on the budget spent; float() waits for the device, once per step. Returns (loss summed over the
    processes, stop, budget spent as agreed, when agreed) and sets state.budget_agreed."""
    device, world = accelerator.device, accelerator.num_processes
    spent = state.budget_spent + (time.perf_counter() - started)
    flags = accelerator.reduce(torch.stack([step_nll.float(), torch.tensor(float(stop_signum or 0), device=device),
                                            torch.tensor(spent, device=device)]), "sum")
    agreed = float(flags[2]) / world
    state.budget_agreed = agreed
    return float(flags[0]), bool(flags[1] > 0), agreed, time.perf_counter()
