"""Full training states for --resume: OUTPUT/checkpoints/step-NNNNNNN/.

Accelerate's save_state writes model, optimizer, scheduler and every process's RNG states; we add
trainer_state.json (the optimizer step, which fixes the position in the data, and the counters).
Everything is written into a hidden temporary folder that is renamed once complete, so a folder
named step-N is always whole; a kill mid-save leaves only a temporary folder, which is ignored.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import torch

from .config import Config, resume_mismatch
from .errors import CheckpointError, ConfigError
from .outputs import atomic_write_json

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d+)$")


def checkpoint_root(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _NAME.match(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def save_checkpoint(accelerator, output_dir: Path, step: int, state: dict, keep: int) -> Path:
    """Every process calls this (each saves its own RNG state); only the main process renames and prunes."""
    root = checkpoint_root(output_dir)
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.tmp"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    # Tied decoder/embedding weights are stored once; Accelerate warns about that on every save.
    other = logging.getLogger("accelerate.utils.other")
    level = other.level
    other.setLevel(logging.ERROR)
    try:
        accelerator.save_state(str(tmp), safe_serialization=True)
    finally:
        other.setLevel(level)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(tmp / STATE_FILE, {**state, "step": step})  # written last: marks it complete
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in complete_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


# The counters fit() keeps in trainer_state.json besides the step; None where a figure was not finite.
COUNTERS = {"tokens": (int,), "train_seconds": (int, float), "eval_seconds": (int, float),
            "warm_seconds": (int, float), "budget_spent": (int, float),
            "baseline_perplexity": (int, float, type(None)), "warm_start_perplexity": (int, float, type(None)),
            "baseline_accuracy": (int, float, type(None))}


def _state_problem(state, folder: Path) -> str | None:
    """What is wrong with the shape of a trainer_state.json, or None."""
    if not isinstance(state, dict):
        return f"a JSON {type(state).__name__}, not an object"
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return "it has no step" if "step" not in state else f"its step is {step!r}, not a whole number"
    if (m := _NAME.match(folder.name)) and int(m.group(1)) != step:
        return f"its step {step} is not the folder's {int(m.group(1))}"
    for key, kinds in COUNTERS.items():
        value = state.get(key)
        if key in state and (isinstance(value, bool) or not isinstance(value, kinds)
                             or (value is not None and value < 0)):
            return f"its {key} is {value!r}, not a number of the run"
    return None


def read_state(path: Path) -> dict:
    """The trainer_state.json of checkpoint `path`, checked: an object with a whole step (the folder's)
    and counters of the right type. Reads no tensors, so it is quick to call before loading a model."""
    file = Path(path) / STATE_FILE
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    else:
        problem = _state_problem(state, Path(path))
    if problem:
        raise CheckpointError(f"checkpoint {path} is damaged ({file.name}: {problem}): delete that folder to resume "
                              "from an older checkpoint, or start again with --overwrite")
    return state


def load_checkpoint(accelerator, path: Path) -> dict:
    """Restore the training state saved in `path`; returns its trainer_state.json (checked by read_state)."""
    state = read_state(path)
    try:
        # Accelerate only logs a warning for an unreadable RNG state and goes on with the wrong
        # one; exact resume needs it, so read it first and fail like any other damaged file.
        torch.load(Path(path) / f"random_states_{accelerator.process_index}.pkl", weights_only=False)
        accelerator.load_state(str(path))
    except Exception as exc:  # a truncated tensor file fails in safetensors, torch or pickle
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CheckpointError(
            f"checkpoint {path} is damaged ({first}): delete that folder to resume from an older "
            "checkpoint, or start again with --overwrite"
        ) from None
    return state


DATA_FIELDS = ("train_examples", "train_tokens", "train_fingerprint", "eval_examples", "eval_tokens", "eval_fingerprint")


def check_same_data(out: Path, checkpoint: Path | None, now: dict) -> None:
    """--resume must see the very tokens the run started with: the run.json and the checkpoint record
    counts and a hash of the prepared blocks."""
    recorded = []
    for path, key in ((out / "run.json", "data"), (checkpoint / "trainer_state.json" if checkpoint else None, "data")):
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get(key) if path else None
        except (OSError, ValueError, AttributeError):
            value = None
        if isinstance(value, dict):
            recorded.append((path, value))
    for path, saved in recorded:
        for field in DATA_FIELDS:
            if field in saved and field in now and saved[field] != now[field]:
                side = "training" if field.startswith("train") else "evaluation"
                raise ConfigError(
                    f"--resume: the {side} data changed since the run started ({field} was {saved[field]!r} in "
                    f"{path}, now {now[field]!r}): resume with the same --data files unchanged, or start a new run "
                    "with --overwrite"
                )


def checkpoint_to_resume(cfg: Config, out: Path) -> Path:
    try:
        saved = json.loads((out / "run.json").read_text(encoding="utf-8"))["config"]
        assert isinstance(saved, dict)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AssertionError):
        raise CheckpointError(f"{out / 'run.json'} is damaged: it must be the run.json mlmtune wrote; "
                              "start again with --overwrite") from None
    problem = resume_mismatch(saved, cfg)
    if problem:
        raise ConfigError(f"--resume needs the config of the run in {out}: {problem}; "
                          f"resume with --config {out / 'run.json'} --resume")
    from .continuation import check_same_plan

    check_same_plan(saved, cfg)
    found = complete_checkpoints(out)
    if not found:
        raise CheckpointError(f"--resume: {out} has no complete checkpoint: start again with --overwrite "
                              "(use --save-every N to save checkpoints more often)")
    return found[-1]
