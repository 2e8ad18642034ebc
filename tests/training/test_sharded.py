"""Sharded runs and jobs across nodes, torchrun on CPU (gloo): --fsdp ends where plain processes (DDP)
end and saves one full model, the tied decoder once; two simulated nodes with two output folders (as
on node-local disks) are refused in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import free_port

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (Path(sys.executable).parent / "torchrun").exists() and not shutil.which("torchrun"),
                                 reason="torchrun not installed")]
TORCHRUN = str(Path(sys.executable).parent / "torchrun")


def env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def train_args(model, data, out, *extra):
    return ["-m", "mlmtune", "train", "--model", model, "--data", data, "--output-dir", str(out), "--chunk-size", "64",
            "--batch-size", "4", "--eval-size", "16", "--lr", "3e-3", "--max-steps", "6", "--log-every", "1",
            "--precision", "fp32", "--no-report", "--seed", "3", *extra]


def test_fsdp_ends_where_ddp_ends_and_saves_one_full_model(no_dropout_bert, news_folder, tmp_path):
    from safetensors.torch import load_file

    for name, extra in (("ddp", []), ("fsdp", ["--fsdp"])):
        proc = subprocess.run([TORCHRUN, "--nproc_per_node", "2", "--master_port", free_port(),
                               *train_args(no_dropout_bert, news_folder, tmp_path / name, *extra)],
                              capture_output=True, text=True, env=env(), timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr and (proc.stdout + proc.stderr).count("saved the model to") == 1
    ddp, fsdp = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("ddp", "fsdp"))
    assert (ddp["strategy"], fsdp["strategy"]) == ("ddp", "fsdp")
    assert fsdp["eval_perplexity"] == pytest.approx(ddp["eval_perplexity"], rel=1e-3)
    a, b = (load_file(tmp_path / n / "model.safetensors") for n in ("ddp", "fsdp"))
    assert set(a) == set(b)  # the tied decoder not saved as a second copy
    assert (tmp_path / "fsdp" / "model.safetensors").stat().st_size == (tmp_path / "ddp" / "model.safetensors").stat().st_size
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-3

    from transformers import pipeline

    fill = pipeline("fill-mask", model=str(tmp_path / "fsdp"))
    assert len(fill(f"The market {fill.tokenizer.mask_token} today.")) == 5


def test_two_nodes_with_two_output_folders_are_refused_in_one_line(no_dropout_bert, news_folder, tmp_path):
    """Each simulated node (torchrun --nnodes 2 on 127.0.0.1) writes into a folder of its own, as on a
    disk each node keeps for itself: the job stops before training with one error line, and writes no model."""
    port = free_port()
    procs = [subprocess.Popen([TORCHRUN, "--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
                               "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "local-disks", "--node_rank", str(rank),
                               *train_args(no_dropout_bert, news_folder, tmp_path / f"node{rank}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
             for rank in (0, 1)]
    outputs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode != 0 for p in procs)
    both = "".join(out + err for out, err in outputs)  # c10d gives rank 0 to either node
    errors = [line for line in both.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not one folder for the whole job" in errors[0] and "rank 1" in errors[0], both[-3000:]
    # torchrun prints its own ChildFailedError for a worker that exits non-zero; none from mlmtune's code
    assert "/mlmtune/" not in "".join(line for line in both.splitlines() if line.lstrip().startswith("File "))
    assert not any((tmp_path / f"node{rank}" / "model.safetensors").exists() for rank in (0, 1))


def worker_of_rank(launcher: subprocess.Popen, rank: int) -> int | None:
    """The pid of the torchrun worker whose environment says RANK=rank (a child of the launcher)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == launcher.pid and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker through /proc")
def test_a_stopped_peer_ends_the_job_within_the_timeout_naming_it(no_dropout_bert, news_folder, tmp_path):
    """SIGSTOP of rank 1 mid-training: the job ends within --dist-timeout (and a margin for the launcher),
    not after torch's 30 minutes, with one error line naming rank 1."""
    import signal
    import time

    out = tmp_path / "run"
    args = train_args(no_dropout_bert, news_folder, out, "--dist-timeout", "10s")
    args[args.index("--max-steps") + 1] = "100000"
    launcher = subprocess.Popen([TORCHRUN, "--nproc_per_node", "2", "--master_port", free_port(), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        deadline = time.time() + 600
        while not ((out / "metrics.jsonl").is_file() and '"train"' in (out / "metrics.jsonl").read_text()):
            assert launcher.poll() is None and time.time() < deadline, "training did not start"
            time.sleep(0.5)
        victim = worker_of_rank(launcher, 1)
        assert victim is not None
        os.kill(victim, signal.SIGSTOP)
        stopped = time.time()
        _, err = launcher.communicate(timeout=300)
        took = time.time() - stopped
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0
    assert took < 10 + 50, took  # the timeout, a beat or two, the launcher's own stop
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "rank 1" in errors[0] and "stopped answering" in errors[0] and "--dist-timeout" in errors[0]
