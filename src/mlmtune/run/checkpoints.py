"""Full training states for --resume: OUTPUT/checkpoints/step-NNNNNNN/.

Accelerate's save_state writes model, optimizer, scheduler and every process's RNG states; we add
mlmtune_state.json (the optimizer step, which fixes the position in the data, and the counters; named
trainer_state.json by mlmtune 0.1.0, a name the Trainer's own schema owns: run/layout.state_file).
Everything is written into a hidden temporary folder that is renamed once complete, so a folder
named step-N is always whole; a kill mid-save leaves only a temporary folder, which is ignored.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..model.device import unwrap
from ..model.load import first_non_finite
from .files import FILE_MODE, atomic_write_json
from .layout import _NAME, STATE_FILE, checkpoint_root, complete_checkpoints, state_file


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
        for path in tmp.rglob("*"):  # safetensors writes its file 0600; every other file of a run gets FILE_MODE (0644 under umask 022)
            if path.is_file() and not path.is_symlink():
                os.chmod(path, FILE_MODE)
        atomic_write_json(tmp / STATE_FILE, {**state, "step": step})  # written last: marks it complete
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in complete_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


# The counters fit() keeps in mlmtune_state.json besides the step; None where a figure was not finite.
COUNTERS = {"tokens": (int,), "empty_steps": (int,), "step_seconds": (int, float), "train_seconds": (int, float),
            "eval_seconds": (int, float), "warm_seconds": (int, float), "budget_spent": (int, float),
            "sessions": (int,), "wall_seconds": (int, float),
            "baseline_perplexity": (int, float, type(None)), "warm_start_perplexity": (int, float, type(None)),
            "baseline_accuracy": (int, float, type(None))}


def _state_problem(state, folder: Path) -> str | None:
    """What is wrong with the shape of a checkpoint's state file, or None."""
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
    """The state file of checkpoint `path` (layout.state_file), checked: an object with a whole step (the folder's)
    and counters of the right type. Reads no tensors, so it is quick to call before loading a model."""
    file = state_file(Path(path))
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


def load_checkpoint(accelerator, path: Path, objective=None, optimizer=None) -> None:
    """Restore the weights, optimizer, schedule and RNG states saved in `path` (its state file is read
    before, by read_state); then the restored weights and optimizer moments must be finite."""
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
    check_finite_state(accelerator, Path(path), objective, optimizer)


def check_finite_state(accelerator, path: Path, objective=None, optimizer=None) -> None:
    """A NaN or infinity restored from a checkpoint would be trained on and then blamed on the learning rate:
    refused, naming the tensor and the checkpoint's file."""
    weights = [] if objective is None else [
        (f"the weight {name.removeprefix('model.')}", p) for name, p in unwrap(accelerator, objective).named_parameters()]
    moments = [] if optimizer is None else [
        (f"the optimizer's {key} of parameter {index}", value)
        for index, state in optimizer.state_dict()["state"].items() for key, value in state.items()]
    model_file = next(iter(sorted(path.glob("model*.safetensors")) + sorted(path.glob("pytorch_model*.bin"))), path)
    for tensors, file in ((weights, model_file), (moments, path / "optimizer.bin")):
        bad = first_non_finite(tensors)
        if bad is not None:
            raise CheckpointError(f"checkpoint {path} holds NaN or infinity in {bad} ({file}): delete that folder to "
                                  "resume from an older checkpoint, or start again with --overwrite")
