"""Writing the output folder (run/files.py): JSON without NaN or Infinity, and a full disk as one line
that leaves no half-written file or temporary behind."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from helpers import error_after_bar, run_cli, strict_json, train_argv


def test_json_files_never_hold_nan(tmp_path):
    from mlmtune.run.files import atomic_write_json

    atomic_write_json(tmp_path / "x.json", {"a": float("inf"), "b": [float("nan"), 1.5], "c": {"d": -float("inf")}})
    assert strict_json(tmp_path / "x.json") == {"a": None, "b": [None, 1.5], "c": {"d": None}}


def test_results_are_strict_json(finished_run):
    for name in ("results.json", "run.json"):
        strict_json(finished_run / name)
    for line in (finished_run / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"metrics.jsonl holds {c}"))


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
