"""fit(config) end to end on tiny models (training/fit.py): loss falls, the output folder is complete and
loads in pipeline(), the same seed gives the same run, results.json's figures, and weights that are
not finite are never saved."""

import json
import math
import re

import pytest
from helpers import run_cli, tiny_run, train_argv

from mlmtune.run.metrics_log import read_metrics
from mlmtune.training.fit import fit

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_training_lowers_eval_perplexity_and_writes_a_complete_folder(tiny_bert, news_folder, tmp_path):
    out = tmp_path / "run"
    results = fit(tiny_run(tiny_bert, news_folder, out))
    records = read_metrics(out / "metrics.jsonl")
    evals = [r for r in records if r["type"] == "eval"]
    trains = [r for r in records if r["type"] == "train"]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == 30
    assert evals[-1]["perplexity"] < 0.5 * evals[0]["perplexity"]
    assert trains[-1]["loss"] < trains[0]["loss"]
    assert all(r["tokens_per_second"] > 0 for r in trains)
    assert evals[0]["masked_tokens"] == evals[-1]["masked_tokens"]  # the same fixed masks
    assert math.isclose(results["eval_perplexity"], evals[-1]["perplexity"])
    saved = json.loads((out / "results.json").read_text())
    for key in ("train_tokens_per_second", "train_seconds", "steps", "eval_perplexity", "eval_accuracy", "peak_rss_mb"):
        assert key in saved
    # the phases are timed separately and fit inside the whole
    assert 0 < saved["prepare_seconds"] and 0 < saved["train_seconds"] and 0 < saved["eval_seconds"]
    assert saved["prepare_seconds"] + saved["train_seconds"] + saved["eval_seconds"] <= saved["wall_seconds"]
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["model"] == tiny_bert and run["processes"] == 1 and "transformers" in run["versions"]
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_saved_folder_loads_in_fill_mask_pipeline(tiny_bert, news_folder, tmp_path):
    from transformers import pipeline

    out = tmp_path / "run"
    fit(tiny_run(tiny_bert, news_folder, out, max_steps=5))
    fill = pipeline("fill-mask", model=str(out), device="cpu")
    preds = fill("The [MASK] is happy.", top_k=3)
    assert len(preds) == 3 and all("token_str" in p for p in preds)


def test_same_seed_same_run(tiny_encoder, news_folder, tmp_path):
    a = fit(tiny_run(tiny_encoder, news_folder, tmp_path / "a", max_steps=6))
    b = fit(tiny_run(tiny_encoder, news_folder, tmp_path / "b", max_steps=6))
    assert a["eval_perplexity"] == b["eval_perplexity"]


def test_whole_word_masking_and_line_by_line_train(tiny_bert, news_folder, tmp_path):
    results = fit(tiny_run(tiny_bert, news_folder, tmp_path / "w", max_steps=4, whole_word_mask=True,
                           line_by_line=True, max_length=64))
    assert math.isfinite(results["eval_perplexity"])


@pytest.mark.slow
def test_compiled_training_saves_real_weights(tiny_bert, news_folder, tmp_path):
    from mlmtune.eval.compare import evaluate

    out = tmp_path / "compiled"
    results = fit(tiny_run(tiny_bert, news_folder, out, max_steps=3, compile=True))
    again = evaluate(str(out), news_folder, chunk_size=64, eval_size=40, seed=0, precision="fp32")
    assert again.perplexity == pytest.approx(results["eval_perplexity"], rel=1e-4)


def test_results_carry_baseline_accuracy_and_utc_times(eval_data_run):
    results = json.loads((eval_data_run / "results.json").read_text())
    baseline = next(r for r in read_metrics(eval_data_run / "metrics.jsonl") if r["type"] == "eval" and r["step"] == 0)
    assert results["baseline_accuracy"] == baseline["accuracy"]
    assert ISO_UTC.match(results["started_at"]) and ISO_UTC.match(results["finished_at"])
    assert results["started_at"] <= results["finished_at"]


def test_weights_are_checked_finite_before_saving():
    import torch

    from mlmtune.errors import TrainingError
    from mlmtune.training.fit import check_finite_weights

    check_finite_weights({"a": torch.ones(3), "ids": torch.arange(3)}, [])
    with pytest.raises(TrainingError, match="b.weight holds NaN"):
        check_finite_weights({"a": torch.ones(3), "b.weight": torch.tensor([1.0, float("nan")])}, [])


def test_a_checkpoint_of_infinite_weights_is_never_saved(capsys, tmp_path, tiny_bert, news_folder):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--lr", "1e38", "--weight-decay", "0",
                                               "--save-every", "1", "--max-steps", "3"))
    assert code == 1 and "Traceback" not in err
    assert "NaN or infinity" in err or "loss is nan" in err
    assert not out.exists()  # a new run without a good checkpoint leaves nothing
