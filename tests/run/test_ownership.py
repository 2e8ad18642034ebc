"""Which output folder a run may take (run/ownership.py), losing nothing: --overwrite deletes only what
a run wrote, and only once the new run's input is all valid; a folder that is not a run, holds the data
or the base model, or is another run's, is refused; a folder that cannot be written is one line; a new
run that fails early leaves nothing behind."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_clean_error, assert_ok, error_after_bar, run_cli, snapshot, strict_json, tiny_run, train_argv

from mlmtune.run.layout import set_aside_runs
from mlmtune.run.ownership import put_back, set_aside_old_run
from mlmtune.training.fit import fit


def user_folder(tmp_path: Path, news_folder: str) -> Path:
    """A user's working folder: notes, a .git, and a corpus file."""
    home = tmp_path / "work"
    (home / ".git").mkdir(parents=True)
    (home / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (home / "notes.txt").write_text("\n\n".join(p.read_text() for p in sorted(Path(news_folder).glob("*.txt"))[:30]))
    return home


# --- 1. --overwrite deletes only what a run wrote -----------------------------------------------

def test_overwrite_refuses_the_current_folder_holding_data(capsys, tmp_path, tiny_bert, news_folder, monkeypatch):
    home = user_folder(tmp_path, news_folder)
    before = snapshot(home)
    monkeypatch.chdir(home)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, "notes.txt", ".", "--overwrite"))
    assert_clean_error(code, err, "--output-dir", "--data notes.txt")
    assert snapshot(home) == before


def test_overwrite_refuses_a_folder_that_is_not_a_run(capsys, tmp_path, tiny_bert, news_folder):
    home = user_folder(tmp_path, news_folder)
    before = snapshot(home)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, home, "--overwrite"))
    assert_clean_error(code, err, "not an mlmtune run")
    assert snapshot(home) == before


def test_overwrite_never_replaces_the_base_model(capsys, tmp_path, tiny_bert, news_folder):
    model = Path(shutil.copytree(tiny_bert, tmp_path / "model"))
    before = snapshot(model)
    code, _, err = run_cli(capsys, *train_argv(model, news_folder, model, "--overwrite"))
    assert_clean_error(code, err, "--model")
    assert snapshot(model) == before
    # a model folder given as --output-dir of another model's run is not "files of another run"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, model, "--overwrite"))
    assert_clean_error(code, err, "not an mlmtune run")
    assert snapshot(model) == before


def test_overwrite_refuses_a_run_folder_holding_the_data(capsys, run_copy, tiny_bert, news_folder):
    data = run_copy / "more.txt"
    shutil.copy(sorted(Path(news_folder).glob("*.txt"))[0], data)
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, data, run_copy, "--overwrite"))
    assert_clean_error(code, err, "--data")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_output_dir_is_an_error(capsys, tmp_path, tiny_bert, news_folder, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, value))
    assert_clean_error(code, err, "--output-dir", "empty")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_the_run_and_keeps_the_users_files(capsys, run_copy, tiny_bert, news_folder):
    (run_copy / "my-notes.md").write_text("keep me")
    (run_copy / ".gitignore").write_text("*\n")
    old_run = json.loads((run_copy / "run.json").read_text())
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, run_copy, "--overwrite", "--seed", "5"))
    assert_ok(code, err)
    assert (run_copy / "my-notes.md").read_text() == "keep me"
    assert (run_copy / ".gitignore").read_text() == "*\n"
    new_run = json.loads((run_copy / "run.json").read_text())
    assert new_run["config"]["seed"] == 5 != old_run["config"]["seed"]
    # the old run's checkpoints (steps 1 and 2) went with it; the new run saved its final step
    assert sorted(p.name for p in (run_copy / "checkpoints").iterdir()) == ["step-0000001"]
    assert strict_json(run_copy / "checkpoints" / "step-0000001" / "mlmtune_state.json")["config"]["seed"] == 5
    assert (run_copy / "model.safetensors").is_file()


# --- 10. an output folder that cannot be written ------------------------------------------------

def test_output_dir_under_proc(capsys, tiny_bert, news_folder):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, "/proc/mlmtune-x"))
    assert_clean_error(code, err, "/proc/mlmtune-x", "cannot be written")


def test_output_dir_dangling_symlink(capsys, tmp_path, tiny_bert, news_folder):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, link))
    assert_clean_error(code, err, "symbolic link", "does not exist")
    assert link.is_symlink() and not (tmp_path / "gone").exists()


def test_read_only_output_dir(capsys, tiny_bert, news_folder, small_disk):
    disk = small_disk("1m")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, disk / "out"))
    assert_clean_error(code, err, "cannot be written", "read-only")


# --- 15. a new run that fails early leaves nothing ----------------------------------------------

