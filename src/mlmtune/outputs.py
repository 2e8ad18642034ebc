"""The output folder: who may write into it, and writing files so none is ever half-written.

Layout of OUTPUT/ after `mlmtune train`:
  config.json, model.safetensors, tokenizer.json, ...   the final model (Hugging Face layout)
  run.json       resolved config, library versions, processes, data summary
  metrics.jsonl  one record per evaluation and per --log-every training steps
  results.json   final figures: throughput, time, eval perplexity/accuracy, peak memory
  report.html    curves, config, results and before/after fill-mask (the plot also as curves.png)
  checkpoints/step-NNNNNNN/   full training states for --resume
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .errors import ConfigError, MlmtuneError, OutputError

MODEL_FILES_LAST = ("config.json",)  # moved last: a folder with config.json holds a whole model


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp gives 0600


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename over it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finite_json(data: Any) -> Any:
    """`data` with every NaN or infinite float as None: JSON has no NaN, and a reader of
    results.json must never meet `Infinity`."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(v) for v in data]
    return data


def json_text(data: Any, **options) -> str:
    """Strict JSON (never NaN/Infinity) of `data`."""
    return json.dumps(finite_json(data), allow_nan=False, default=str, **options)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json_text(data, indent=2) + "\n")


# What a run writes into its folder, and so all that --overwrite may remove. Anything else in a
# run's folder (a user's notes, a .git) is kept.
RUN_FILES = ("run.json", "metrics.jsonl", "results.json", "report.html", "curves.png")
RUN_DIRS = ("checkpoints",)
MODEL_FILE_PATTERNS = (  # what save_pretrained of a model and its tokenizer writes
    "config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
    "pytorch_model*.bin", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "*.model", "chat_template.jinja",
)
# Temporaries of a save cut short (an error, a full disk, SIGKILL): removed by the next run.
TEMPORARY_PATTERNS = (".model.*", ".*.tmp", ".probe.*")
CHECKPOINT_TEMPORARY_PATTERNS = (".step-*.tmp",)


def _temporaries(folder: Path) -> list[Path]:
    found = [p for pattern in TEMPORARY_PATTERNS for p in folder.glob(pattern)]
    checkpoints = folder / "checkpoints"
    if checkpoints.is_dir() and not checkpoints.is_symlink():
        found += [p for pattern in CHECKPOINT_TEMPORARY_PATTERNS for p in checkpoints.glob(pattern)]
    return found


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove_temporaries(folder: Path) -> None:
    """Hidden temporaries a failed or killed save left behind (never a complete file)."""
    if folder.is_dir():
        for p in _temporaries(folder):
            _remove(p)


def is_run(folder: Path) -> bool:
    """A folder mlmtune train wrote: it has a run.json."""
    return (folder / "run.json").is_file()


def has_content(folder: Path) -> bool:
    """Anything in `folder` but the temporaries of an earlier save (hidden files count: .git is content)."""
    if not folder.is_dir():
        return False
    temporaries = set(_temporaries(folder))
    return any(p not in temporaries for p in folder.iterdir())


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_writable(folder: Path) -> None:
    """Create and remove a probe folder where the run will write: read-only file systems, /proc,
    permissions and dangling symlinks fail here, before anything is written."""
    if folder.is_symlink() and not folder.exists():
        raise ConfigError(f"--output-dir {folder} is a symbolic link to {os.readlink(folder)}, which does not "
                          "exist: create its target or choose another folder")
    existing = folder
    while not existing.exists():
        if existing.is_symlink():
            raise ConfigError(f"--output-dir {folder}: {existing} is a dangling symbolic link: "
                              "create its target or choose another folder")
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--output-dir {folder}: {existing} is a file, not a folder: choose another folder")
    try:
        probe = tempfile.mkdtemp(prefix=".probe.", dir=existing)
        os.rmdir(probe)
    except OSError as exc:
        raise ConfigError(f"--output-dir {folder} cannot be written ({exc.strerror or exc}): "
                          "choose a folder you can write to") from None


def check_output_dir(folder: Path, *, overwrite: bool, resume: bool,
                     inputs: list[tuple[str, str]] | tuple = ()) -> None:
    """Refuse, before anything is written, an output folder that would lose a user's files.

    - the folder must not be, or hold, an input of the run (`inputs`: (flag, path) pairs of
      --data, --model, --tokenizer), whatever the other flags say;
    - a folder with content that is not an mlmtune run (no run.json) is refused, --overwrite or not;
    - a run's folder needs --overwrite (replace the files a run writes) or --resume (continue it).
    """
    if not str(folder).strip():
        raise ConfigError("--output-dir is empty: name a folder for the model and metrics, e.g. runs/mine")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--output-dir {folder} is a file: pick a folder name")
    here = folder.resolve()
    for flag, given in inputs:
        path = Path(os.path.expanduser(given))
        if path.exists() and _inside(path.resolve(), here):
            what = "is" if path.resolve() == here else "holds"
            raise ConfigError(f"--output-dir {folder} {what} the {flag} {given}: mlmtune never writes over its "
                              "inputs; choose another --output-dir")
    _check_writable(folder)
    if resume:
        if not is_run(folder):
            raise ConfigError(f"--resume: {folder} holds no run (no run.json): start without --resume")
        return
    if not has_content(folder):
        return
    if not is_run(folder):
        raise ConfigError(
            f"--output-dir {folder} holds files that are not an mlmtune run (it has no run.json), and mlmtune "
            "replaces only its own runs: choose a new or empty folder"
        )
    if not overwrite:
        raise ConfigError(
            f"--output-dir {folder} already holds a run: pass --overwrite to replace it (other files in "
            "the folder are kept), --resume to continue it, or choose another folder"
        )


