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


# --- when a run evaluates: ~8 points over the plan, so the curves are curves (issue 20) ---------------

def test_evaluations_default_to_eight_over_a_plan_of_steps_or_epochs():
    from mlmtune.config import build_config
    from mlmtune.training.budget import EVALUATIONS, plan_totals

    assert EVALUATIONS == 8
    steps = plan_totals(build_config({"model": "m", "data": ["d"], "max_steps": 120}), steps_per_epoch=50)
    assert steps.eval_every == 15 and [s for s in range(1, 121) if steps.eval_due(s, 0, 0)] == list(range(15, 121, 15))
    epochs = plan_totals(build_config({"model": "m", "data": ["d"], "epochs": 2}), steps_per_epoch=20)
    assert epochs.eval_every == 5 and epochs.evaluations() == "every 5 steps"  # 40 steps / 8
    tiny_plan = plan_totals(build_config({"model": "m", "data": ["d"], "max_steps": 3}), steps_per_epoch=50)
    assert tiny_plan.eval_every == 1 and tiny_plan.evaluations() == "after every step"  # never 0
    given = plan_totals(build_config({"model": "m", "data": ["d"], "max_steps": 120, "eval_every": 50}), 50)
    assert given.eval_every == 50  # --eval-every decides when given


def test_a_budget_evaluates_at_each_eighth_of_it():
    from mlmtune.config import build_config
    from mlmtune.training.budget import plan_totals

    totals = plan_totals(build_config({"model": "m", "data": ["d"], "max_time": "80s"}), steps_per_epoch=50)
    assert totals.by_time and totals.eval_every is None
    # a step that crosses 10 s, 20 s, ... of the 80 s budget is followed by an evaluation; one within a tenth is not
    assert totals.eval_due(7, 9.5, 10.2) and not totals.eval_due(8, 10.2, 11.0) and totals.eval_due(30, 39.9, 40.0)
    assert "8th of the 80 s budget" in totals.evaluations()
