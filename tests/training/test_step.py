"""One optimizer step (training/step.py): accumulating micro-batches, and the gradient norm before
clipping."""

from __future__ import annotations

import pytest
from helpers import assert_ok, run_cli, tiny_run, train_args

from mlmtune.run.metrics_log import read_metrics
from mlmtune.training.fit import fit


def test_grad_norm_is_the_norm_before_clipping(tiny_bert, split_news, tmp_path, capsys):
    train, _ = split_news
    for clip in ("1e-4", "none"):
        out = tmp_path / clip
        code, _, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--max-steps", 3,
                                                   "--max-grad-norm", clip))
        assert_ok(code, err)
        records = [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "train"]
        assert len(records) == 3 and all(r["grad_norm"] > 1e-3 for r in records)  # far above the clip
        assert all(isinstance(r["time"], float) for r in records)


def test_accumulating_two_batches_of_8_equals_one_batch_of_16(no_dropout_bert, news_folder, tmp_path):
    one = fit(tiny_run(no_dropout_bert, news_folder, tmp_path / "one", batch_size=16, max_steps=6))
    two = fit(tiny_run(no_dropout_bert, news_folder, tmp_path / "two", batch_size=8, gradient_accumulation_steps=2,
                       max_steps=6))
    assert two["train_tokens"] == one["train_tokens"]
    assert two["eval_perplexity"] == pytest.approx(one["eval_perplexity"], rel=1e-4)
