"""Lose nothing: SIGKILL at arbitrary points + --resume ends with the uninterrupted model; SIGTERM/SIGINT
save a checkpoint and exit 143/130."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mlmtune.run.layout import complete_checkpoints
from mlmtune.run.metrics_log import read_metrics

pytestmark = pytest.mark.slow


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