def run_written(folder: Path) -> list[Path]:
    """The files and folders in `folder` that a run wrote (what --overwrite replaces)."""
    found = [folder / n for n in RUN_FILES + RUN_DIRS if (folder / n).exists() or (folder / n).is_symlink()]
    found += [p for pattern in MODEL_FILE_PATTERNS for p in folder.glob(pattern) if p.is_file()]
    tracker = _tracker_folder(folder)
    if tracker is not None:
        found.append(tracker)
    return sorted(set(found) | set(_temporaries(folder)))


def _tracker_folder(folder: Path) -> Path | None:
    """--report-to tensorboard logs into OUTPUT/<name of OUTPUT>/ (Accelerate's layout)."""
    try:
        config = json.loads((folder / "run.json").read_text(encoding="utf-8"))["config"]
        tracker = config.get("report_to")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    logs = folder / folder.resolve().name
    return logs if tracker == "tensorboard" and logs.is_dir() and not logs.is_symlink() else None


def clear_output_dir(folder: Path) -> None:
    """--overwrite: remove what an earlier run wrote (only once the new run's inputs are all valid);
    run.json goes last, so a folder cut short here is still recognised as a run."""
    if folder.is_dir():
        for p in sorted(run_written(folder), key=lambda p: p.name == "run.json"):
            _remove(p)


DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def _free_bytes(folder: Path) -> int | None:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def write_problem(exc: BaseException, folder: Path) -> str | None:
    """What went wrong when a write into `folder` failed, in words, or None when it is not a write failure.
    torch.save says only "unexpected pos" and safetensors wraps the OS error in its own type, so a
    nearly empty disk is read as full too."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    free = _free_bytes(folder)
    if code in DISK_FULL or "No space left on device" in text or "Disk quota exceeded" in text:
        return "the disk is full"
    if code in NOT_WRITABLE or "Read-only file system" in text or "Permission denied" in text:
        return f"it cannot be written ({exc.strerror if isinstance(exc, OSError) else text.splitlines()[0]})"
    if isinstance(exc, (OSError, RuntimeError)) and free is not None and free < 1 << 20:
        return "the disk is full"
    return None


@contextlib.contextmanager
def writing(what: str, folder: Path):
    """Turn a failed write into one OutputError naming what was being written and the fix."""
    try:
        yield
    except MlmtuneError:
        raise
    except Exception as exc:
        problem = write_problem(exc, Path(folder))
        if problem is None:
            raise
        raise OutputError(f"cannot write {what} in {folder}: {problem}; free space or fix the permissions, "
                          "or choose another --output-dir (files already complete are kept)") from None


def run_inputs(cfg) -> list[tuple[str, str]]:
    """The local files and folders a run reads: --output-dir may never be or hold one of them."""
    from .modeling import resolve_model

    inputs = [("--data", d) for d in cfg.data if d.strip()]
    try:
        inputs.append(("--model", resolve_model(cfg.model)))
    except Exception:  # a missing built-in model fails later, with its own message
        inputs.append(("--model", cfg.model))
    if cfg.tokenizer:
        inputs.append(("--tokenizer", cfg.tokenizer))
    return inputs


def undo_new_run(out: Path, existed: bool) -> None:
    """A new run that failed before its first checkpoint and its final model: remove what it wrote,
    so the same command can simply be run again."""
    from .checkpoints import complete_checkpoints

    if complete_checkpoints(out) or (out / "results.json").exists():
        return
    for p in sorted(run_written(out), key=lambda p: p.name == "run.json"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
    if not existed:
        with contextlib.suppress(OSError):
            out.rmdir()  # only when empty


def versions() -> dict[str, str]:
    import accelerate
    import datasets
    import numpy
    import tokenizers
    import torch
    import transformers

    from . import __version__

    return {
        "mlmtune": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
        "numpy": numpy.__version__,
    }


def save_model(model, tokenizer, folder: Path, state_dict: dict | None = None) -> None:
    """save_pretrained into a temporary folder, then move the files into `folder`, config.json last,
    so `folder` never holds a config pointing at missing or partial weights."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".model.", dir=folder))
    try:
        model.save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        if not any(tmp.glob("*.safetensors")) and not any(tmp.glob("*.bin")):
            raise RuntimeError(f"save_pretrained wrote no weights into {tmp}")  # never a config without weights
        names = sorted(p.name for p in tmp.iterdir())
        for name in sorted(names, key=lambda n: n in MODEL_FILES_LAST):
            os.chmod(tmp / name, FILE_MODE)
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
