"""Writing into the output folder so that no file is ever half-written: a temporary name, then a rename.

Also the one JSON reader of run files (read_json, read_json_object), strict JSON out (no NaN), the
final model's save (config.json moved last), and a failed write turned into one OutputError line.
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

from ..errors import ConfigError, MlmtuneError, OutputError
from ..version import __version__

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


def read_json(path: Path) -> Any:
    """The JSON value in `path`, or None when the file is missing, unreadable or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def read_json_object(path: Path, *, required: bool = False) -> dict:
    """The JSON object in `path`; {} when there is none (missing, unreadable, or another JSON value).
    `required`: that is a ConfigError naming the file instead (a run file mlmtune wrote and needs)."""
    value = read_json(path)
    if isinstance(value, dict):
        return value
    if required:
        raise ConfigError(f"{path} is damaged (not the JSON object mlmtune wrote): train again, or restore the file")
    return {}


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


def versions() -> dict[str, str]:
    import accelerate
    import datasets
    import numpy
    import tokenizers
    import torch
    import transformers

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
