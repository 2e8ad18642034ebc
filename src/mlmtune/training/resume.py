"""--resume: which checkpoint, whether it fits this config and data, and training further.

Train further: `--resume` with a larger --max-steps, --epochs or --max-time continues the same run.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, build_config, resume_mismatch, run_paths, to_command
from ..errors import CheckpointError, ConfigError
from ..run.checkpoints import read_state
from ..run.files import atomic_write_json, writing
from ..run.layout import complete_checkpoints, state_file
from .budget import Totals
from .optimizer import set_progress

DATA_FIELDS = ("train_examples", "train_tokens", "train_fingerprint", "eval_examples", "eval_tokens", "eval_fingerprint")


@dataclass
class Resume:
    """What --resume continues, each file read once: the run's run.json and its newest complete checkpoint."""

    folder: Path
    run: dict  # run.json as the run wrote it (or as the last continuation rewrote it)
    checkpoint: Path
    state: dict  # the checkpoint's state file, checked (run/checkpoints.read_state)


def find_resume(cfg: Config, out: Path, run: dict | None) -> Resume:
    """The run in `out` to continue (`run`: its run.json, as run/ownership.check_output_dir read it): its
    config the same as this one but for what may change (a longer plan, logging, output), planned the
    same way, with a complete checkpoint."""
    saved = run.get("config") if isinstance(run, dict) else None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{out / 'run.json'} is damaged: it must be the run.json mlmtune wrote; "
                              "start again with --overwrite")
    problem = resume_mismatch({**saved, **run_paths(run, out)}, cfg)  # its paths as `--config` reads them
    if problem:
        raise ConfigError(f"--resume needs the config of the run in {out}: {problem}; "
                          f"resume with --config {out / 'run.json'} --resume")
    check_same_plan(saved, cfg)
    found = complete_checkpoints(out)
    if not found:
        raise CheckpointError(f"--resume: {out} has no complete checkpoint: start again with --overwrite "
                              "(use --save-every N to save checkpoints more often)")
    return Resume(out, run, found[-1], read_state(found[-1]))


def check_same_data(resume: Resume, now: dict) -> None:
    """--resume must see the very tokens the run started with: the run.json and the checkpoint record
    counts and a hash of the prepared blocks."""
    for path, saved in ((resume.folder / "run.json", resume.run.get("data")),
                        (state_file(resume.checkpoint), resume.state.get("data"))):
        if not isinstance(saved, dict):
            continue
        for field in DATA_FIELDS:
            if field in saved and field in now and saved[field] != now[field]:
                side = "training" if field.startswith("train") else "evaluation"
                raise ConfigError(
                    f"--resume: the {side} data changed since the run started ({field} was {saved[field]!r} in "
                    f"{path}, now {now[field]!r}): resume with the same --data files unchanged, or start a new run "
                    "with --overwrite"
                )


STRATEGY_NAMES = {"ddp": "a whole model in each process", "fsdp": "FSDP", "deepspeed": "DeepSpeed"}
STRATEGY_FLAGS = {"ddp": "neither --fsdp nor --deepspeed (nor an Accelerate FSDP or DeepSpeed config)",
                  "fsdp": "--fsdp (or the same Accelerate FSDP config)",
                  "deepspeed": "--deepspeed with the same config (or the same Accelerate DeepSpeed config)"}


def check_same_strategy(resume: Resume, now: str) -> None:
    """A checkpoint is laid out by the strategy that wrote it (whole files, FSDP shards, ZeRO partitions):
    --resume runs the same one. (A run.json from before strategies were recorded was DDP.)"""
    before = resume.run.get("strategy", "ddp")
    if before != now and before in STRATEGY_FLAGS:
        raise ConfigError(f"--resume: the run trained with {STRATEGY_NAMES[before]} and this job with "
                          f"{STRATEGY_NAMES[now]}, which cannot read its checkpoints: resume with {STRATEGY_FLAGS[before]}")


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


def check_not_shorter(resume: Resume, totals: Totals, cfg: Config) -> None:
    """A total below what the run has already done is a mistake, not a request to undo steps. (The
    last step of a budget ends past it: the run's own budget is never too small.)"""
    done_steps, spent = int(resume.state["step"]), float(resume.state.get("budget_spent", 0.0))
    if totals.by_time:
        budget = totals.budget
        if budget is not None and budget < spent and budget != resume.run.get("max_time_seconds"):
            raise ConfigError(f"--resume: --max-time {cfg.max_time} is less than the {spent:.0f} s the run has already "
                              f"spent: give more than {spent:.0f} s to train further, or the run's own --max-time")
        return
    if totals.total_steps < done_steps:
        flag = f"--max-steps {cfg.max_steps}" if cfg.max_steps is not None else f"--epochs {cfg.epochs}"
        raise ConfigError(f"--resume: {flag} makes {totals.total_steps} steps, fewer than the {done_steps} the run "
                          f"has already done: give more to train further (e.g. --max-steps {2 * done_steps})")


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


def continue_plan(cfg: Config, resume: Resume, scheduler, totals: Totals, state, *, main: bool, say=print) -> None:
    """--resume with another total (a larger --max-steps, --epochs or --max-time): the schedule
    built for the new total takes over at the step reached, and run.json records both totals."""
    record = resume.run
    if not plan_changed(record, totals.total_steps, totals.budget):
        return
    rates = restart_schedule(scheduler, spent=state.budget_spent, budget=totals.budget)
    before = (f"{record.get('total_steps')} steps" if record.get("total_steps") is not None
              else f"a {record.get('max_time_seconds'):g} s budget")
    now = f"{totals.total_steps} steps" if totals.total_steps is not None else f"a {totals.budget:g} s budget"
    say(f"training further: planned for {before}, now {now}; the learning rate follows a linear schedule "
        f"rebuilt for {now}, {rates[0]:.3g} from here")
    if main:
        with writing("run.json", resume.folder):
            atomic_write_json(resume.folder / "run.json", continue_record(
                record, cfg, at_step=state.step, total_steps=totals.total_steps, budget=totals.budget))
