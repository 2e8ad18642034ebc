"""What an output folder holds, by name, in one place.

  config.json, model.safetensors, tokenizer.json, ...   the final model (Hugging Face layout), listed
                                                        in results.json's `files`
  README.md      the model card (ours while it carries MARKER)
  run.json       resolved config, library versions, processes, data summary
  metrics.jsonl  one record per evaluation and per --log-every training steps
  results.json   final figures: throughput, time, eval perplexity/accuracy, peak memory
  unigram_counts.npy   a grown head's warm start: the unigram counts of the training text its bias came
                 from, so that every view of the base (report, serve, predict) shows the head training began with
  report.html    curves, config, results and before/after fill-mask (the plot also as curves.png)
  checkpoints/step-NNNNNNN/   full training states for --resume (STATE_FILE written last)

Every temporary mlmtune makes in the folder starts with TEMP_PREFIX (a checkpoint's: .step-N.tmp);
nothing else of a user's does, so the next run may remove them. Two names with that prefix are not
temporaries and are never removed as such:

  .mlmtune-lock    the folder's lock (run/lock.py), held by the one process that writes the folder;
                   its holder removes it when done
  .mlmtune-old-*   an earlier run that --overwrite set aside (run/ownership.py): a whole run, put back
                   by whatever next takes the folder when the --overwrite that made it was killed
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from ..config import is_run_record
from .files import TEMP_PREFIX, read_json

# What a run writes into its folder, and so all that --overwrite may remove: these names, the
# step-NNNNNNN folders in checkpoints/, the model and tokenizer files the run's results.json lists
# (`files`), and a --report-to tensorboard log folder. Anything else (a user's notes, a .git) is kept.
UNIGRAM_FILE = "unigram_counts.npy"
RUN_FILES = ("run.json", "metrics.jsonl", "results.json", "report.html", "curves.png", UNIGRAM_FILE)
MODEL_FILE_PATTERNS = (  # only for a results.json of mlmtune 0.1.0, which did not list its files
    "config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
    "pytorch_model*.bin", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "*.model", "chat_template.jinja",
)
_STEP = re.compile(r"^step-\d{7}$")
_STEP_TMP = re.compile(r"^\.step-\d{7}\.tmp$")  # checkpoints.save_checkpoint's temporary folder
LOCK_FILE = f"{TEMP_PREFIX}lock"
SET_ASIDE_PREFIX = f"{TEMP_PREFIX}old-"


def _temporaries(folder: Path) -> list[Path]:
    found = [p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX) and not kept_hidden(p.name)]
    checkpoints = folder / "checkpoints"
    if checkpoints.is_dir() and not checkpoints.is_symlink():
        found += [p for p in checkpoints.iterdir() if _STEP_TMP.match(p.name)]
    return found


def kept_hidden(name: str) -> bool:
    """The lock and a set-aside run: hidden names of ours that are not temporaries."""
    return name == LOCK_FILE or name.startswith(SET_ASIDE_PREFIX)


def set_aside_runs(folder: Path) -> list[Path]:
    """The earlier runs an --overwrite set aside in `folder` (normally none: the run that set one aside
    deletes it once it has taken the folder, or puts it back when it cannot start)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.name.startswith(SET_ASIDE_PREFIX) and p.is_dir() and not p.is_symlink())


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove_temporaries(folder: Path) -> None:
    """Hidden temporaries a failed or killed save left behind (never a complete file)."""
    if folder.is_dir():
        for p in _temporaries(folder):
            remove_path(p)


def is_run(folder: Path) -> bool:
    """A folder mlmtune train wrote: its run.json is one mlmtune wrote (an object with a config and
    versions), not merely a file of that name."""
    return is_run_record(read_json(folder / "run.json"))


def has_content(folder: Path) -> bool:
    """Anything in `folder` but the temporaries of an earlier save and the lock (hidden files count: .git
    is content, and so is a set-aside run)."""
    if not folder.is_dir():
        return False
    ignored = set(_temporaries(folder)) | {folder / LOCK_FILE}
    return any(p not in ignored for p in folder.iterdir())


def inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _model_files(folder: Path) -> list[Path]:
    """The model and tokenizer files the run saved, as its results.json lists them."""
    results = read_json(folder / "results.json")
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


# A checkpoint's own state, written last. Not `trainer_state.json`: that name is the Trainer's, for its
# TrainerState schema (global_step, log_history, ...), and a tool reading a Trainer folder must not take
# ours for one. Checkpoints of mlmtune 0.1.0 used it, and --resume still reads them.
STATE_FILE = "mlmtune_state.json"
OLD_STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d+)$")


def state_file(checkpoint: Path) -> Path:
    """The state file of `checkpoint`: ours, or in a checkpoint of an earlier version the old name."""
    ours = Path(checkpoint) / STATE_FILE
    old = Path(checkpoint) / OLD_STATE_FILE
    return old if not ours.is_file() and old.is_file() else ours


def checkpoint_root(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _NAME.match(p.name)) and state_file(p).is_file()]
    return [p for _, p in sorted(found)]


CARD = "README.md"
MARKER = "<!-- mlmtune model card: written by mlmtune train / report / push; remove this line to keep your edits -->"


def is_ours(path: Path) -> bool:
    """README.md is absent, or a card mlmtune wrote (it holds the marker)."""
    if not path.exists() and not path.is_symlink():
        return True
    if path.is_symlink() or not path.is_file():
        return False
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
