"""The training loop: optimizer steps until the plan is done, logging, evaluating and checkpointing
when due, and stopping cleanly on SIGINT/SIGTERM (the step finishes, a checkpoint is saved)."""

from __future__ import annotations

import signal
import sys
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
from .budget import StepTimes, Totals
from .signals import SIGNAL_EXIT, StopFlag
from .step import NonFiniteLoss, TrainState, train_step


def train_loop(accelerator, objective, optimizer, scheduler, batches: Iterator[Batch], state: TrainState,
               totals: Totals, cfg: Config, *, out: Path, log: MetricsLog, evaluate: Callable[..., object],
               checkpoint: Callable[[int], Path], before_step: Callable[[float], None] | None = None) -> None:
    """Train from state.step until `totals` is reached. `evaluate(step, when, interim=...)` scores the
    fixed masks: in full at the last step, on the curve's subset when `totals.eval_due` (~8 times over
    the plan, or every --eval-every steps); with a budget, an interim evaluation's seconds count against
    it. `checkpoint(step)` saves a full training state (at each epoch's end, every --save-every steps,
    the last step, and on a signal); `before_step(progress)` is told the share of the run done before
    each step (--freeze-layers)."""
    accum, spe = cfg.gradient_accumulation_steps, totals.steps_per_epoch
    bar = progress_bar(totals, state, enabled=accelerator.is_main_process and interactive())
    window = Window()
    # the warm start's seconds differ a little between processes: agree on them before the first check
    spent = torch.tensor(float(state.budget_spent), device=accelerator.device)
    state.budget_agreed = float(accelerator.reduce(spent, "sum")) / accelerator.num_processes
    objective.train()
    empty_in_a_row = 0
    times = StepTimes(state.budget_agreed, state.step_seconds)  # a budget stops before a step that would not fit
    with StopFlag() as stop, bar:
        while not totals.finished(state.step, state.budget_agreed, times.next_step):
            if before_step is not None:
                before_step(totals.progress(state.step, state.budget_agreed))
            step, t0, before, agreed_before = state.step + 1, time.perf_counter(), state.budget_spent, state.budget_agreed
            micro = [next(batches) for _ in range(accum)]
            try:
                result = train_step(accelerator, objective, optimizer, scheduler, micro, state,
                                    max_grad_norm=cfg.max_grad_norm, budget=totals.budget if totals.by_time else None,
                                    stop_signum=stop.signum, started=t0, expected_step=times.next_step)
            except NonFiniteLoss as exc:
                kept = complete_checkpoints(out)
                where = f"the last good checkpoint is {kept[-1]}" if kept else "no checkpoint was saved"
                raise TrainingError(f"{exc} at step {step}; {where}: lower --lr or --head-lr, or use --precision "
                                    "fp32") from None
            times.add(state.budget_agreed, learned=result.masked > 0)
            state.step_seconds = times.next_step  # saved with a checkpoint: a resume expects the same
            if result.masked == 0:  # not a training step: the next batches are drawn in its place
                state.empty_steps += 1
                state.train_seconds += time.perf_counter() - t0
                empty_in_a_row += 1
                if empty_in_a_row >= MAX_EMPTY_IN_A_ROW:
                    raise TrainingError(f"{empty_in_a_row} global batches in a row had no masked token (after step "
                                        f"{state.step}): the text has nothing left to mask; raise --mlm-probability "
                                        "or check the data")
                if result.stop:
                    stopped(stop.signum, state.step, checkpoint(state.step), out)
                continue
            empty_in_a_row = 0
            state.step = step
            # account and log
            seconds = time.perf_counter() - t0
            tokens = sum(b.n_tokens for b in micro) * accelerator.num_processes
            state.tokens += tokens
            state.train_seconds += seconds
            window.add(result.nll, result.masked, tokens, seconds)
            bar.update(min(state.budget_spent, totals.budget) - min(before, totals.budget) if totals.by_time else 1)
            last = totals.finished(step, state.budget_agreed, times.next_step)
            logged = step % cfg.log_every == 0 or last
            if logged:
                window.log(accelerator, bar, log, scheduler, state, totals, cfg.report_to)
            # evaluate and checkpoint when due
            epoch_end = spe > 0 and step % spe == 0
            if not last and totals.eval_due(step, agreed_before, state.budget_agreed):
                bar.clear()
                t_eval = time.perf_counter()
                evaluate(step, progress_words(step, totals, state), interim=True)
                charge_evaluation(accelerator, bar, state, totals, time.perf_counter() - t_eval)
                times.last = state.budget_agreed  # the evaluation's seconds are not the next step's
                last = totals.finished(step, state.budget_agreed, times.next_step)  # it may have spent the budget
                if last and not logged:
                    window.log(accelerator, bar, log, scheduler, state, totals, cfg.report_to)
            if last:  # in full, and (below) a checkpoint: every run ends with both at its last step
                bar.clear()
                evaluate(step, progress_words(step, totals, state))
            if result.stop or epoch_end or last or (cfg.save_every and step % cfg.save_every == 0):
                path = checkpoint(step)
            if result.stop:
                stopped(stop.signum, step, path, out)


