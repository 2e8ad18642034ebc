"""Which output folder a run may take, and leaving a user's files as they were.

A run never writes over its inputs, never into a folder of someone else's files, and replaces an
earlier run only with --overwrite (only the files that run wrote: run/layout.run_written). The old
run is set aside by renames into OUTPUT/.mlmtune-old-XXXX and put back if the new one cannot start;
it is deleted only once the new run has written its run.json. A new run that fails before its first
checkpoint removes what it wrote, and the folders it created.

A run holds the folder's lock (run/lock.py) from before it looks at the folder's content to its end,
so no two processes decide about one folder. A set-aside run whose --overwrite was killed (SIGKILL,
power loss) before it could put it back or delete it is put back by whatever next takes the lock
(train, report, push; evaluate, predict and serve of the folder when no process holds it), or that
command is refused naming it: it is never deleted, and never taken for a temporary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config import is_run_record
from ..errors import ConfigError, OutputError
from ..model.load import resolve_model
from .files import TEMP_PREFIX, read_json, write_problem
from .layout import (
    CARD,
    SET_ASIDE_PREFIX,
    complete_checkpoints,
    has_content,
    inside,
    is_ours,
    is_run,
    remove_path,
    remove_temporaries,
    run_written,
    set_aside_runs,
)
from .lock import FolderBusy, folder_lock, is_main


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
                     inputs: list[tuple[str, str]] | tuple = ()) -> dict | None:
    """Refuse, before anything is written, an output folder that would lose a user's files.

    - the folder must not be, or hold, an input of the run (`inputs`: (flag, path) pairs of
      --data, --model, --tokenizer), whatever the other flags say;
    - a folder with content that is not an mlmtune run (no run.json) is refused, --overwrite or not;
    - a run's folder needs --overwrite (replace the files a run writes) or --resume (continue it).

    Returns the run.json of the run the folder holds (read once here), or None. `train` calls the two
    halves apart: the path before it takes the folder's lock, the content under it.
    """
    check_output_path(folder, inputs=inputs)
    return check_output_content(folder, overwrite=overwrite, resume=resume)


def check_output_path(folder: Path, *, inputs: list[tuple[str, str]] | tuple = ()) -> None:
    """The part of check_output_dir that does not depend on what the folder holds: a name, a folder (or
    none yet) that can be written, and none of the run's inputs."""
    if not str(folder).strip():
        raise ConfigError("--output-dir is empty: name a folder for the model and metrics, e.g. runs/mine")
    try:
        _check_output_path(folder, inputs)
    except OSError as exc:  # a name too long, a loop of links, ...: the OS says no before anything is written
        raise ConfigError(f"--output-dir {folder} cannot be used ({exc.strerror or exc}): choose another "
                          "folder") from None


def _check_output_path(folder: Path, inputs) -> None:
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--output-dir {folder} is a file: pick a folder name")
    here = folder.resolve()
    for flag, given in inputs:
        path = Path(os.path.expanduser(given))
        if path.exists() and inside(path.resolve(), here):
            what = "is" if path.resolve() == here else "holds"
            raise ConfigError(f"--output-dir {folder} {what} the {flag} {given}: mlmtune never writes over its "
                              "inputs; choose another --output-dir")
    _check_writable(folder)


def check_output_content(folder: Path, *, overwrite: bool, resume: bool) -> dict | None:
    """The part of check_output_dir that reads what the folder holds (a run: --overwrite or --resume)."""
    try:
        return _check_output_content(folder, overwrite=overwrite, resume=resume)
    except OSError as exc:
        raise ConfigError(f"--output-dir {folder} cannot be used ({exc.strerror or exc}): choose another "
                          "folder") from None


def _check_output_content(folder: Path, *, overwrite: bool, resume: bool) -> dict | None:
    record = read_json(folder / "run.json")
    run = record if is_run_record(record) else None
    if resume:
        if (folder / "run.json").exists() and run is None:
            raise ConfigError(f"--resume: {folder / 'run.json'} is damaged (not the run.json mlmtune wrote): restore "
                              "it, or start a new run in another --output-dir")
        if run is None:
            raise ConfigError(f"--resume: {folder} holds no run (no run.json): start without --resume")
        return run
    if not has_content(folder):
        return None
    if run is None:
        raise ConfigError(
            f"--output-dir {folder} holds files that are not an mlmtune run (it has no run.json mlmtune wrote), "
            "and mlmtune replaces only its own runs: choose a new or empty folder"
        )
    if not overwrite:
        raise ConfigError(
            f"--output-dir {folder} already holds a run: pass --overwrite to replace it (other files in "
            "the folder are kept), --resume to continue it, or choose another folder"
        )
    return run


def set_aside_old_run(folder: Path) -> Path | None:
    """--overwrite, once the new run's inputs are all valid: move what the earlier run wrote into a
    hidden folder (a rename each), so a failure while the new run starts can put it back
    (`put_back`); `discard` removes it once the new run has started. Returns that folder."""
    if not folder.is_dir():
        return None

    # a card the user edited (its marker removed, as the card says) or linked is theirs now: it stays
    old = [p for p in run_written(folder) if not p.name.startswith(TEMP_PREFIX)
           and not (p == folder / CARD and not is_ours(p))]
    if not old:
        return None
    aside = Path(tempfile.mkdtemp(prefix=SET_ASIDE_PREFIX, dir=folder))
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


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def put_back(aside: Path | None, folder: Path) -> list[Path]:
    """Undo set_aside_old_run: the earlier run's files return where they were, run.json last (a top-level
    folder such as checkpoints/ or 1_Pooling/ that exists again is filled, entry by entry). Returns what
    could not go back because something else now has its name; the hidden folder is removed only when
    it is empty, so nothing of the earlier run is ever deleted here."""
    if aside is None or not _real_dir(aside):
        return []
    left: list[Path] = []
    for p in sorted(aside.iterdir(), key=lambda p: p.name == "run.json"):
        target = folder / p.name
        if _real_dir(p) and _real_dir(target):
            for q in sorted(p.iterdir()):
                _move_back(q, target / q.name, left)
        else:
            _move_back(p, target, left)
    for p in sorted(aside.rglob("*"), key=lambda p: len(p.parts), reverse=True):  # the emptied folders
        if _real_dir(p):
            with contextlib.suppress(OSError):
                p.rmdir()
    with contextlib.suppress(OSError):
        aside.rmdir()
    return left


