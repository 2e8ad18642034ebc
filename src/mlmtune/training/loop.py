"""The training loop: optimizer steps until the plan is done, logging, evaluating and checkpointing
when due, and stopping cleanly on SIGINT/SIGTERM (the step finishes, a checkpoint is saved)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from ..config import Config
from ..data.batching import Batch
from ..errors import Interrupted, TrainingError
from ..run.files import finite_json
from ..run.layout import complete_checkpoints
from ..run.metrics_log import MetricsLog
from .budget import Totals
from .signals import SIGNAL_EXIT, StopFlag
from .step import NonFiniteLoss, TrainState, train_step


def train_loop(accelerator, objective, optimizer, scheduler, batches: Iterator[Batch], state: TrainState,
               totals: Totals, cfg: Config, *, out: Path, log: MetricsLog, evaluate: Callable[[int, str], object],
               checkpoint: Callable[[int], Path], before_step: Callable[[float], None] | None = None) -> None:
    """Train from state.step until `totals` is reached. `evaluate(step, when)` scores the fixed masks
    (at each epoch's end, every --eval-every steps and at the last step); `checkpoint(step)` saves a
    full training state (at each epoch's end, every --save-every steps, the last step, and on a signal);
    `before_step(progress)` is told the share of the run done before each step (--freeze-layers)."""
    accum, spe = cfg.gradient_accumulation_steps, totals.steps_per_epoch
    bar = progress_bar(totals, state, enabled=accelerator.is_main_process)
    window = Window()
    # the warm start's seconds differ a little between processes: agree on them before the first check
    spent = torch.tensor(float(state.budget_spent), device=accelerator.device)
    state.budget_agreed = float(accelerator.reduce(spent, "sum")) / accelerator.num_processes
    objective.train()
    with StopFlag() as stop, bar:
        while not totals.finished(state.step, state.budget_agreed):
            if before_step is not None:
                before_step(totals.progress(state.step, state.budget_agreed))
            state.step += 1
            step, t0, before = state.step, time.perf_counter(), state.budget_spent
            micro = [next(batches) for _ in range(accum)]
            try:
                result = train_step(accelerator, objective, optimizer, scheduler, micro, state,
                                    max_grad_norm=cfg.max_grad_norm, budget=totals.budget if totals.by_time else None,
                                    stop_signum=stop.signum, started=t0)
            except NonFiniteLoss as exc:
                kept = complete_checkpoints(out)
                where = f"the last good checkpoint is {kept[-1]}" if kept else "no checkpoint was saved"
                raise TrainingError(f"{exc} at step {step}; {where}: lower --lr or --head-lr, or use --precision "
                                    "fp32") from None
            # account and log
            seconds = time.perf_counter() - t0
            tokens = sum(b.n_tokens for b in micro) * accelerator.num_processes
            state.tokens += tokens
            state.train_seconds += seconds
            window.add(result.nll, result.masked, tokens, seconds)
            bar.update(min(state.budget_spent, totals.budget) - min(before, totals.budget) if totals.by_time else 1)
            last = totals.finished(step, state.budget_agreed)
            if step % cfg.log_every == 0 or last:
                window.log(accelerator, bar, log, scheduler, state, totals, cfg.report_to)
            # evaluate and checkpoint when due
            epoch_end = spe > 0 and step % spe == 0
            if epoch_end or last or (cfg.eval_every and step % cfg.eval_every == 0):
                bar.clear()
                evaluate(step, f"step {step}" + (f" (epoch {step / spe:.2f})" if spe else ""))
            if result.stop or epoch_end or last or (cfg.save_every and step % cfg.save_every == 0):
                path = checkpoint(step)
            if result.stop:
                signum = signal.SIGTERM if (stop.signum or signal.SIGTERM) == signal.SIGTERM else signal.SIGINT
                raise Interrupted(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint saved in "
                                  f"{path}. Resume with: mlmtune train --config {out / 'run.json'} --resume",
                                  SIGNAL_EXIT[signum])


def progress_bar(totals: Totals, state: TrainState, *, enabled: bool):
    """tqdm by steps, or by seconds of the budget."""
    from tqdm.auto import tqdm  # lazy: tqdm.auto looks for a notebook

    if totals.by_time:
        return tqdm(total=round(totals.budget), initial=min(state.budget_spent, totals.budget), disable=not enabled,
                    desc="train", unit="s", dynamic_ncols=True,
                    bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]")
    return tqdm(total=totals.total_steps, initial=state.step, disable=not enabled, desc="train", unit="step",
                dynamic_ncols=True)


class Window:
    """The steps since the last training record: their loss per masked token and their tokens per second."""

    def __init__(self):
        self.nll, self.masked, self.tokens, self.seconds = 0.0, 0, 0, 0.0

    def add(self, nll: float, masked: int, tokens: int, seconds: float) -> None:
        self.nll += nll
        self.masked += masked
        self.tokens += tokens
        self.seconds += seconds

    def log(self, accelerator, bar, log: MetricsLog, scheduler, state: TrainState, totals: Totals,
            report_to: str) -> None:
        """One training record in metrics.jsonl (and the tracker), the bar's postfix; then start a new window."""
        loss = self.nll / max(self.masked, 1)
        tps = self.tokens / max(self.seconds, 1e-9)
        lr = scheduler.get_last_lr()[0]
        bar.set_postfix(step=state.step, loss=f"{loss:.3f}", tok_s=f"{tps:,.0f}")
        grad_norm = float(state.grad_norm) if state.grad_norm is not None else None
        log.write(finite_json({"type": "train", "step": state.step, "epoch": round(totals.epoch(state.step), 4),
                               "loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens_per_second": tps,
                               "masked_tokens": self.masked, "time": time.time()}))
        if report_to != "none":
            accelerator.log({"train/loss": loss, "train/tokens_per_second": tps, "train/lr": lr,
                             **({"train/grad_norm": grad_norm} if grad_norm is not None else {})}, step=state.step)
        self.__init__()
