"""End to end on tiny models: loss falls, the output folder is complete and loads in pipeline()."""

import json
import math
from pathlib import Path

import pytest
from helpers import tiny_run

from mlmtune.data.blocks import cut, tokenize
from mlmtune.model.tokenizer import load_tokenizer
from mlmtune.run.metrics_log import read_metrics
from mlmtune.training.fit import fit


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


def test_evaluate_scores_the_runs_eval_set(tiny_bert, news_folder, tmp_path):
    from mlmtune.eval.compare import evaluate

    out = tmp_path / "run"
    results = fit(tiny_run(tiny_bert, news_folder, out, max_steps=4))
    again = evaluate(str(out), news_folder, chunk_size=64, eval_size=40, seed=0, precision="fp32")
    assert again.perplexity == pytest.approx(results["eval_perplexity"], rel=1e-5)


def test_refuses_an_output_folder_of_another_run(tiny_bert, news_folder, tmp_path):
    from mlmtune.errors import ConfigError

    out = tmp_path / "run"
    fit(tiny_run(tiny_bert, news_folder, out, max_steps=2))
    before = (out / "run.json").read_text()
    with pytest.raises(ConfigError, match="--overwrite"):
        fit(tiny_run(tiny_bert, news_folder, out, max_steps=2))
    assert (out / "run.json").read_text() == before
    fit(tiny_run(tiny_bert, news_folder, out, max_steps=3, overwrite=True))
    assert json.loads((out / "results.json").read_text())["steps"] == 3


def test_eval_masking_rate_is_independent_of_the_training_rate(tiny_bert, news_folder, tmp_path):
    a = fit(tiny_run(tiny_bert, news_folder, tmp_path / "a", max_steps=2, mlm_probability=0.4))
    b = fit(tiny_run(tiny_bert, news_folder, tmp_path / "b", max_steps=2))
    assert a["eval_masked_tokens"] == b["eval_masked_tokens"]
    train_a = [r for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if r["type"] == "train"]
    train_b = [r for r in read_metrics(tmp_path / "b" / "metrics.jsonl") if r["type"] == "train"]
    assert sum(r["masked_tokens"] for r in train_a) > 2 * sum(r["masked_tokens"] for r in train_b)


def test_whole_word_masking_and_line_by_line_train(tiny_bert, news_folder, tmp_path):
    results = fit(tiny_run(tiny_bert, news_folder, tmp_path / "w", max_steps=4, whole_word_mask=True,
                           line_by_line=True, max_length=64))
    assert math.isfinite(results["eval_perplexity"])


def test_tensorboard_tracker_writes_events(tiny_bert, news_folder, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "tb"
    fit(tiny_run(tiny_bert, news_folder, out, max_steps=4, report_to="tensorboard"))
    assert list(out.rglob("events.out.tfevents.*"))


def test_accumulating_two_batches_of_8_equals_one_batch_of_16(no_dropout_bert, news_folder, tmp_path):
    one = fit(tiny_run(no_dropout_bert, news_folder, tmp_path / "one", batch_size=16, max_steps=6))
    two = fit(tiny_run(no_dropout_bert, news_folder, tmp_path / "two", batch_size=8, gradient_accumulation_steps=2,
                       max_steps=6))
    assert two["train_tokens"] == one["train_tokens"]
    assert two["eval_perplexity"] == pytest.approx(one["eval_perplexity"], rel=1e-4)


@pytest.mark.slow
def test_compiled_training_saves_real_weights(tiny_bert, news_folder, tmp_path):
    from mlmtune.eval.compare import evaluate

    out = tmp_path / "compiled"
    results = fit(tiny_run(tiny_bert, news_folder, out, max_steps=3, compile=True))
    again = evaluate(str(out), news_folder, chunk_size=64, eval_size=40, seed=0, precision="fp32")
    assert again.perplexity == pytest.approx(results["eval_perplexity"], rel=1e-4)


def test_a_hub_dataset_trains_on_its_train_split_and_evaluates_on_its_eval_split(tiny_bert, news_folder, tmp_path,
                                                                                  monkeypatch):
    # The Hub is not reachable here: datasets.load_dataset answers with local tables instead, so the
    # code path of `--data imdb --data-split train --eval-split test --text-column review` is the real one.
    import datasets

    texts = [p.read_text() for p in sorted(Path(news_folder).glob("*.txt"))]
    tables = {"train": texts[:30], "test": texts[30:]}
    calls = []

    def fake_load_dataset(name, split=None, **kwargs):
        calls.append((name, split))
        return datasets.Dataset.from_dict({"review": tables[split], "label": [0] * len(tables[split])})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    out = tmp_path / "run"
    fit(tiny_run(tiny_bert, "imdb", out, data_split="train", eval_split="test", text_column="review",
                 eval_size=None, max_steps=4))
    assert calls == [("imdb", "train"), ("imdb", "test")]
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["holdout"] == "split"  # no documents taken from the training split
    tokenizer = load_tokenizer(tiny_bert)
    assert run["data"]["eval_examples"] == len(cut(tokenize(tables["test"], tokenizer), 64))
    assert run["data"]["train_examples"] == len(cut(tokenize(tables["train"], tokenizer), 64))


def test_mlflow_tracker_records_the_run(tiny_bert, news_folder, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    uri = (tmp_path / "mlruns").as_uri()  # a file store (mlflow-skinny has no database backend)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    out = tmp_path / "mlf"
    fit(tiny_run(tiny_bert, news_folder, out, max_steps=4, log_every=2, report_to="mlflow"))
    client = mlflow.MlflowClient(tracking_uri=uri)  # not mlflow.set_tracking_uri: a global other tests would see
    runs = client.search_runs([client.get_experiment_by_name(out.name).experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    history = client.get_metric_history(runs[0].info.run_id, "train/loss")
    assert [m.step for m in history] == [2, 4]
    assert runs[0].data.params["lr"] == "0.003"
