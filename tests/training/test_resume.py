"""--resume (training/resume.py): SIGKILL at arbitrary points + --resume ends with the uninterrupted
model; SIGTERM/SIGINT save a checkpoint and exit 143/130; a resume that does not fit the run (no
checkpoint, another config, changed data or evaluation data) is refused and changes nothing; and
training further with more steps, epochs or time."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import (
    assert_clean_error,
    assert_ok,
    run_cli,
    snapshot,
    strict_json,
    texts_of,
    tiny,
    train_args,
    train_argv,
    vocab_train_args,
    words_file,
)
from safetensors.torch import load_file

from mlmtune.run.layout import complete_checkpoints
from mlmtune.run.metrics_log import read_metrics
from mlmtune.training.fit import fit


def cli_args(model: str, data: str, out: Path, steps: int, **extra) -> list[str]:
    args = ["train", "--model", model, "--data", data, "--output-dir", str(out), "--chunk-size", "64",
            "--batch-size", "8", "--eval-size", "40", "--lr", "3e-3", "--head-lr", "3e-3", "--max-steps", str(steps),
            "--save-every", "2", "--log-every", "1", "--precision", "fp32", "--no-report", "--seed", "5"]
    for k, v in extra.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "mlmtune", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def newest_step(out: Path) -> int:
    found = complete_checkpoints(out)
    return int(found[-1].name.split("-")[1]) if found else 0


def wait_for_step(proc: subprocess.Popen, out: Path, step: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while newest_step(out) < step:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline, "no checkpoint in time"
        time.sleep(0.05)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


@pytest.mark.slow
def test_sigkill_twice_then_resume_equals_uninterrupted(tiny_encoder, news_folder, tmp_path):
    steps = 80
    straight = tmp_path / "straight"
    proc = start(cli_args(tiny_encoder, news_folder, straight, steps))
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-2000:]

    out = tmp_path / "killed"
    proc = start(cli_args(tiny_encoder, news_folder, out, steps))
    wait_for_step(proc, out, 4)
    time.sleep(random.uniform(0, 0.1))  # somewhere inside a later step or save
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first_kill = newest_step(out)
    assert 4 <= first_kill < steps

    proc = start(cli_args(tiny_encoder, news_folder, out, steps) + ["--resume"])
    wait_for_step(proc, out, first_kill + 6)
    time.sleep(random.uniform(0, 0.1))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert newest_step(out) < steps

    proc = start(cli_args(tiny_encoder, news_folder, out, steps) + ["--resume"])
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-2000:]
    assert "resumed from" in stdout

    a, b = weights(straight), weights(out)
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff <= 1e-6
    ra = json.loads((straight / "results.json").read_text())
    rb = json.loads((out / "results.json").read_text())
    assert rb["eval_perplexity"] == pytest.approx(ra["eval_perplexity"], rel=1e-6)
    # the metrics log reads as if nothing happened: same evaluations, no duplicated steps
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("seconds", "tokens_per_second", "time")} for r in rs]
    assert strip(read_metrics(out / "metrics.jsonl")) == strip(read_metrics(straight / "metrics.jsonl"))


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_a_checkpoint_and_says_how_to_resume(tiny_encoder, news_folder, tmp_path, sig, code):
    out = tmp_path / "run"
    proc = start(cli_args(tiny_encoder, news_folder, out, 400, save_every=1000))
    deadline = time.time() + 300
    while not (out / "metrics.jsonl").exists() or len(read_metrics(out / "metrics.jsonl")) < 3:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == code, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "--resume" in stderr and stderr.strip().splitlines()[-1].startswith("error: stopped by")
    saved = newest_step(out)
    assert 0 < saved < 400
    assert not (out / "model.safetensors").exists()  # no final model from an interrupted run
    proc = start(cli_args(tiny_encoder, news_folder, out, saved + 2, save_every=1000) + ["--resume", "--max-steps", str(saved + 2)])
    stdout, stderr = proc.communicate(timeout=300)
    # another --max-steps is a new plan: the schedule is rebuilt for it and the run goes on to it
    assert proc.returncode == 0, stderr[-2000:]
    assert "training further: planned for 400 steps, now" in stdout
    assert newest_step(out) == saved + 2


@pytest.mark.slow
def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tiny_bert, news_folder, tmp_path, monkeypatch):
    from mlmtune.config import build_config
    from mlmtune.errors import TrainingError
    from mlmtune.model.objective import MaskedLMObjective
    from mlmtune.training.fit import fit

    calls = {"n": 0}
    forward = MaskedLMObjective.forward

    def poisoned(self, *args):
        nll, correct = forward(self, *args)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 7:
                nll = nll * float("nan")
        return nll, correct

    monkeypatch.setattr(MaskedLMObjective, "forward", poisoned)
    out = tmp_path / "run"
    cfg = build_config(dict(model=tiny_bert, data=[news_folder], output_dir=str(out), chunk_size=64, batch_size=8,
                            eval_size=40, max_steps=20, save_every=3, report=False, precision="fp32"))
    with pytest.raises(TrainingError, match="step 7") as err:
        fit(cfg)
    assert "step-0000006" in str(err.value)
    assert [p.name for p in complete_checkpoints(out)] == ["step-0000003", "step-0000006"]
    assert not (out / "model.safetensors").exists()
    monkeypatch.setattr(MaskedLMObjective, "forward", forward)
    fit(cfg.replace(resume=True))  # the last good checkpoint takes the run to its end
    assert (out / "model.safetensors").exists()


# --- a resume that does not fit is refused, and changes nothing -----------------------------------

def test_resume_without_a_run(capsys, tiny_bert, news_folder, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--resume"))
    assert_clean_error(code, err, "--resume", "run.json")
    assert not out.exists()


def test_resume_without_a_checkpoint(capsys, run_copy):
    shutil.rmtree(run_copy / "checkpoints")
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--output-dir", run_copy, "--resume")
    assert_clean_error(code, err, "no complete checkpoint")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("change, field", [(["--lr", "0.1"], "lr"), (["--chunk-size", "16"], "chunk_size"),
                                           (["--mlm-probability", "0.3"], "mlm_probability")])
def test_resume_with_a_changed_config(capsys, run_copy, change, field):
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--output-dir", run_copy,
                           "--resume", *change)
    assert_clean_error(code, err, f"{field} was")
    assert snapshot(run_copy) == before


def test_resume_with_a_damaged_run_json(capsys, run_copy, tiny_bert, news_folder):
    (run_copy / "run.json").write_text('{"config": {"lr": ')
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, run_copy, "--max-steps", "2",
                                               "--save-every", "1", "--resume"))
    assert_clean_error(code, err, "run.json")
    assert snapshot(run_copy) == before


def test_resume_with_a_run_json_whose_config_is_a_string(capsys, run_copy):
    run = json.loads((run_copy / "run.json").read_text())
    argv = ["--config", run_copy.parent / "cfg.json", "--output-dir", run_copy, "--resume"]
    (run_copy.parent / "cfg.json").write_text(json.dumps(run["config"]))
    (run_copy / "run.json").write_text(json.dumps({**run, "config": "oops"}))
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "train", *argv)
    assert_clean_error(code, err, "run.json", "damaged", "another --output-dir")
    assert snapshot(run_copy) == before


def test_resume_refuses_another_eval_source(eval_data_run, split_news, capsys):
    train, _ = split_news
    code, _, err = run_cli(capsys, "train", "--config", eval_data_run / "run.json", "--resume", "--eval-data", train)
    assert_clean_error(code, err, "eval_data")


def test_resume_refuses_a_changed_eval_file(tiny_bert, split_news, tmp_path, capsys):
    train, valid = split_news
    mine = tmp_path / "valid"
    mine.mkdir()
    for text in texts_of(valid):
        (mine / f"{len(list(mine.iterdir())):03d}.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--eval-data", mine, "--max-steps", 2))
    assert_ok(code, err)
    (mine / "000.txt").write_text("Something else entirely. " * 40, encoding="utf-8")
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-steps", 3)
    assert_clean_error(code, err, "evaluation data changed")


def test_resume_on_changed_data_is_refused(capsys, tmp_path, tiny_bert, news_folder):
    data = Path(shutil.copytree(news_folder, tmp_path / "data"))
    out = tmp_path / "out"
    argv = train_argv(tiny_bert, data, out, "--max-steps", "3", "--save-every", "1")
    code, _, err = run_cli(capsys, *argv)
    assert_ok(code, err)
    run = strict_json(out / "run.json")
    assert len(run["data"]["train_fingerprint"]) == 16
    state = strict_json(sorted((out / "checkpoints").glob("step-*"))[-1] / "mlmtune_state.json")
    assert state["data"]["train_fingerprint"] == run["data"]["train_fingerprint"]
    before = snapshot(out)
    first = sorted(data.glob("*.txt"))[0]
    first.write_text(first.read_text().replace("the", "a"))
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-steps", "3")
    assert_clean_error(code, err, "--resume", "data changed")
    assert snapshot(out) == before


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


# --- training further -----------------------------------------------------------------------------

def test_resume_with_more_steps_continues_the_finished_run(tiny_bert, split_news, tmp_path, capsys):
    train, _ = split_news
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--max-steps", 4))
    assert_ok(code, err)
    first = json.loads((out / "run.json").read_text())
    code, stdout, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-steps", 8)
    assert_ok(code, err)
    assert "training further" in stdout + err
    run = json.loads((out / "run.json").read_text())
    assert run["total_steps"] == 8 and run["config"]["max_steps"] == 8
    assert [(c["at_step"], c["total_steps"], c["max_steps"]) for c in run["continued"]] == [(4, 4, 4)]
    assert "--max-steps=4" in first["command"] and run["config"]["resume"] is False
    assert run["command"] == first["command"].replace("--max-steps=4", "--max-steps=8")  # the run as it now stands
    assert json.loads((out / "results.json").read_text())["steps"] == 8
    train_records = {r["step"]: r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "train"}
    assert sorted(train_records) == list(range(1, 9))
    # the schedule rebuilt for 8 steps (linear, no warm-up): after step s the rate is 3e-3 * (8 - s) / 8,
    # so the run goes on learning instead of staying at the old schedule's 0
    assert train_records[4]["lr"] == pytest.approx(0.0)
    for s in (5, 6, 7, 8):
        assert train_records[s]["lr"] == pytest.approx(3e-3 * (8 - s) / 8)
    assert [p.name for p in sorted((out / "checkpoints").iterdir())][-1] == "step-0000008"
    # a second continuation keeps both earlier totals
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-steps", 10)
    assert_ok(code, err)
    assert [c["total_steps"] for c in json.loads((out / "run.json").read_text())["continued"]] == [4, 8]


def test_resume_with_fewer_steps_than_done_is_one_line(tiny_bert, split_news, tmp_path, capsys):
    train, _ = split_news
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--max-steps", 4))
    assert_ok(code, err)
    before = (out / "run.json").read_text()
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-steps", 3)
    assert_clean_error(code, err, "--max-steps 3", "4")
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-steps", "none",
                           "--max-time", "5s")
    assert_clean_error(code, err, "continues by steps")
    assert (out / "run.json").read_text() == before


def test_resume_with_more_epochs_continues(tiny_bert, split_news, tmp_path, capsys):
    train, _ = split_news
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--epochs", 1, "--batch-size", 64))
    assert_ok(code, err)
    per_epoch = json.loads((out / "run.json").read_text())["steps_per_epoch"]
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--epochs", 2)
    assert_ok(code, err)
    assert json.loads((out / "results.json").read_text())["steps"] == 2 * per_epoch
    assert json.loads((out / "run.json").read_text())["continued"][0]["epochs"] == 1


@pytest.mark.slow  # ~10 s: two wall-clock budgets
def test_a_budget_run_ends_mid_epoch_with_a_checkpoint_and_continues_by_time(tiny_bert, split_news, tmp_path, capsys):
    """The demo's shape: a --max-time run stops mid-epoch; its last step is saved, so it can go on."""
    train, _ = split_news
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--max-time", "1s",
                                               "--batch-size", 2, "--log-every", 1000))
    assert_ok(code, err)
    first = json.loads((out / "results.json").read_text())
    assert first["steps"] % json.loads((out / "run.json").read_text())["steps_per_epoch"] != 0  # mid-epoch
    assert (out / "checkpoints" / f"step-{first['steps']:07d}").is_dir()
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-steps", 1000)
    assert_clean_error(code, err, "continues by time")
    more = math.ceil(first["budget_seconds_spent"]) + 1  # a slow step on a busy machine overshoots the 1 s
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-time", f"{more}s")
    assert_ok(code, err)
    second = json.loads((out / "results.json").read_text())
    # the budget stops before a step that would not fit in it (training/budget.StepTimes): up to `more`
    assert second["steps"] > first["steps"]
    assert first["budget_seconds_spent"] < second["budget_seconds_spent"] <= more + second["budget_exceeded_seconds"]
    run = json.loads((out / "run.json").read_text())
    assert run["max_time_seconds"] == more and run["continued"][0]["max_time_seconds"] == 1
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-time", "1s")
    assert_clean_error(code, err, "--max-time 1s", "already spent")


