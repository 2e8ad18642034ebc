"""One process at a time writes an output folder: an OS file lock on OUTPUT/.mlmtune-lock.

`folder_lock(folder, command)` holds an exclusive flock(2) on that file for the life of a run (train,
--resume, --overwrite) or of a command that writes a finished run's files (report, push). A second
process is refused at once, with one line naming the holder's PID and command (written into the
file). The kernel releases a flock when its process dies, so a SIGKILLed holder leaves no stale lock:
the file may stay, but the next process locks it and goes on.

The holder removes the file when it is done, while still holding it. A process that opened the file
just before that removal then holds a lock on a file no longer in the folder, so after locking it
checks that the name still leads to the file it locked, and tries again when not. Nested holds by one
process (train's report at the end of the run) are counted, not locked twice: flock locks of one
process on two descriptors of one file would refuse each other.

Under torchrun only the main process (RANK 0) locks: the others write nothing of the folder's own, and
torchrun stops them when the main process fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import OutputError
from .files import FILE_MODE
from .layout import LOCK_FILE

_held: dict[str, tuple[int, int]] = {}  # resolved folder -> (descriptor, nesting depth), this process's


class FolderBusy(OutputError):
    """Another live process holds the folder's lock."""


def _holder(fd: int) -> str:
    """What the holder wrote into the lock file ("PID 123, mlmtune train"); it writes right after locking,
    so an empty file is read again for a moment."""
    for _ in range(20):
        try:
            text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        if text:
            pid, _, command = text.partition(" ")
            return f"PID {pid}" + (f", {command}" if command else "")
        time.sleep(0.05)
    return "PID unknown"


def _not_a_lock(path: Path) -> OutputError:
    return OutputError(f"{path} is not mlmtune's lock file (a link, a folder or a file with another name in its "
                       "place), and mlmtune writes its PID into that file: remove it, or choose another folder")


def _lock_once(folder: Path, command: str) -> int | None:
    """Lock the folder's lock file; the descriptor, or None when the file was replaced meanwhile."""
    path = folder / LOCK_FILE
    folder.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, FILE_MODE)
    except OSError:
        if path.is_symlink() or path.is_dir():  # ELOOP, EISDIR
            raise _not_a_lock(path) from None
        raise
    try:
        info = os.fstat(fd)
        # The holder truncates and writes the file: never a file that also has another name (a hard link to
        # a user's file), nor anything but a plain file.
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            raise _not_a_lock(path)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise FolderBusy(f"{folder} is in use by another mlmtune process ({holder}), which holds its lock "
                         f"{path}: wait for it to end (or stop it), or choose another folder") from None
    except BaseException:
        os.close(fd)
        raise
    try:
        mine, named = os.fstat(fd), os.stat(path)
        same = (mine.st_dev, mine.st_ino) == (named.st_dev, named.st_ino)
    except FileNotFoundError:
        same = False
    if not same:  # its last holder removed it between our open and our lock: lock the file the name leads to
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} mlmtune {command}\n".encode(), 0)
    return fd


def acquire(folder: Path, command: str) -> None:
    """Take the lock of `folder` (created, with its parents, when missing) or raise FolderBusy."""
    key = str(Path(folder).resolve())
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        return
    for _ in range(100):
        try:
            fd = _lock_once(Path(folder), command)
        except FileNotFoundError:  # the folder was removed meanwhile (a failed run cleaning up): again
            fd = None
        if fd is not None:
            _held[key] = (fd, 1)
            return
    raise FolderBusy(f"{folder}: its lock {Path(folder) / LOCK_FILE} keeps being replaced by other processes: "
                     "stop them, or choose another folder")


def release(folder: Path) -> None:
    """Give the lock back; the outermost release removes the lock file first (still holding it)."""
    key = str(Path(folder).resolve())
    fd, depth = _held.pop(key, (None, 0))
    if fd is None:
        return
    if depth > 1:
        _held[key] = (fd, depth - 1)
        return
    with contextlib.suppress(OSError):
        (Path(folder) / LOCK_FILE).unlink()
    os.close(fd)


def holds(folder: Path) -> bool:
    return str(Path(folder).resolve()) in _held


def is_main() -> bool:
    """The process that owns the folder's files: the only one under torchrun that locks."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def folder_lock(folder: str | Path, command: str | None = None) -> Iterator[None]:
    """Hold the lock of `folder` for the block (the main process only); FolderBusy when another holds it."""
    if not is_main():
        yield
        return
    command = command or (sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "python")
    acquire(Path(folder), command)
    try:
        yield
    finally:
        release(Path(folder))
