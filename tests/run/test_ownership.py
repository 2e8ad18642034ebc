"""Lose nothing (issue 11): --overwrite never deletes a user's files, non-finite options are refused,
no evaluation text is training text, --resume refuses changed data, a failed write is one line,
and a new run that fails early leaves nothing behind.

Each test here failed before the change that made it pass.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import assert_clean_error, assert_ok, error_after_bar, run_cli, snapshot, strict_json, train_argv

from mlmtune.data.blocks import prepare
from mlmtune.data.sources import Documents, bbc_news_folder
from mlmtune.data.split import drop_duplicates


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
    assert strict_json(run_copy / "checkpoints" / "step-0000001" / "trainer_state.json")["config"]["seed"] == 5
    assert (run_copy / "model.safetensors").is_file()


# --- 3. non-finite and out-of-range hyperparameters ---------------------------------------------

@pytest.mark.parametrize("flag, value, needle", [
    ("--weight-decay", "inf", "finite"),
    ("--weight-decay", "nan", "finite"),
    ("--lr", "nan", "finite"),
    ("--head-lr", "-inf", "finite"),
    ("--max-grad-norm", "inf", "finite"),
    ("--warmup-ratio", "nan", "finite"),
    ("--mlm-probability", "nan", "finite"),
    ("--mask-replace-prob", "nan", "finite"),
    ("--eval-fraction", "inf", "finite"),
    ("--weight-decay", "1e5", "weight-decay"),  # lr x decay >= 1 flips every weight
])
def test_non_finite_options_write_nothing(capsys, tmp_path, tiny_bert, news_folder, flag, value, needle):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, f"{flag}={value}"))
    assert_clean_error(code, err, flag if needle == "finite" else needle, needle)
    assert not out.exists()


def test_json_files_never_hold_nan(tmp_path):
    from mlmtune.run.files import atomic_write_json

    atomic_write_json(tmp_path / "x.json", {"a": float("inf"), "b": [float("nan"), 1.5], "c": {"d": -float("inf")}})
    assert strict_json(tmp_path / "x.json") == {"a": None, "b": [None, 1.5], "c": {"d": None}}


def test_weights_are_checked_finite_before_saving():
    import torch

    from mlmtune.errors import TrainingError
    from mlmtune.training.fit import check_finite_weights

    check_finite_weights({"a": torch.ones(3), "ids": torch.arange(3)}, [])
    with pytest.raises(TrainingError, match="b.weight holds NaN"):
        check_finite_weights({"a": torch.ones(3), "b.weight": torch.tensor([1.0, float("nan")])}, [])


def test_results_are_strict_json(finished_run):
    for name in ("results.json", "run.json"):
        strict_json(finished_run / name)
    for line in (finished_run / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"metrics.jsonl holds {c}"))


# --- 4. no evaluation text in training -----------------------------------------------------------

def test_repeated_documents_never_straddle_the_split(tokenizer, news_folder):
    texts = [p.read_text() for p in sorted(Path(news_folder).glob("*.txt"))]
    docs = Documents(train=texts + [t + "\n" for t in texts[:15]])  # 15 repeats, one with a trailing newline
    splits = prepare(docs, tokenizer, line_by_line=True, eval_fraction=0.3, seed=42, max_length=128)
    assert splits.duplicates == 15 and splits.summary()["duplicates_dropped"] == 15
    train = {tuple(splits.train.tokens[a:b]) for a, b in zip(splits.train.offsets[:-1], splits.train.offsets[1:])}
    evals = {tuple(splits.eval.tokens[a:b]) for a, b in zip(splits.eval.offsets[:-1], splits.eval.offsets[1:])}
    assert evals and not (train & evals)


def test_an_eval_split_drops_what_training_holds(tokenizer, news_folder):
    texts = [p.read_text() for p in sorted(Path(news_folder).glob("*.txt"))]
    splits = prepare(Documents(train=texts[:30], eval=texts[25:]), tokenizer, chunk_size=32, seed=0)
    assert splits.duplicates == 5 and splits.holdout == "split"


def test_bbc_news_holds_98_repeats():
    texts = [p.read_text(encoding="latin-1") for p in sorted(bbc_news_folder().rglob("*.txt"))]
    kept, dropped = drop_duplicates(texts)
    assert (len(texts), dropped) == (2225, 98) and len(set(kept)) == len(kept)


def test_the_same_file_twice_is_counted_and_said(capsys, tmp_path, tiny_bert, news_folder):
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--data", news_folder))
    assert_ok(code, err)
    assert "dropped 40 repeated documents" in stdout + err
    run = strict_json(out / "run.json")
    assert run["data"]["duplicates_dropped"] == 40 and run["data"]["documents"] == 40


# --- 5. --resume refuses changed data ------------------------------------------------------------

def test_resume_on_changed_data_is_refused(capsys, tmp_path, tiny_bert, news_folder):
    data = Path(shutil.copytree(news_folder, tmp_path / "data"))
    out = tmp_path / "out"
    argv = train_argv(tiny_bert, data, out, "--max-steps", "3", "--save-every", "1")
    code, _, err = run_cli(capsys, *argv)
    assert_ok(code, err)
    run = strict_json(out / "run.json")
    assert len(run["data"]["train_fingerprint"]) == 16
    state = strict_json(sorted((out / "checkpoints").glob("step-*"))[-1] / "trainer_state.json")
    assert state["data"]["train_fingerprint"] == run["data"]["train_fingerprint"]
    before = snapshot(out)
    first = sorted(data.glob("*.txt"))[0]
    first.write_text(first.read_text().replace("the", "a"))
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-steps", "3")
    assert_clean_error(code, err, "--resume", "data changed")
    assert snapshot(out) == before


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


@pytest.fixture
def small_disk(tmp_path):
    """A mounted tmpfs of the given size (root only; skipped where mounting is not allowed)."""
    mounted = []

    def make(size: str) -> Path:
        where = tmp_path / f"disk-{size}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


def test_read_only_output_dir(capsys, tiny_bert, news_folder, small_disk):
    disk = small_disk("1m")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, disk / "out"))
    assert_clean_error(code, err, "cannot be written", "read-only")


@pytest.mark.parametrize("size", ["3m", "20m"])
def test_disk_full_is_one_line_and_leaves_no_temporaries(capsys, tiny_bert, news_folder, small_disk, size):
    disk = small_disk(size)
    out = disk / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--max-steps", "4", "--save-every", "1"))
    error_after_bar(code, err, "disk is full")
    leftovers = [p for p in out.rglob(".*")] if out.exists() else []
    assert leftovers == []
    kept = sorted(p.name for p in (out / "checkpoints").iterdir()) if (out / "checkpoints").exists() else []
    assert all(name.startswith("step-") for name in kept)
    if not kept:  # a new run without a checkpoint leaves nothing behind
        assert not out.exists()


def test_disk_full_during_a_checkpoint_without_a_small_disk(capsys, tmp_path, tiny_bert, news_folder, monkeypatch):
    """The same, on any machine: save_state fails as a full disk makes it fail."""
    from accelerate import Accelerator

    def full(self, output_dir, **kw):
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "model.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Accelerator, "save_state", full)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--max-steps", "2", "--save-every", "1"))
    error_after_bar(code, err, "checkpoint of step 1", "disk is full")
    assert not out.exists()


def test_next_run_removes_hidden_temporaries(capsys, run_copy, tiny_bert, news_folder):
    (run_copy / ".mlmtune-model-abc123").mkdir()
    (run_copy / ".mlmtune-model-abc123" / "model.safetensors").write_bytes(b"x" * 100)
    (run_copy / ".mlmtune-results.json.xyz.tmp").write_text("{")
    (run_copy / "checkpoints" / ".step-0000009.tmp").mkdir()
    code, _, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--output-dir", run_copy, "--resume")
    assert_ok(code, err)
    assert not [p for p in run_copy.rglob(".*")]


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


def test_sigterm_during_the_baseline_leaves_nothing(capsys, tmp_path, tiny_bert, news_folder, monkeypatch):
    train_module = importlib.import_module("mlmtune.training.evaluations")

    real = train_module.evaluate_batches

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate_batches", terminated)
    handler = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out))
    assert code == 143 and "SIGTERM" in err and "Traceback" not in err
    assert not out.exists()
    assert signal.getsignal(signal.SIGTERM) is handler  # the caller's handler is back


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


# --- messages that point at the right fix, and a finished run resumed ---------------------------

def test_eval_fraction_near_one_names_eval_fraction(capsys, tmp_path, tiny_bert, news_folder):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "o", "--eval-fraction", "0.999"))
    assert_clean_error(code, err, "lower --eval-fraction")


def test_train_size_below_a_batch_names_train_size(capsys, tmp_path, tiny_bert, news_folder):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "o", "--train-size", "1"))
    assert_clean_error(code, err, "raise --train-size to at least 4")


def test_resuming_a_finished_run_adds_no_eval_record(capsys, run_copy):
    before = (run_copy / "metrics.jsonl").read_text()
    for _ in range(2):
        code, _, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--output-dir", run_copy, "--resume")
        assert_ok(code, err)
    assert (run_copy / "metrics.jsonl").read_text() == before


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


def test_streaming_resume_on_changed_data_is_refused(capsys, tmp_path, tiny_bert, news_folder):
    data = Path(shutil.copytree(news_folder, tmp_path / "data"))
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, data, out, "--streaming", "--max-steps", "2",
                                               "--eval-size", "2", "--save-every", "1"))
    assert_ok(code, err)
    for p in sorted(data.glob("*.txt"))[:30]:
        p.unlink()
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-steps", "2")
    assert_clean_error(code, err, "--resume", "data changed")


def test_a_checkpoint_of_infinite_weights_is_never_saved(capsys, tmp_path, tiny_bert, news_folder):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--lr", "1e38", "--weight-decay", "0",
                                               "--save-every", "1", "--max-steps", "3"))
    assert code == 1 and "Traceback" not in err
    assert "NaN or infinity" in err or "loss is nan" in err
    assert not out.exists()  # a new run without a good checkpoint leaves nothing


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


def test_crlf_and_bom_copies_are_repeats():
    kept, dropped = drop_duplicates(["one\ntwo", "one\r\ntwo", "\ufeffone\ntwo  ", "three"])
    assert (kept, dropped) == (["one\ntwo", "three"], 2)