def _move_back(source: Path, target: Path, left: list[Path]) -> None:
    if target.exists() or target.is_symlink():
        left.append(source)
    else:
        os.replace(source, target)


def discard(aside: Path | None) -> None:
    """The new run has taken the folder: the set-aside run goes. Renamed first (a temporary's name), so a
    kill while it is being deleted leaves a temporary the next run removes, never half a set-aside run."""
    if aside is None or not aside.is_dir():
        return
    doomed = aside.with_name(f"{TEMP_PREFIX}discard-{aside.name.removeprefix(SET_ASIDE_PREFIX)}")
    os.replace(aside, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def restore_set_aside(folder: Path, say=print) -> None:
    """Under the folder's lock: put back a run that an --overwrite set aside and could not put back or
    delete itself (it was killed while the new run was starting). When the new run had already written
    its run.json (killed just before deleting the old one), that new run has no checkpoint and no model,
    and is undone as any new run that fails so early. Anything that cannot be settled so is refused,
    naming the hidden folder: it is never deleted."""
    for aside in set_aside_runs(folder):
        if (aside / "run.json").exists() and is_run(folder):
            if complete_checkpoints(folder) or (folder / "results.json").exists():
                raise OutputError(
                    f"{aside} holds an earlier run that an interrupted --overwrite set aside, and {folder} holds a "
                    f"later run with a checkpoint or a model: move {aside.name} out of {folder} to keep the earlier "
                    "run (it is whole), or delete it")
            undo_new_run(folder, None)
        left = put_back(aside, folder)
        if left:
            names = ", ".join(p.relative_to(aside).as_posix() for p in left[:3])
            raise OutputError(
                f"{aside} holds part of an earlier run that an interrupted --overwrite set aside, and {folder} has "
                f"other files in its place ({names}): move {aside.name} out of {folder} to keep them, or delete it")
        say(f"note: put back the run in {folder} that an interrupted --overwrite had set aside ({aside.name})")


@contextlib.contextmanager
def run_folder_lock(folder: str | Path, command: str, say=print) -> Iterator[None]:
    """report and push of a run's folder: hold its lock for the block (refused while a run writes it), and
    first put back a run an interrupted --overwrite had set aside. A folder that does not exist is left
    to the command's own check (the lock would create it)."""
    folder = Path(folder)
    if not folder.is_dir() or not os.access(folder, os.W_OK):  # no run can write it either: read as it is
        yield
        return
    with folder_lock(folder, command):
        restore_set_aside(folder, say)
        yield


def recover_for_reading(folder: str | Path, say=print) -> None:
    """evaluate, predict and serve read a run's folder without locking it; when it holds a set-aside run
    and no process holds its lock (the --overwrite that set it aside died), put that run back first.
    With a live holder the set-aside run is that process's own, to put back or delete."""
    folder = Path(folder)
    asides = set_aside_runs(folder)
    if not asides:
        return
    try:
        with folder_lock(folder):
            restore_set_aside(folder, say)
    except FolderBusy:
        pass
    except OSError as exc:  # a folder this user may not write (read-only, another's): read it as it is, and say why
        say(f"note: {folder} holds a run that an interrupted --overwrite set aside "
            f"({', '.join(p.name for p in asides)}), which cannot be put back from here ({exc.strerror or exc}): "
            f"mlmtune train or report of {folder} by a user who may write it puts it back")


def run_inputs(cfg) -> list[tuple[str, str]]:
    """The local files and folders a run reads: --output-dir may never be or hold one of them."""

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

    if complete_checkpoints(out) or (out / "results.json").exists():
        return
    for p in sorted(run_written(out), key=lambda p: p.name == "run.json"):
        remove_path(p)
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


@dataclass
class Folder:
    """The output folder of a run, and whether the run has taken it yet (its run.json and files are its own)."""

    path: Path
    taken: bool = False


@contextlib.contextmanager
def failure_rules(out: Path, *, resume: bool, command: str = "train") -> Iterator[Folder]:
    """Hold the folder's lock (run/lock.py; created with the folder when missing) for the run, and decide
    what a run that fails leaves in `out` (the main process decides, still holding the lock): before it
    took the folder, only the temporaries and the empty folders it created go; after, a new run without
    a checkpoint or a final model removes what it wrote (undo_new_run), a resumed one only its
    temporaries. A failed write is one OutputError line naming the folder."""
    created = first_missing(out)  # what a failed new run removes again
    folder = Folder(out)
    try:
        with folder_lock(out, command):
            try:
                yield folder
            except BaseException:
                if is_main() and out.is_dir():
                    remove_temporaries(out)
                    if folder.taken and not resume:
                        undo_new_run(out, None)
                raise
    except BaseException as exc:
        if is_main():  # the lock is given back: the folders the run created go, when empty
            remove_created_folders(out, created)
        problem = write_problem(exc, out) if isinstance(exc, OSError) and not isinstance(exc, FolderBusy) else None
        if problem is not None:
            raise OutputError(f"cannot write into {out}: {problem}; free space or fix the permissions, or choose "
                              "another --output-dir") from None
        raise
