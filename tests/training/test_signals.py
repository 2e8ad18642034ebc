"""SIGTERM during a run (training/signals.py): exit 143, and the caller's handler is back."""

from __future__ import annotations

import importlib
import os
import signal

from helpers import run_cli, train_argv


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