def test_resume_with_added_words_continues_as_if_never_stopped(capsys, tmp_path, tiny_bert, domain_folder):
    """Four steps with a checkpoint at 2; a copy of the folder set back to that checkpoint and resumed
    must end with the same model and the same word measures (the base's, scored once before the words
    were added, survives the resume; the new rows keep their own learning rate)."""
    import shutil

    from safetensors.torch import load_file

    common = ("--add-tokens", words_file(tmp_path), "--dropout", "0", "--new-token-lr", "1e-2", "--save-every", "2",
              "--max-steps", "4", "--keep-checkpoints", "5")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, domain_folder, straight, *common))
    assert_ok(code, err)
    shutil.copytree(straight, resumed)
    from mlmtune.run.layout import complete_checkpoints

    found = complete_checkpoints(resumed)
    assert [int(p.name.split("-")[1]) for p in found] == [2, 4]
    shutil.rmtree(found[-1])  # back to step 2
    code, out, err = run_cli(capsys, *vocab_train_args(tiny_bert, domain_folder, resumed, *common, "--resume"))
    assert_ok(code, err)
    assert "resumed from" in out
    a, b = (json.loads((d / "results.json").read_text()) for d in (straight, resumed))
    for key in ("eval_perplexity", "word_bits_per_char", "base_word_bits_per_char", "pieces_per_word_after"):
        assert b[key] == pytest.approx(a[key], rel=1e-5), key
    wa, wb = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-6


