"""One process at a time on an output folder (run/lock.py): a second process is refused with one line
naming the holder's PID, whatever it does (a new run, --resume, --overwrite, report, push); the lock
dies with its holder (SIGKILL leaves no stale lock); and the lock file is never content, never a
temporary, and gone when the holder is done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import SRC, assert_clean_error, assert_ok, run_cli, snapshot, train_argv

from mlmtune.errors import OutputError
from mlmtune.run.layout import LOCK_FILE, has_content, remove_temporaries
from mlmtune.run.lock import FolderBusy, acquire, folder_lock, holds, release


def test_a_run_is_refused_while_another_process_holds_the_folder_then_goes_on_after_a_sigkill(
        capsys, holder, tmp_path, tiny_bert, news_folder):
    out = tmp_path / "out"
    proc = holder(out)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out))
    assert_clean_error(code, err, f"PID {proc.pid}", "mlmtune train", str(out))
    assert [p.name for p in out.iterdir()] == [LOCK_FILE]  # the holder's, untouched
    proc.send_signal(signal.SIGKILL)  # the kernel releases a dead process's lock: nothing stale remains
    proc.wait()
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out))
    assert_ok(code, err)
    assert not (out / LOCK_FILE).exists()  # removed by its holder when done
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize("extra", [["--resume", "--max-steps", "3"], ["--overwrite"]], ids=["resume", "overwrite"])
def test_resume_and_overwrite_of_a_held_run_change_nothing(capsys, holder, run_copy, extra):
    proc = holder(run_copy)
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--output-dir", run_copy, *extra)
    assert_clean_error(code, err, f"PID {proc.pid}")
    assert snapshot(run_copy) == before


def test_report_of_a_held_run_is_refused(capsys, holder, run_copy):
    proc = holder(run_copy)
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "report", run_copy)
    assert_clean_error(code, err, f"PID {proc.pid}")
    assert snapshot(run_copy) == before


def test_the_lock_file_is_neither_content_nor_a_temporary(tmp_path):
    folder = tmp_path / "f"
    with folder_lock(folder, "train"):
        assert (folder / LOCK_FILE).is_file() and not has_content(folder)
        remove_temporaries(folder)  # what a run does to an earlier run's leftovers: never the live lock
        assert (folder / LOCK_FILE).is_file()
        assert open(folder / LOCK_FILE).read() == f"{os.getpid()} mlmtune train\n"
    assert list(folder.iterdir()) == []


def test_one_process_may_hold_a_folder_twice(tmp_path):
    """train writes its report at the end, and the report takes the lock: the same process, nested."""
    with folder_lock(tmp_path, "train"):
        with folder_lock(tmp_path, "report"):
            assert holds(tmp_path)
        assert holds(tmp_path) and (tmp_path / LOCK_FILE).exists()
    assert not holds(tmp_path) and not (tmp_path / LOCK_FILE).exists()


def test_a_lock_file_removed_by_its_last_holder_is_not_taken_for_a_lock(tmp_path, monkeypatch):
    """A process that opened the file just before its holder removed it would lock a file no longer in
    the folder, beside a third process locking the new one: after locking, the name must still lead to it."""
    import mlmtune.run.lock as lock

    real_flock = lock.fcntl.flock
    calls = []

    def flock_after_the_holder_left(fd, op):
        if not calls:  # the first attempt: the holder removes the file between our open and our flock
            (tmp_path / LOCK_FILE).unlink()
        calls.append(fd)
        return real_flock(fd, op)

    (tmp_path / LOCK_FILE).write_text("123 mlmtune train\n")
    monkeypatch.setattr(lock.fcntl, "flock", flock_after_the_holder_left)
    acquire(tmp_path, "train")
    try:
        assert len(calls) == 2  # locked a removed file, saw it, and locked the file the name leads to
        mine, named = os.fstat(lock._held[str(tmp_path.resolve())][0]), os.stat(tmp_path / LOCK_FILE)
        assert (mine.st_dev, mine.st_ino) == (named.st_dev, named.st_ino)
    finally:
        release(tmp_path)


def test_only_the_main_process_locks(tmp_path, monkeypatch):
    """Under torchrun the other ranks write nothing of the folder's own: they must not take its lock."""
    monkeypatch.setenv("RANK", "1")
    with folder_lock(tmp_path, "train"):
        assert not (tmp_path / LOCK_FILE).exists()


def test_busy_is_one_line_even_before_the_holder_wrote_its_pid(tmp_path):
    import fcntl

    (tmp_path / LOCK_FILE).write_text("")
    fd = os.open(tmp_path / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.perf_counter()
        with pytest.raises(FolderBusy, match="PID unknown"):
            acquire(tmp_path, "train")
        assert time.perf_counter() - started < 5
    finally:
        os.close(fd)


@pytest.mark.slow
def test_two_real_runs_on_one_new_folder(tmp_path, tiny_bert, news_folder):
    """Two `mlmtune train` processes into one new folder: the second is refused in one line naming the
    first's PID, and the first ends with a complete run (both died with tracebacks before)."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    argv = [sys.executable, "-m", "mlmtune", *map(str, train_argv(tiny_bert, news_folder, out, "--max-steps", "6"))]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (out / LOCK_FILE).exists():
        assert first.poll() is None and time.time() < deadline
        time.sleep(0.01)
    second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert_clean_error(second.returncode, second.stderr, f"PID {first.pid}")
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert (out / "model.safetensors").is_file() and (out / "results.json").is_file()
    assert not (out / LOCK_FILE).exists()


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "folder"])
def test_a_lock_name_that_leads_to_a_users_file_is_refused_and_the_file_untouched(tmp_path, kind):
    """The holder truncates the lock file and writes its PID: a link in its place (to a file outside the
    output folder) had that file emptied."""
    folder, theirs = tmp_path / "out", tmp_path / "notes.txt"
    folder.mkdir()
    theirs.write_text("my notes\n")
    {"symlink": lambda p: p.symlink_to(theirs), "hardlink": lambda p: os.link(theirs, p),
     "folder": lambda p: p.mkdir()}[kind](folder / LOCK_FILE)
    with pytest.raises(OutputError, match="is not mlmtune's lock file"):
        acquire(folder, "train")
    assert theirs.read_text() == "my notes\n"
    assert not holds(folder)


def test_train_into_a_folder_whose_lock_is_a_link_is_one_line(capsys, tmp_path, tiny_bert, news_folder):
    out, theirs = tmp_path / "out", tmp_path / "notes.txt"
    out.mkdir()
    theirs.write_text("my notes\n")
    (out / LOCK_FILE).symlink_to(theirs)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out))
    assert_clean_error(code, err, "is not mlmtune's lock file", str(out / LOCK_FILE))
    assert theirs.read_text() == "my notes\n"
