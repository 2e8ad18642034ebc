"""The training loop across processes (training/loop.py), torchrun on CPU (gloo): 2 processes x batch 8
learn what 1 process x batch 16 learns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import free_port

from mlmtune.run.metrics_log import read_metrics

pytestmark = pytest.mark.slow


def train_args(model, data, out, batch_size):
    return ["train", "--model", model, "--data", data, "--output-dir", str(out), "--chunk-size", "64",
            "--batch-size", str(batch_size), "--eval-size", "40", "--lr", "3e-3", "--max-steps", "12",
            "--warmup-steps", "3", "--log-every", "1", "--precision", "fp32", "--no-report", "--seed", "3"]


def run(cmd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_two_processes_match_one(no_dropout_bert, news_folder, tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    two = run([torchrun, "--nproc_per_node", "2", "--master_port", free_port(), "-m", "mlmtune",
               *train_args(no_dropout_bert, news_folder, tmp_path / "two", 8)])
    run([sys.executable, "-m", "mlmtune", *train_args(no_dropout_bert, news_folder, tmp_path / "one", 16)])

    r1 = json.loads((tmp_path / "one" / "results.json").read_text())
    r2 = json.loads((tmp_path / "two" / "results.json").read_text())
    assert r2["processes"] == 2 and r1["processes"] == 1
    assert json.loads((tmp_path / "two" / "run.json").read_text())["processes"] == 2
    # same global batches, same masks, same token-weighted loss -> same model
    assert r2["eval_perplexity"] == pytest.approx(r1["eval_perplexity"], rel=1e-3)
    e1 = [r for r in read_metrics(tmp_path / "one" / "metrics.jsonl") if r["type"] == "eval"]
    e2 = [r for r in read_metrics(tmp_path / "two" / "metrics.jsonl") if r["type"] == "eval"]
    # evaluation is gathered over both processes with no example twice
    assert [r.get("masked_tokens") for r in e2] == [r.get("masked_tokens") for r in e1]
    assert [r["subset_masked_tokens"] for r in e2] == [r["subset_masked_tokens"] for r in e1]  # interim ones too
    # the schedule counted 12 optimizer steps, not 24: the last lr is 0 in both runs
    t1 = [r for r in read_metrics(tmp_path / "one" / "metrics.jsonl") if r["type"] == "train"]
    t2 = [r for r in read_metrics(tmp_path / "two" / "metrics.jsonl") if r["type"] == "train"]
    assert [r["step"] for r in t2] == list(range(1, 13))
    assert [r["lr"] for r in t2] == pytest.approx([r["lr"] for r in t1])
    assert t2[-1]["lr"] == 0.0
    for stream in (two.stdout + two.stderr,):
        assert "Traceback" not in stream and "abort" not in stream.lower()
        assert "destroy_process_group" not in stream
    assert stream.count("saved the model to") == 1  # only the main process writes and speaks


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_two_processes_grow_the_same_warm_head(tiny_encoder, news_folder, tmp_path):
    """A headless encoder: every process warm-starts the head on the same batches, so 2 x 8 still
    learns what 1 x 16 learns (--dropout 0: dropout draws would differ with the split)."""
    torchrun = str(Path(sys.executable).parent / "torchrun")
    extra = ["--dropout", "0", "--max-steps", "6", "--head-init", "prefit"]
    run([torchrun, "--nproc_per_node", "2", "--master_port", free_port(), "-m", "mlmtune",
         *train_args(tiny_encoder, news_folder, tmp_path / "two", 8), *extra])
    run([sys.executable, "-m", "mlmtune", *train_args(tiny_encoder, news_folder, tmp_path / "one", 16), *extra])
    r1 = json.loads((tmp_path / "one" / "results.json").read_text())
    r2 = json.loads((tmp_path / "two" / "results.json").read_text())
    assert r1["warm_start_perplexity"] < r1["baseline_perplexity"]
    assert r2["warm_start_perplexity"] == pytest.approx(r1["warm_start_perplexity"], rel=1e-4)
    assert r2["eval_perplexity"] == pytest.approx(r1["eval_perplexity"], rel=1e-3)