def test_resuming_a_finished_run_adds_no_eval_record(capsys, run_copy):
    before = (run_copy / "metrics.jsonl").read_text()
    for _ in range(2):
        code, _, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--output-dir", run_copy, "--resume")
        assert_ok(code, err)
    assert (run_copy / "metrics.jsonl").read_text() == before


def test_resume_continues_with_the_budget_left(tmp_path, tiny_bert, news_folder):
    out = tmp_path / "resume"
    first = fit(tiny(tiny_bert, news_folder, out, max_time="2s"))
    again = fit(tiny(tiny_bert, news_folder, out, max_time="2s", resume=True))  # the budget is spent
    assert again["steps"] == first["steps"]


# --- --config COPY/run.json --resume continues COPY ---------------------------------------------------

@pytest.fixture
def relative_run(tmp_path, monkeypatch, tiny_bert, news_folder) -> Path:
    """A 1-step run started in tmp_path/start as `--data news --output-dir out1` (run.json keeps both
    relative), with a copy of it in start/copy (`cp -a out1 copy`)."""
    start = tmp_path / "start"
    start.mkdir()
    shutil.copytree(news_folder, start / "news")
    monkeypatch.chdir(start)
    fit(tiny(tiny_bert, "news", Path("out1"), max_steps=1, save_every=1))
    shutil.copytree(start / "out1", start / "copy", symlinks=True)
    return start


