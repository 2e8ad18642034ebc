"""Precision on the device (model/device.py): --precision auto takes bf16 only where the CPU has it,
and fp16 without a GPU runs (and is recorded as) fp32, saying so."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import assert_ok, run_cli, train_argv


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available() or torch.backends.mps.is_available()


@pytest.mark.skipif(_has_gpu(), reason="fp16 runs on a GPU")
def test_fp16_on_a_cpu_runs_and_records_fp32(capsys, tiny_bert, news_folder, tmp_path):
    out = tmp_path / "out"
    argv = train_argv(tiny_bert, news_folder, out)
    argv[argv.index("--precision") + 1] = "fp16"
    code, _, err = run_cli(capsys, *argv)
    assert_ok(code, err)
    assert json.loads((out / "run.json").read_text())["mixed_precision"] == "no"
    assert json.loads((out / "results.json").read_text())["precision"] == "no"


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_takes_bf16_only_where_the_cpu_has_it(monkeypatch, native):
    import mlmtune.model.device as modeling

    monkeypatch.setattr(modeling.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(modeling, "cpu_has_native_bf16", lambda: native)
    assert modeling.resolve_precision("auto") == ("bf16" if native else "no")
    assert modeling.resolve_precision("fp32") == "no"
    assert modeling.resolve_precision("bf16") == "bf16"  # asked for: honoured, with a note where it is emulated
    note = modeling.precision_note("bf16", torch.device("cpu"))
    assert (note is None) == native
    if note:
        assert "--precision auto or fp32" in note
    assert modeling.precision_note("no", torch.device("cpu")) is None


def test_fp16_without_a_gpu_runs_fp32_and_says_so(monkeypatch):
    import mlmtune.model.device as modeling

    monkeypatch.setattr(modeling, "gpu_available", lambda: False)
    assert modeling.resolve_precision("fp16") == "no"  # what Accelerate really runs on a CPU (and run.json records)
    note = modeling.precision_note("no", torch.device("cpu"), requested="fp16")
    assert note is not None and "fp16 needs a GPU" in note and "fp32" in note and "\n" not in note
    assert modeling.precision_note("no", torch.device("cpu"), requested="fp32") is None
    assert modeling.precision_note("no", torch.device("cpu"), requested="auto") is None
    monkeypatch.setattr(modeling, "gpu_available", lambda: True)
    assert modeling.resolve_precision("fp16") == "fp16"


@pytest.mark.parametrize("ampere", [True, False])
def test_auto_precision_on_a_gpu_is_bf16_in_hardware_else_fp16(monkeypatch, ampere):
    """A V100 or T4 computes bf16 only by emulation (slower than fp32), which torch's default
    is_bf16_supported() counts as support: auto takes fp16 with loss scaling there."""
    import mlmtune.model.device as modeling

    monkeypatch.setattr(modeling.torch.cuda, "is_available", lambda: True)
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return ampere or including_emulation

    monkeypatch.setattr(modeling.torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert modeling.resolve_precision("auto") == ("bf16" if ampere else "fp16")
    assert asked == [False]