@pytest.mark.parametrize("bad, needle", [
    (bytes(range(256)) * 64, "binary"),  # found before training starts
    ("caf\u00e9 ".encode("latin-1") * 3000, "utf-8"),  # found mid-stream, after run.json was written
])
def test_streaming_bad_file_leaves_nothing(capsys, tmp_path, tiny_bert, news_folder, bad, needle):
    data = Path(shutil.copytree(news_folder, tmp_path / "data"))
    (data / "zz-bad.txt").write_bytes(bad)
    out = tmp_path / "out"
    argv = train_argv(tiny_bert, data, out, "--streaming", "--max-steps", "40", "--eval-size", "2")
    code, _, err = run_cli(capsys, *argv)
    error_after_bar(code, err, needle)
    assert not out.exists()
    (data / "zz-bad.txt").unlink()
    code, _, err = run_cli(capsys, *argv)  # the same command now runs: nothing blocks it
    assert_ok(code, err)


def test_sigterm_during_preparation_keeps_the_old_run(capsys, run_copy, tiny_bert, news_folder, monkeypatch):
    """With --overwrite, the old run is only cleared once the new one is ready: a stop before keeps it."""
    train_module = importlib.import_module("mlmtune.training.prepare")

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(train_module, "splits_from_config", terminated)
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, run_copy, "--overwrite"))
    assert code == 143 and "Traceback" not in err
    assert snapshot(run_copy) == before


# --- what a hostile tester found in the first version of these fixes -----------------------------

def test_a_planted_run_json_does_not_make_a_run(capsys, tmp_path, tiny_bert, news_folder):
    home = tmp_path / "home"
    (home / "checkpoints").mkdir(parents=True)
    (home / "run.json").write_text("not json")
    (home / "config.json").write_text('{"app": 1}')
    (home / "checkpoints" / "epoch10.pt").write_text("w")
    before = snapshot(home)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, home, "--overwrite"))
    assert_clean_error(code, err, "not an mlmtune run")
    assert snapshot(home) == before


def test_overwrite_keeps_files_the_run_did_not_write(capsys, run_copy, tiny_bert, news_folder):
    written = set(json.loads((run_copy / "results.json").read_text())["files"])
    assert "model.safetensors" in written and "config.json" in written
    mine = ["notes.model", "my-finetune.safetensors", "pytorch_model-old.bin"]
    for name in mine:
        (run_copy / name).write_text("mine")
    (run_copy / "checkpoints" / "README").write_text("mine")
    (run_copy / ".thesis.tmp").write_text("draft")
    (run_copy / ".model.backup").mkdir()
    (run_copy / ".model.backup" / "weights.bin").write_text("v")
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, run_copy, "--overwrite", "--seed", "3"))
    assert_ok(code, err)
    for name in mine + ["checkpoints/README", ".thesis.tmp", ".model.backup/weights.bin"]:
        assert (run_copy / name).read_text() in ("mine", "draft", "v"), name
    assert not [p for p in run_copy.iterdir() if p.name.startswith(".mlmtune-")]


def test_hidden_user_files_are_content(capsys, tmp_path, tiny_bert, news_folder):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / ".thesis.tmp").write_text("draft")
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, folder))
    assert_clean_error(code, err, "not an mlmtune run")
    assert (folder / ".thesis.tmp").read_text() == "draft"


def test_a_run_json_config_never_overwrites_or_resumes_by_itself(capsys, run_copy, tmp_path, tiny_bert, news_folder):
    first = tmp_path / "first"
    assert main_ok(capsys, *train_argv(tiny_bert, news_folder, first))
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, first, "--overwrite"))
    assert_ok(code, err)
    run = json.loads((first / "run.json").read_text())
    assert run["config"]["overwrite"] is False and run["config"]["resume"] is False
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "train", "--config", first / "run.json", "--output-dir", run_copy)
    assert_clean_error(code, err, "already holds a run")
    assert snapshot(run_copy) == before
    code, _, err = run_cli(capsys, "train", "--config", first / "run.json", "--resume")  # the advertised command
    assert_ok(code, err)


def main_ok(capsys, *argv) -> bool:
    code, _, err = run_cli(capsys, *argv)
    assert_ok(code, err)
    return True


def test_a_tracker_that_cannot_start_keeps_the_old_run(capsys, run_copy, tiny_bert, news_folder, monkeypatch):
    from mlmtune.errors import ConfigError

    train_module = importlib.import_module("mlmtune.training.fit")

    def broken(*args, **kwargs):
        raise ConfigError("--report-to mlflow could not start: bogus: fix the tracker's settings")

    monkeypatch.setattr(train_module, "start_tracker", broken)
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, run_copy, "--overwrite"))
    assert_clean_error(code, err, "could not start")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("nested", [False, True])