def test_resume_of_a_copy_continues_the_copy_and_leaves_the_original(capsys, relative_run):
    """run.json keeps output_dir as typed (out1), so `--config copy/run.json --resume` trained out1 on."""
    original = snapshot(relative_run / "out1")
    code, out, err = run_cli(capsys, "train", "--config", "copy/run.json", "--resume", "--max-steps", "2")
    assert_ok(code, err)
    assert "saved the model to copy" in out
    assert strict_json(relative_run / "copy" / "results.json")["steps"] == 2
    assert snapshot(relative_run / "out1") == original


def test_resume_of_a_copy_from_another_folder(capsys, relative_run, monkeypatch):
    """From elsewhere the run's relative --data and --output-dir named nothing ("out1 holds no run ... start
    without --resume"): both are read as the run read them, from where it started (run.json's started_in)."""
    elsewhere = relative_run.parent / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = run_cli(capsys, "train", "--config", relative_run / "copy" / "run.json", "--resume",
                             "--max-steps", "2")
    assert_ok(code, err)
    assert strict_json(relative_run / "copy" / "results.json")["steps"] == 2
    assert strict_json(relative_run / "out1" / "results.json")["steps"] == 1
    assert list(elsewhere.iterdir()) == []


def test_resume_with_another_output_dir_than_the_run_json_names_both(capsys, relative_run):
    before = snapshot(relative_run)
    code, _, err = run_cli(capsys, "train", "--config", "copy/run.json", "--resume", "--output-dir", "out1",
                           "--max-steps", "2")
    assert_clean_error(code, err, "copy", "out1", "--output-dir")
    assert snapshot(relative_run) == before


def test_evaluate_and_resume_read_a_run_json_alike(capsys, relative_run, monkeypatch):
    """One reading of a run.json for both: from another folder, evaluate --config scores the copy's own
    model on the run's own text, as it did from where the run started."""
    code, here, err = run_cli(capsys, "evaluate", "--config", "copy/run.json", "--json")
    assert code == 0, err
    elsewhere = relative_run.parent / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, there, err = run_cli(capsys, "evaluate", "--config", relative_run / "copy" / "run.json", "--json")
    assert code == 0, err
    assert json.loads(there)["perplexity"] == pytest.approx(json.loads(here)["perplexity"])
    assert json.loads(there)["model"] == str(relative_run / "copy")
