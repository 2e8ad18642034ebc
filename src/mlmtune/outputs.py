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

import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .errors import ConfigError

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


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def holds_run(folder: Path) -> bool:
    """True when `folder` has anything but hidden files in it."""
    return folder.is_dir() and any(not p.name.startswith(".") for p in folder.iterdir())


def check_output_dir(folder: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse a folder holding another run unless --overwrite or --resume; before anything is written."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--output-dir {folder} is a file: pick a folder name")
    if resume:
        if not (folder / "run.json").is_file():
            raise ConfigError(f"--resume: {folder} holds no run (no run.json): start without --resume")
        return
    if holds_run(folder) and not overwrite:
        raise ConfigError(
            f"--output-dir {folder} already holds files of another run: pass --overwrite to replace "
            "them, --resume to continue, or choose another folder"
        )


def clear_output_dir(folder: Path) -> None:
    """--overwrite: remove what an earlier run wrote (only once the new run's inputs are all valid)."""
    if folder.is_dir():
        for p in folder.iterdir():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()


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
