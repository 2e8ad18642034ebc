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
import re
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


# Every temporary mlmtune makes in an output folder starts with this, and nothing else of a user's
# does: the next run removes these (and only these) after a failure or SIGKILL left them.
TEMP_PREFIX = ".mlmtune-"


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename over it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=".tmp", dir=path.parent)
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


# What a run writes into its folder, and so all that --overwrite may remove: these names, the
# step-NNNNNNN folders in checkpoints/, the model and tokenizer files the run's results.json lists
# (`files`), and a --report-to tensorboard log folder. Anything else (a user's notes, a .git) is kept.
RUN_FILES = ("run.json", "metrics.jsonl", "results.json", "report.html", "curves.png")
MODEL_FILE_PATTERNS = (  # only for a results.json of mlmtune 0.1.0, which did not list its files
    "config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
    "pytorch_model*.bin", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "*.model", "chat_template.jinja",
)
_STEP = re.compile(r"^step-\d{7}$")
_STEP_TMP = re.compile(r"^\.step-\d{7}\.tmp$")  # checkpoints.save_checkpoint's temporary folder


def _temporaries(folder: Path) -> list[Path]:
    found = [p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]
    checkpoints = folder / "checkpoints"
    if checkpoints.is_dir() and not checkpoints.is_symlink():
        found += [p for p in checkpoints.iterdir() if _STEP_TMP.match(p.name)]
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


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def is_run(folder: Path) -> bool:
    """A folder mlmtune train wrote: its run.json is one mlmtune wrote (an object with a config and
    versions), not merely a file of that name."""
    record = _read_json(folder / "run.json")
    return isinstance(record, dict) and isinstance(record.get("config"), dict) and isinstance(record.get("versions"), dict)


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
        if len(os.fsencode(existing.name)) > 255:
            raise ConfigError(f"--output-dir {folder}: the name {existing.name[:40]}... is longer than the "
                              "255 bytes a file name may have: choose a shorter name")
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--output-dir {folder}: {existing} is a file, not a folder: choose another folder")
    try:
        probe = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}probe-", dir=existing)
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
    try:
        _check_output_dir(folder, overwrite=overwrite, resume=resume, inputs=inputs)
    except OSError as exc:  # a name too long, a loop of links, ...: the OS says no before anything is written
        raise ConfigError(f"--output-dir {folder} cannot be used ({exc.strerror or exc}): choose another "
                          "folder") from None


def _check_output_dir(folder: Path, *, overwrite: bool, resume: bool, inputs) -> None:
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
        if (folder / "run.json").exists() and not is_run(folder):
            raise ConfigError(f"--resume: {folder / 'run.json'} is damaged (not the run.json mlmtune wrote): restore "
                              "it, or start a new run in another --output-dir")
        if not is_run(folder):
            raise ConfigError(f"--resume: {folder} holds no run (no run.json): start without --resume")
        return
    if not has_content(folder):
        return
    if not is_run(folder):
        raise ConfigError(
            f"--output-dir {folder} holds files that are not an mlmtune run (it has no run.json mlmtune wrote), "
            "and mlmtune replaces only its own runs: choose a new or empty folder"
        )
    if not overwrite:
        raise ConfigError(
            f"--output-dir {folder} already holds a run: pass --overwrite to replace it (other files in "
            "the folder are kept), --resume to continue it, or choose another folder"
        )


def _model_files(folder: Path) -> list[Path]:
    """The model and tokenizer files the run saved, as its results.json lists them."""
    results = _read_json(folder / "results.json")
    if not isinstance(results, dict):
        return []  # no final model was saved
    names = results.get("files")
    if names is None:  # written by mlmtune 0.1.0
        return [p for pattern in MODEL_FILE_PATTERNS for p in folder.glob(pattern) if p.is_file()]
    if not isinstance(names, list):
        return []
    return [folder / n for n in names if isinstance(n, str) and _listed_name(n) and (folder / n).is_file()
            and not (folder / n).parent.is_symlink()]  # never a file through a link out of the folder


def _listed_name(name: str) -> bool:
    """A name results.json may list: a file of the folder, or one in a sentence-transformers module
    folder (`1_Pooling/config.json`); never hidden, never a checkpoint, never outside the folder."""
    parts = name.split("/")
    return (0 < len(parts) <= 2 and all(p and p not in (".", "..") and not p.startswith(".") for p in parts)
            and "\\" not in name and parts[0] != "checkpoints")


