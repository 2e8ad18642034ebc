"""A time budget (training/budget.py, --max-time): the run stops when it is spent, saves a checkpoint,
and ends its learning-rate schedule; --max-steps beside it caps the run."""

from __future__ import annotations

import json
import time

import pytest
from helpers import records, tiny

import mlmtune.training.loop as loop
from mlmtune.run.layout import STATE_FILE
from mlmtune.training.budget import StepTimes, Totals
from mlmtune.training.fit import fit


def test_max_time_stops_saves_and_finishes_its_schedule(tmp_path, tiny_bert, news_folder):
    out = tmp_path / "budget"
    results = fit(tiny(tiny_bert, news_folder, out, max_time="3s", warmup_ratio=0.1))
    assert results["steps"] > 0 and results["max_time_seconds"] == 3.0
    # stopped because the next step (as long as the slowest recent one) would not have fitted; past the
    # budget only as far as results.json says
    assert (out / "checkpoints" / f"step-{results['steps']:07d}").is_dir()  # a checkpoint at the end
    state = json.loads((out / "checkpoints" / f"step-{results['steps']:07d}" / STATE_FILE).read_text())
    assert results["budget_seconds_spent"] + state["step_seconds"] >= 3.0 - 0.05
    assert results["budget_seconds_spent"] <= 3.0 + results["budget_exceeded_seconds"] + 1e-3
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


# --- the budget holds: no step is started that would not fit -----------------------------------------

def slow_steps(monkeypatch, seconds: float) -> None:
    """Every training step takes `seconds` more, on a clock moved forward inside the step (after the loop
    read its start): a loaded machine's slow steps, without sleeping, and far above the real step's time."""
    real_clock, real_step, offset = time.perf_counter, loop.train_step, [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: real_clock() + offset[0])

    def slow(*args, **kwargs):
        offset[0] += seconds
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", slow)


def test_a_budget_stops_before_a_step_that_would_not_fit(tmp_path, tiny_bert, news_folder, monkeypatch):
    """Steps of ~100 s in a 250 s budget: a third would end near 300 s. `--max-time 40s` trained 51.7 s under
    load (a step took ~10 s): the loop looked at the budget only after a step had run past it. (The real
    time of a step, up to seconds on a loaded machine, is small beside the fake 100 s.)"""
    slow_steps(monkeypatch, 100.0)
    out = tmp_path / "budget"
    results = fit(tiny(tiny_bert, news_folder, out, max_time="250s"))
    assert results["steps"] == 2
    assert 200.0 < results["budget_seconds_spent"] <= 250.0 and results["budget_exceeded_seconds"] == 0.0
    assert (out / "checkpoints" / "step-0000002").is_dir()  # the last step is still evaluated and saved
    assert [r for r in records(out) if r["type"] == "eval"][-1]["step"] == 2
    train = [r for r in records(out) if r["type"] == "train"]
    assert train[-1]["lr"] == 0.0  # the schedule finished, however few steps fitted
    again = fit(tiny(tiny_bert, news_folder, out, max_time="250s", resume=True))  # a finished run: nothing to do
    assert again["steps"] == 2


def test_a_first_step_past_the_budget_is_reported(tmp_path, tiny_bert, news_folder, monkeypatch):
    """The first step has nothing to predict it by: when it runs past the budget, results.json says how far."""
    slow_steps(monkeypatch, 100.0)
    results = fit(tiny(tiny_bert, news_folder, tmp_path / "over", max_time="50s"))
    assert results["steps"] == 1
    assert results["budget_exceeded_seconds"] == pytest.approx(results["budget_seconds_spent"] - 50.0, abs=2e-3)
    assert results["budget_exceeded_seconds"] >= 50.0
    assert json.loads((tmp_path / "over" / "results.json").read_text())["budget_exceeded_seconds"] >= 50.0


def test_step_times_expect_the_slowest_recent_step_alike_on_every_process():
    times = StepTimes(10.0)
    assert times.next_step == 0.0  # nothing to go by yet
    for agreed in (11.0, 14.0, 15.0, 16.0):
        times.add(agreed)
    assert times.next_step == 3.0  # of the last three (3, 1, 1): the slowest
    times.add(16.01, learned=False)  # an empty batch (no forward) is no measure of a step
    times.add(17.01)
    assert times.next_step == 1.0
    totals = Totals(None, 20.0, 0)
    assert not totals.finished(5, 18.9, 1.0) and totals.finished(5, 19.1, 1.0) and totals.finished(5, 20.0)
    assert not Totals(None, None, 10).finished(5, 1e9, 1e9)


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