# A run of global batches without one masked token this long means the text has nothing to mask (a rate
# that low is refused before training: training/prepare.check_masked_per_step).
MAX_EMPTY_IN_A_ROW = 100


def stopped(signum: int | None, step: int, path: Path, out: Path) -> None:
    """A signal stopped the loop after `step`, its checkpoint saved in `path`: say how to resume."""
    signum = signal.SIGTERM if (signum or signal.SIGTERM) == signal.SIGTERM else signal.SIGINT
    raise Interrupted(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint saved in "
                      f"{path}. Resume with: mlmtune train --config {out / 'run.json'} --resume", SIGNAL_EXIT[signum])


def charge_evaluation(accelerator, bar, state: TrainState, totals: Totals, seconds: float) -> None:
    """An interim evaluation took `seconds`: with a --max-time budget they are spent from it (every process
    adds the same, agreed amount, so all still stop at the same step). The step bar's clock skips them, so
    its s/step stays the training steps' own."""
    if totals.budget is not None:
        agreed = float(accelerator.reduce(torch.tensor(float(seconds), device=accelerator.device), "sum"))
        agreed /= accelerator.num_processes
        state.budget_spent += agreed
        state.budget_agreed += agreed
        if totals.by_time:
            bar.update(max(0.0, min(state.budget_agreed, totals.budget) - min(state.budget_agreed - agreed,
                                                                                totals.budget)))
    if not totals.by_time:
        bar.unpause()


def progress_words(step: int, totals: Totals, state: TrainState) -> str:
    """Where the run is, for an evaluation's line: "step 57 of 455 (epoch 0.13)", "step 57 (25% of the
    budget)". With the progress bar off (a log file), these lines are the progress."""
    words = f"step {step}" + (f" of {totals.total_steps:,}" if totals.total_steps else "")
    if totals.by_time:
        words += f" ({min(state.budget_agreed / totals.budget, 1):.0%} of the budget)"
    elif totals.steps_per_epoch:
        words += f" (epoch {step / totals.steps_per_epoch:.2f})"
    return words


def interactive() -> bool:
    """Draw a progress bar: on a terminal or in a notebook; not into a pipe or a log file, which would
    fill with its carriage-return frames (the evaluation lines say how far the run is instead)."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) or "ipykernel" in sys.modules


def progress_bar(totals: Totals, state: TrainState, *, enabled: bool):
    """tqdm by steps, or by seconds of the budget."""
    from tqdm.auto import tqdm  # lazy: tqdm.auto looks for a notebook

    if totals.by_time:
        # the total as it is: tqdm drops a total its count passes by 0.5 (2.5 s rounded to 2), and then its
        # bar_format fails on {total:.0f} (--max-time 2.5s crashed the bar)
        return tqdm(total=totals.budget, initial=min(state.budget_spent, totals.budget), disable=not enabled,
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
