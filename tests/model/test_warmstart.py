"""Issue 12: a grown head starts warm (unigram bias, pre-fit on cached frozen features), and a run
can be given a time budget whose schedule follows the elapsed share."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import assert_clean_error, assert_ok, records, run_cli, tiny, train_argv

from mlmtune.config import build_config, parse_duration
from mlmtune.errors import ConfigError
from mlmtune.model.warmstart import unigram_log_frequency
from mlmtune.training.fit import fit
from mlmtune.training.optimizer import BudgetSchedule

# --- durations and the budget schedule ----------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [("90s", 90), ("6m", 360), ("1.5h", 5400), ("2", 2), (" 10 min ", 600),
                                           ("1d", 86400), ("1s", 1)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "0s", "-5m", "abc", "1e999s", "5 weeks", "", "nan", "inf", "31d", "0.5s", "1e-320"])
def test_parse_duration_refuses(text):
    with pytest.raises(ConfigError, match="--max-time"):
        parse_duration(text)


def test_budget_schedule_warms_up_and_ends_at_zero():
    s = BudgetSchedule(warmup_share=0.1)
    values = []
    for p in (0.0, 0.05, 0.1, 0.55, 1.0, 1.3):
        s.progress = p
        values.append(s(123))
    assert values == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0, 0.0])
    s = BudgetSchedule(warmup_steps=10)
    s.progress = 0.5
    assert s(5) == pytest.approx(0.25) and s(20) == pytest.approx(0.5)


# --- the unigram bias ---------------------------------------------------------------------------

def test_unigram_bias_is_the_log_frequency():
    tokens = np.array([5, 5, 5, 7, 1, 1])  # 1 is a special token: never a target
    bias = unigram_log_frequency(tokens, 10, never=[1])
    probs = bias.exp()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert probs[5] > probs[7] > probs[0]  # seen thrice > once > never
    assert probs[1] == pytest.approx(probs[0].item())  # the special token counts as unseen
    assert bias[5].item() == pytest.approx(math.log((3 + 1) / (4 + 10)))


# --- warm start on a model without a head -------------------------------------------------------

@pytest.mark.parametrize("head_init", ["warm", "prefit"])
def test_warm_start_lowers_perplexity_and_is_recorded(tmp_path, tiny_encoder, news_folder, head_init):
    out = tmp_path / "warm"
    results = fit(tiny(tiny_encoder, news_folder, out, max_steps=2, head_init=head_init))
    fresh, warm = results["baseline_perplexity"], results["warm_start_perplexity"]
    assert warm < fresh / 5  # a fresh head sits near the vocabulary size; the bias alone beats that
    kinds = [(r["type"], r["step"]) for r in records(out) if r["type"] != "train"]
    assert kinds[:2] == [("eval", 0), ("warm_start", 0)]
    assert json.loads((out / "results.json").read_text())["warm_start_perplexity"] == pytest.approx(warm)
    # reproducible from the seed
    again = fit(tiny(tiny_encoder, news_folder, tmp_path / "again", max_steps=2, head_init=head_init))
    assert again["warm_start_perplexity"] == pytest.approx(warm, rel=1e-6)


def test_random_head_init_skips_the_warm_start(tmp_path, tiny_encoder, news_folder):
    results = fit(tiny(tiny_encoder, news_folder, tmp_path / "random", max_steps=2, head_init="random"))
    assert results["warm_start_perplexity"] is None
    assert "warm_start" not in {r["type"] for r in records(tmp_path / "random")}


def test_head_init_warm_on_a_model_with_a_head_is_a_note(capsys, tmp_path, tiny_bert, news_folder):
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--head-init", "prefit"))
    assert_ok(code, err)
    assert "has its own MLM head, so --head-init prefit leaves it as it is" in stdout
    assert json.loads((out / "results.json").read_text())["warm_start_perplexity"] is None


def test_the_prefit_trains_only_the_new_head(tmp_path, tiny_encoder, news_folder, monkeypatch):
    """The encoder is frozen during the pre-fit: only the new parameters change."""
    import mlmtune.model.warmstart as w
    from mlmtune.model.load import load_masked_lm

    seen = {}
    real = w.warm_start_head

    def spy(model, *args, **kwargs):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        report = real(model, *args, **kwargs)
        seen["changed"] = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
        seen["report"] = report
        return report

    monkeypatch.setattr(w, "warm_start_head", spy)
    fit(tiny(tiny_encoder, news_folder, tmp_path / "spy", max_steps=1, head_init="prefit"))
    new = set(load_masked_lm(tiny_encoder).new_parameters)
    assert seen["changed"] and seen["changed"] <= new
    assert seen["report"].features > 0 and seen["report"].loss_after < seen["report"].loss_before


# --- the time budget ------------------------------------------------------------------------------

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


def test_resume_continues_with_the_budget_left(tmp_path, tiny_bert, news_folder):
    out = tmp_path / "resume"
    first = fit(tiny(tiny_bert, news_folder, out, max_time="2s"))
    again = fit(tiny(tiny_bert, news_folder, out, max_time="2s", resume=True))  # the budget is spent
    assert again["steps"] == first["steps"]


@pytest.mark.parametrize("value", ["0", "-5m", "abc", "1e999s", "0s"])
def test_bad_max_time_writes_nothing(capsys, tmp_path, tiny_bert, news_folder, value):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, f"--max-time={value}"))
    assert_clean_error(code, err, "--max-time")
    assert not out.exists()


def test_bad_head_init(capsys, tmp_path, tiny_bert, news_folder):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "o", "--head-init", "hot"))
    assert_clean_error(code, err, "--head-init")


# --- --dropout --------------------------------------------------------------------------------------

def test_dropout_zero_trains_like_a_model_without_dropout(tmp_path, tiny_bert, no_dropout_bert, news_folder):
    """tiny_bert and no_dropout_bert start from the same weights; only their dropout differs."""
    from safetensors.torch import load_file

    def weights(model, name, **extra):
        fit(tiny(model, news_folder, tmp_path / name, max_steps=3, **extra))
        return load_file(str(tmp_path / name / "model.safetensors"))

    off = weights(tiny_bert, "off", dropout=0.0)
    plain = weights(no_dropout_bert, "plain")
    kept = weights(tiny_bert, "kept")
    assert all(torch.allclose(off[k], plain[k], atol=1e-6) for k in plain)
    assert any(not torch.allclose(kept[k], plain[k], atol=1e-6) for k in plain)
    saved = json.loads((tmp_path / "off" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == 0.1 and saved["attention_probs_dropout_prob"] == 0.1


@pytest.mark.parametrize("value", ["1", "-0.1", "nan", "1.5"])
def test_bad_dropout(capsys, tmp_path, tiny_bert, news_folder, value):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "o", f"--dropout={value}"))
    assert_clean_error(code, err, "--dropout")


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


def test_the_last_line_says_higher_when_it_is():
    from mlmtune.cli.train import done_line

    base = {"train_tokens_per_second": 1.0, "train_seconds": 1.0, "steps": 3, "eval_accuracy": 0.1}
    assert "(1.5x higher than the warm start)" in done_line({**base, "baseline_perplexity": 900.0,
                                                              "warm_start_perplexity": 100.0, "eval_perplexity": 150.0})
    assert "(2.0x lower)" in done_line({**base, "baseline_perplexity": 300.0, "warm_start_perplexity": None,
                                        "eval_perplexity": 150.0})


def test_resume_takes_the_same_budget_written_otherwise():
    from mlmtune.config import resume_mismatch

    cfg = build_config({"max_time": "20.0s"})
    assert resume_mismatch({"max_time": "20s"}, cfg) is None
    # another budget is no mismatch but a new plan: continuation.py checks it (tests/test_hf_habits.py)
    assert resume_mismatch({"max_time": "30s"}, cfg) is None