def run_written(folder: Path) -> list[Path]:
    """The files and folders in `folder` that a run wrote (what --overwrite replaces)."""
    found = [folder / n for n in RUN_FILES if (folder / n).is_file() or (folder / n).is_symlink()]
    found += _model_files(folder)
    checkpoints = folder / "checkpoints"
    if checkpoints.is_dir() and not checkpoints.is_symlink():
        found += [p for p in checkpoints.iterdir() if _STEP.match(p.name) or _STEP_TMP.match(p.name)]
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


def set_aside_old_run(folder: Path) -> Path | None:
    """--overwrite, once the new run's inputs are all valid: move what the earlier run wrote into a
    hidden folder (a rename each), so a failure while the new run starts can put it back
    (`put_back`); `discard` removes it once the new run has started. Returns that folder."""
    if not folder.is_dir():
        return None
    from .card import CARD, is_ours

    # a card the user edited (its marker removed, as the card says) or linked is theirs now: it stays
    old = [p for p in run_written(folder) if not p.name.startswith(TEMP_PREFIX)
           and not (p == folder / CARD and not is_ours(p))]
    if not old:
        return None
    aside = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}old-", dir=folder))
    for p in sorted(old, key=lambda p: p.name == "run.json"):  # run.json last: still a run if cut short
        target = aside / p.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, target)
    for p in old:  # a module folder (1_Pooling/) emptied by the moves goes too, so put_back can restore it
        if p.parent != folder:
            with contextlib.suppress(OSError):
                p.parent.rmdir()
    checkpoints = folder / "checkpoints"
    if checkpoints.is_dir() and not checkpoints.is_symlink() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()
    return aside


def put_back(aside: Path | None, folder: Path) -> None:
    """Undo set_aside_old_run: the earlier run's files return where they were (top-level entries,
    and the step folders of checkpoints/)."""
    if aside is None or not aside.is_dir():
        return
    for p in aside.iterdir():
        target = folder / p.name
        if p.name == "checkpoints" and p.is_dir() and not p.is_symlink():
            target.mkdir(exist_ok=True)
            for q in p.iterdir():
                if not (target / q.name).exists():
                    os.replace(q, target / q.name)
        elif not target.exists() and not target.is_symlink():
            os.replace(p, target)
    shutil.rmtree(aside, ignore_errors=True)


def discard(aside: Path | None) -> None:
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


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


def first_missing(folder: Path) -> Path | None:
    """The outermost folder of `folder`'s path that does not exist yet (what a run would create)."""
    missing = None
    for p in [folder, *folder.parents]:
        if p.exists() or p.is_symlink():
            break
        missing = p
    return missing


def undo_new_run(out: Path, created: Path | None) -> None:
    """A new run that failed before its first checkpoint and its final model: remove what it wrote,
    and the folders it created (`created`: the outermost), so the same command can simply run again."""
    from .checkpoints import complete_checkpoints

    if complete_checkpoints(out) or (out / "results.json").exists():
        return
    for p in sorted(run_written(out), key=lambda p: p.name == "run.json"):
        _remove(p)
    checkpoints = out / "checkpoints"
    with contextlib.suppress(OSError):
        if checkpoints.is_dir() and not checkpoints.is_symlink() and not any(checkpoints.iterdir()):
            checkpoints.rmdir()
    remove_created_folders(out, created)


def remove_created_folders(out: Path, created: Path | None) -> None:
    """rmdir `out` and its parents up to `created` (the outermost the run made), where empty."""
    if created is None:
        return
    for p in [out, *out.parents]:
        with contextlib.suppress(OSError):
            p.rmdir()  # only when empty
        if p == created:
            break


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


def save_model(model, tokenizer, folder: Path, state_dict: dict | None = None) -> list[str]:
    """save_pretrained into a temporary folder, then move the files into `folder`, config.json last,
    so `folder` never holds a config pointing at missing or partial weights. Returns the names of
    the files written (results.json lists them: what a later --overwrite may remove). A failure
    removes the files it had moved in that did not exist before."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}model-", dir=folder))
    moved_new: list[Path] = []
    try:
        model.save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        if not any(tmp.glob("*.safetensors")) and not any(tmp.glob("*.bin")):
            raise RuntimeError(f"save_pretrained wrote no weights into {tmp}")  # never a config without weights
        if any(p.is_dir() for p in tmp.iterdir()):
            raise RuntimeError(f"save_pretrained wrote a folder into {tmp}; mlmtune moves only files")
        names = sorted(p.name for p in tmp.iterdir())
        for name in sorted(names, key=lambda n: n in MODEL_FILES_LAST):
            os.chmod(tmp / name, FILE_MODE)
            existed = (folder / name).exists()
            os.replace(tmp / name, folder / name)
            if not existed:
                moved_new.append(folder / name)
        moved_new = []
        return names
    finally:
        for p in moved_new:
            p.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
