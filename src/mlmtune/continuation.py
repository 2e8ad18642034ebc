"""Train further: `--resume` with a larger --max-steps, --epochs or --max-time continues the same run.

The learning-rate schedule is rebuilt for the new total, as the Trainer does when it resumes with a
larger `max_steps`: the linear decay is recomputed as if the run had been planned for the new total
from the start, and the run goes on from the step it reached. A finished run's learning rate has
decayed to 0; continuing it from step 4 to 8 takes it back up to the value the longer schedule has at
step 4 (half the peak, without warm-up) and decays it to 0 again at step 8. run.json keeps the earlier
totals in `continued`.

A run planned by time (--max-time without --max-steps) continues by time, and one planned by steps by
steps: the two schedules are different functions, so switching between them is refused.
"""

from __future__ import annotations

import time
from typing import Any

from .config import Config, build_config, to_command
from .errors import ConfigError
from .schedule import set_progress


def planned_by_time(config: dict[str, Any]) -> bool:
    """The learning rate follows a --max-time budget (no --max-steps decides the length)."""
    return config.get("max_steps") is None and config.get("max_time") is not None


def check_same_plan(saved: dict[str, Any], cfg: Config) -> None:
    """A run planned by steps continues by steps, one planned by time by time."""
    before, now = planned_by_time(saved), planned_by_time(cfg.to_dict())
    if before and not now:
        raise ConfigError(f"--resume: the run's learning rate follows its --max-time {saved['max_time']} budget, so it "
                          "continues by time: give a larger --max-time (and no --max-steps)")
    if now and not before:
        raise ConfigError("--resume: the run's learning rate follows its number of steps, so it continues by steps: "
                          "give a larger --max-steps or --epochs (--max-time may only cap it besides --max-steps)")


def check_not_shorter(*, done_steps: int, total_steps: int | None, spent: float, budget: float | None,
                      planned_budget: float | None, by_time: bool, cfg: Config) -> None:
    """A total below what the run has already done is a mistake, not a request to undo steps. (The
    last step of a budget ends past it: the run's own budget is never too small.)"""
    if by_time:
        if budget is not None and budget < spent and budget != planned_budget:
            raise ConfigError(f"--resume: --max-time {cfg.max_time} is less than the {spent:.0f} s the run has already "
                              f"spent: give more than {spent:.0f} s to train further, or the run's own --max-time")
        return
    if total_steps is not None and total_steps < done_steps:
        flag = f"--max-steps {cfg.max_steps}" if cfg.max_steps is not None else f"--epochs {cfg.epochs}"
        raise ConfigError(f"--resume: {flag} makes {total_steps} steps, fewer than the {done_steps} the run has "
                          f"already done: give more to train further (e.g. --max-steps {2 * done_steps})")


def plan_changed(record: dict[str, Any], total_steps: int | None, budget: float | None) -> bool:
    """Whether this session's total differs from the one run.json planned (a --max-time that only
    caps a run planned by steps does not plan it)."""
    if total_steps is not None:
        return record.get("total_steps") != total_steps
    return record.get("max_time_seconds") != budget


def continued_entry(record: dict[str, Any], at_step: int) -> dict[str, Any]:
    """What run.json keeps of the earlier plan when a run is continued with another total."""
    config = record.get("config") or {}
    return {"at_step": at_step, "total_steps": record.get("total_steps"),
            "max_time_seconds": record.get("max_time_seconds"),
            **{key: config.get(key) for key in ("max_steps", "epochs", "max_time")},
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def continue_record(record: dict[str, Any], cfg: Config, *, at_step: int, total_steps: int | None,
                    budget: float | None) -> dict[str, Any]:
    """run.json after a continuation: the new totals in place, the earlier ones appended to `continued`."""
    config = dict(record.get("config") or {})
    config.update({key: getattr(cfg, key) for key in ("max_steps", "epochs", "max_time")})
    return {**record, "config": config, "total_steps": total_steps, "max_time_seconds": budget,
            "command": to_command(build_config(config)),  # the run as it now stands (the card tells the story)
            "continued": list(record.get("continued") or []) + [continued_entry(record, at_step)]}


def restart_schedule(scheduler, *, spent: float, budget: float | None) -> list[float]:
    """After loading a checkpoint into a schedule rebuilt for a new total: the learning rates of the
    next step, from the new schedule at the step reached (the optimizer's state holds the old
    schedule's, 0 at its end). Returns them."""
    inner = getattr(scheduler, "scheduler", scheduler)  # Accelerate's AcceleratedScheduler wraps it
    if budget is not None:
        set_progress(scheduler, min(spent / budget, 1.0))
    rates = [base * fn(inner.last_epoch) for base, fn in zip(inner.base_lrs, inner.lr_lambdas)]
    for group, lr in zip(inner.optimizer.param_groups, rates):
        group["lr"] = lr
    inner._last_lr = list(rates)
    return rates