def test_a_name_too_long_is_one_line(capsys, tmp_path, tiny_bert, news_folder, nested):
    long = "a" * 300
    out = tmp_path / "x" / long / "y" if nested else tmp_path / long
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out))
    assert_clean_error(code, err, "--output-dir", "long")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_new_run_leaves_no_empty_parents(capsys, tmp_path, tiny_bert, news_folder, monkeypatch):
    train_module = importlib.import_module("mlmtune.training.evaluations")

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(train_module, "evaluate_batches", terminated)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "p1" / "a" / "b" / "c"))
    assert code == 143
    assert list(tmp_path.iterdir()) == []


# --- another run's folder, bad input with --overwrite, a file -------------------------------------

def test_output_folder_of_another_run_is_refused(capsys, run_copy):
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--output-dir", run_copy)
    assert_clean_error(code, err, "--overwrite", "--resume")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("bad", [["--data", "/nonexistent/notes.txt"], ["--chunk-size", "500"], ["--lr", "0"]],
                         ids=["missing-data", "chunk-size", "lr"])
def test_overwrite_with_bad_input_keeps_the_old_run(capsys, run_copy, bad):
    """--overwrite clears the folder only once the new run's input is all valid."""
    before = snapshot(run_copy)
    argv = ["train", "--config", run_copy / "run.json", "--output-dir", run_copy, "--overwrite", *bad]
    if bad[0] == "--data":  # replace the run's data, do not add to it
        cfg = json.loads((run_copy / "run.json").read_text())["config"]
        cfg["data"] = [bad[1]]
        (run_copy.parent / "cfg.json").write_text(json.dumps(cfg))
        argv = ["train", "--config", run_copy.parent / "cfg.json", "--output-dir", run_copy, "--overwrite"]
    code, _, err = run_cli(capsys, *argv)
    assert_clean_error(code, err, bad[0])
    assert snapshot(run_copy) == before


def test_output_dir_is_a_file(capsys, tiny_bert, news_folder, tmp_path):
    out = tmp_path / "out"
    out.write_text("precious")
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out))
    assert_clean_error(code, err, "is a file")
    assert out.read_text() == "precious"


def test_refuses_an_output_folder_of_another_run(tiny_bert, news_folder, tmp_path):
    from mlmtune.errors import ConfigError

    out = tmp_path / "run"
    fit(tiny_run(tiny_bert, news_folder, out, max_steps=2))
    before = (out / "run.json").read_text()
    with pytest.raises(ConfigError, match="--overwrite"):
        fit(tiny_run(tiny_bert, news_folder, out, max_steps=2))
    assert (out / "run.json").read_text() == before
    fit(tiny_run(tiny_bert, news_folder, out, max_steps=3, overwrite=True))
    assert json.loads((out / "results.json").read_text())["steps"] == 3


# --- a run --overwrite set aside, when the --overwrite was killed before it put it back or deleted it ------

KILLED_AT = """
import os, signal, sys
import mlmtune.training.fit as fit

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

setattr(fit, sys.argv[1], killed)
from mlmtune.cli import main
sys.exit(main(sys.argv[2:]))
"""


def killed_overwrite(run: Path, hook: str, tiny_bert: str, news_folder: str) -> None:
    """`train --overwrite` into `run`, SIGKILLed at `hook`: start_tracker (the old run is set aside, the new
    run.json not yet written) or discard (the new run.json written, the old run not yet deleted)."""
    from helpers import SRC

    argv = [str(a) for a in train_argv(tiny_bert, news_folder, run, "--overwrite", "--seed", "7")]
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", KILLED_AT, hook, *argv], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert len(set_aside_runs(run)) == 1  # what the kill left: the whole old run, hidden


@pytest.mark.slow
@pytest.mark.parametrize("hook", ["start_tracker", "discard"])
def test_a_sigkill_during_overwrite_never_loses_the_old_run(capsys, run_copy, tiny_bert, news_folder, hook):
    """The old run, hidden by a killed --overwrite, was deleted by the next plain `train` (exit 0): it is put
    back, and that `train` is refused as for any run's folder."""
    before = snapshot(run_copy)
    killed_overwrite(run_copy, hook, tiny_bert, news_folder)
    code, out, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, run_copy))
    assert "note: put back the run" in out
    assert_clean_error(code, err, "already holds a run")
    assert snapshot(run_copy) == before


def test_the_next_train_puts_a_set_aside_run_back(capsys, run_copy, tiny_bert, news_folder):
    """The state a SIGKILL between the set-aside and the new run.json leaves (see the slow test above)."""
    before = snapshot(run_copy)
    set_aside_old_run(run_copy)
    assert not (run_copy / "run.json").exists() and not has_content_but_aside(run_copy)
    code, out, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, run_copy))
    assert_clean_error(code, err, "already holds a run")
    assert "note: put back the run" in out
    assert snapshot(run_copy) == before


