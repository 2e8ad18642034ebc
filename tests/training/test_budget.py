"""A time budget (training/budget.py, --max-time): the run stops when it is spent, saves a checkpoint,
and ends its learning-rate schedule; --max-steps beside it caps the run."""

from __future__ import annotations

import json

import pytest
from helpers import records, tiny

from mlmtune.training.fit import fit


def test_max_time_stops_saves_and_finishes_its_schedule(tmp_path, tiny_bert, news_folder):
    out = tmp_path / "budget"
    results = fit(tiny(tiny_bert, news_folder, out, max_time="3s", warmup_ratio=0.1))
    assert results["steps"] > 0 and results["max_time_seconds"] == 3.0
    assert 3.0 <= results["budget_seconds_spent"] < 3.0 + 5.0
    assert (out / "checkpoints" / f"step-{results['steps']:07d}").is_dir()  # a checkpoint at the end
    train = [r for r in records(out) if r["type"] == "train"]
    assert train[-1]["step"] == results["steps"] and train[-1]["lr"] < 0.25 * 5e-5  # decayed near the end
    last_eval = [r for r in records(out) if r["type"] == "eval"][-1]
    assert last_eval["step"] == results["steps"]
    run = json.loads((out / "run.json").read_text())
    assert run["total_steps"] is None and run["max_time_seconds"] == 3.0


def test_max_time_and_max_steps_stop_at_the_first(tmp_path, tiny_bert, news_folder):
    results = fit(tiny(tiny_bert, news_folder, tmp_path / "both", max_time="1h", max_steps=3))
    assert results["steps"] == 3


def test_a_budget_the_warm_start_spends_still_scores_the_saved_model(tmp_path, tiny_encoder, news_folder, monkeypatch):
    """0 training steps: the final figures are the warm-started model's, not the fresh head's."""
    import time as time_module

    import mlmtune.model.warmstart as w

    real = w.warm_start_head

    def slow(*args, **kwargs):
        time_module.sleep(1.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(w, "warm_start_head", slow)
    out = tmp_path / "spent"
    results = fit(tiny(tiny_encoder, news_folder, out, max_time="1s"))
    assert results["steps"] == 0
    assert results["eval_perplexity"] == pytest.approx(results["warm_start_perplexity"], rel=1e-6)
    assert results["eval_perplexity"] < results["baseline_perplexity"]
    last = [r for r in records(out) if r["type"] == "eval"][-1]
    assert last["perplexity"] == pytest.approx(results["warm_start_perplexity"], rel=1e-6)
