"""One optimizer step (training/step.py): accumulating micro-batches, and the gradient norm before
clipping."""

from __future__ import annotations

import re

import pytest
from helpers import assert_ok, run_cli, tiny_run, train_args

from mlmtune.run.metrics_log import read_metrics
from mlmtune.training.fit import fit


def test_grad_norm_is_the_norm_before_clipping(tiny_bert, split_news, tmp_path, capsys):
    train, _ = split_news
    for clip in ("1e-4", "none"):
        out = tmp_path / clip
        code, said, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--max-steps", 3,
                                                      "--max-grad-norm", clip))
        assert_ok(code, err)
        records = [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "train"]
        assert len(records) == 3 and all(r["grad_norm"] > 1e-3 for r in records)  # far above the clip
        assert all(isinstance(r["time"], float) for r in records)
        # stderr is not a terminal here (a pipe, a log file): no progress bar's "\r" frames; the evaluation
        # lines say how far the run is instead
        frames = [t[max(0, i - 120):i + 60] for t in (err, said) for i, c in enumerate(t) if c == "\r"]
        assert not frames, frames
        assert re.search(r"^eval step 3 of 3 \(epoch 0\.\d+\): perplexity", said, re.M), said


def test_accumulating_two_batches_of_8_equals_one_batch_of_16(no_dropout_bert, news_folder, tmp_path):
    one = fit(tiny_run(no_dropout_bert, news_folder, tmp_path / "one", batch_size=16, max_steps=6))
    two = fit(tiny_run(no_dropout_bert, news_folder, tmp_path / "two", batch_size=8, gradient_accumulation_steps=2,
                       max_steps=6))
    assert two["train_tokens"] == one["train_tokens"]
    assert two["eval_perplexity"] == pytest.approx(one["eval_perplexity"], rel=1e-4)


def test_a_resumed_state_counts_its_sessions_and_their_time():
    """A resumed run's total time is every session's (results.json total_wall_seconds, the report)."""
    import time

    from mlmtune.training.step import TrainState

    first = TrainState(step=5, session_start=time.perf_counter() - 100)
    saved = {"step": 5, **first.counters()}
    assert saved["sessions"] == 1 and saved["wall_seconds"] == pytest.approx(100, abs=1)
    second = TrainState.restored(saved, session_start=time.perf_counter() - 30)
    assert second.sessions == 2 and second.wall_seconds == pytest.approx(130, abs=1)
    # a checkpoint of an older mlmtune (no sessions, no wall_seconds) counts as one session of unknown time
    old = TrainState.restored({"step": 5, "tokens": 10}, session_start=time.perf_counter())
    assert old.sessions == 2 and old.wall_seconds == pytest.approx(0, abs=1)