def has_content_but_aside(folder: Path) -> bool:
    return any(p for p in folder.iterdir() if not p.name.startswith(".mlmtune-old-"))


@pytest.mark.parametrize("command", ["evaluate", "report", "predict", "resume", "overwrite"])
def test_whatever_next_touches_the_folder_puts_a_set_aside_run_back(capsys, run_copy, tiny_bert, news_folder, command):
    trained = json.loads((run_copy / "results.json").read_text())
    set_aside_old_run(run_copy)
    argv = {"evaluate": ["evaluate", "--config", run_copy / "run.json", "--json"],
            "report": ["report", run_copy],
            "predict": ["predict", "--model", run_copy, "The [MASK] is happy."],
            "resume": ["train", "--config", run_copy / "run.json", "--resume", "--max-steps", "3"],
            "overwrite": train_argv(tiny_bert, news_folder, run_copy, "--overwrite", "--seed", "9")}[command]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "put back the run" in err + out
    assert not set_aside_runs(run_copy)
    results = json.loads((run_copy / "results.json").read_text())
    if command == "evaluate":
        assert json.loads(out)["perplexity"] == pytest.approx(trained["eval_perplexity"], rel=1e-6)
    if command == "resume":
        assert results["steps"] == 3
    if command == "overwrite":
        assert json.loads((run_copy / "run.json").read_text())["config"]["seed"] == 9


def test_a_new_run_killed_before_it_deleted_the_old_one_is_undone(capsys, run_copy, tiny_bert, news_folder):
    """Killed after the new run.json and before the old run was deleted: the new run had nothing yet (no
    checkpoint, no model), so it goes as any new run that fails so early, and the old run comes back."""
    before = snapshot(run_copy)
    old = json.loads((run_copy / "run.json").read_text())
    set_aside_old_run(run_copy)
    (run_copy / "run.json").write_text(json.dumps({**old, "config": {**old["config"], "seed": 7}}))
    code, _, err = run_cli(capsys, "evaluate", "--config", run_copy / "run.json", "--json")
    assert code == 0, err
    assert snapshot(run_copy) == before


def test_a_set_aside_run_beside_a_later_run_is_refused_and_kept(capsys, run_copy, tiny_bert, news_folder):
    """A hidden old run next to a later run with checkpoints cannot be settled by itself: every command
    names it, and nothing of either run is deleted."""
    import shutil as sh

    aside = run_copy / ".mlmtune-old-abcd1234"
    sh.copytree(run_copy, aside)
    before = snapshot(run_copy)
    for argv in (train_argv(tiny_bert, news_folder, run_copy, "--overwrite"), ["report", run_copy],
                 train_argv(tiny_bert, news_folder, run_copy)):
        code, _, err = run_cli(capsys, *argv)
        assert_clean_error(code, err, str(aside), "set aside", "move")
        assert snapshot(run_copy) == before


def test_put_back_never_deletes_what_cannot_go_back(tmp_path):
    """put_back removed the hidden folder whole, with whatever could not go back (a name taken meanwhile)."""
    out = tmp_path / "run"
    (out / "1_Pooling").mkdir(parents=True)
    (out / "1_Pooling" / "notes.txt").write_text("mine")  # keeps the module folder from being removed
    (out / "1_Pooling" / "config.json").write_text("{}")
    (out / "run.json").write_text("{}")
    (out / "results.json").write_text(json.dumps({"files": ["1_Pooling/config.json"]}))
    aside = set_aside_old_run(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(["1_Pooling", aside.name])
    (out / "results.json").write_text("other")
    left = put_back(aside, out)
    assert [p.name for p in left] == ["results.json"] and (aside / "results.json").read_text().startswith("{")
    assert (out / "1_Pooling" / "config.json").read_text() == "{}" and (out / "run.json").read_text() == "{}"


def test_a_reader_that_cannot_lock_the_folder_says_why_and_leaves_the_set_aside_run(tmp_path, monkeypatch):
    """evaluate/predict/serve of a folder they may not write (read-only, another user's) died with a
    traceback from the lock file when it held a set-aside run."""
    import mlmtune.run.ownership as ownership

    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}")
    (out / "results.json").write_text(json.dumps({"files": []}))
    aside = set_aside_old_run(out)

    def read_only(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ownership, "folder_lock", read_only)
    said = []
    ownership.recover_for_reading(out, say=said.append)
    assert len(said) == 1 and aside.name in said[0] and "Permission denied" in said[0] and "puts it back" in said[0]
    assert (aside / "run.json").read_text() == "{}"
