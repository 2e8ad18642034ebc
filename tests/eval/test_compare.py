"""`mlmtune evaluate` side by side (eval/compare.py): several models on the same fixed masks, the
numbers training logged, --eval-data, a run with added words beside its base, the table's columns and
footnotes, and models that cannot be compared as one error line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import (
    CLOZE_NEWS,
    SMALL,
    SMALL_ARGS,
    assert_clean_error,
    assert_clean_error_no_stdout,
    assert_ok,
    eval_argv,
    fresh_tokenizer,
    run_cli,
    tiny_bert_config,
    tiny_run,
)

from mlmtune.errors import ConfigError, ModelError
from mlmtune.eval.compare import compare
from mlmtune.training.fit import fit

# --- fixtures ----------------------------------------------------------------------------------


def _edited_copy(model: str, folder: Path, edit) -> str:
    """A copy of `model` whose tokenizer.json went through `edit` (the parsed JSON, changed in place)."""
    import shutil

    shutil.copytree(model, folder)
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    edit(spec)
    (folder / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    return str(folder)


@pytest.fixture(scope="module")
def small_vocab_bert(tmp_path_factory, tiny_bert) -> str:
    """A tiny BERT whose tokenizer has another vocabulary: the first 1,000 tokens of minilm's."""
    import torch
    from transformers import BertForMaskedLM

    def keep_1000(spec):
        spec["model"]["vocab"] = {t: i for t, i in spec["model"]["vocab"].items() if i < 1000}

    folder = _edited_copy(tiny_bert, tmp_path_factory.mktemp("small-vocab") / "model", keep_1000)
    torch.manual_seed(0)
    BertForMaskedLM(tiny_bert_config(1000)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def cased_bert(tmp_path_factory, tiny_bert) -> str:
    """tiny_bert's weights and vocabulary with a tokenizer that keeps case: other ids for the same text."""
    def keep_case(spec):
        assert spec["normalizer"]["lowercase"] is True
        spec["normalizer"]["lowercase"] = False

    folder = Path(_edited_copy(tiny_bert, tmp_path_factory.mktemp("cased") / "model", keep_case))
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["do_lower_case"] = False  # transformers rebuilds the normalizer from this
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return str(folder)


# --- the side by side: shape, identical masks, repeatable ------------------------------------------

def test_two_models_json_lines_share_the_masks(capsys, tiny_bert, other_bert, news_folder):
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--model", other_bert, "--data", news_folder,
                             *SMALL_ARGS, "--json")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2  # one JSON object per model, one per line
    records = [json.loads(line) for line in lines]
    assert [r["model"] for r in records] == [tiny_bert, other_bert]
    for r in records:
        assert {"perplexity", "accuracy", "masked_tokens", "loss", "grown_head"} <= set(r)
        assert r["perplexity"] > 1 and 0 <= r["accuracy"] <= 1 and r["grown_head"] is False
        assert "cloze_top1" not in r and "probe_accuracy" not in r  # only when asked for
    assert records[0]["masked_tokens"] == records[1]["masked_tokens"] > 0  # the same fixed masks
    assert records[0]["perplexity"] != records[1]["perplexity"]  # other weights, other numbers


def test_table_has_one_row_per_model_and_says_what_the_columns_are(capsys, tiny_bert, tiny_encoder, news_folder):
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--model", tiny_encoder, "--data", news_folder,
                             *SMALL_ARGS, "--probes", CLOZE_NEWS)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["model", "perplexity", "accuracy", "masked", "tokens", "word", "bits/char", "word",
                                "accuracy", "cloze", "top-1", "cloze", "top-5"]
    assert lines[1].startswith(tiny_bert + " ") and lines[2].startswith(tiny_encoder + " *")  # * no MLM head
    masked = [line.split()[-5] for line in lines[1:3]]
    assert masked[0] == masked[1] and int(masked[0].replace(",", "")) > 0
    assert all(line.rstrip().endswith("%") for line in lines[1:3])
    assert any(line.startswith("* no MLM head") for line in lines[3:])
    assert any("60 items" in line for line in lines[3:])
    assert f"{tiny_encoder} has no MLM head" in err  # the note on stderr, stdout stays the table


def test_a_model_evaluated_twice_gives_identical_numbers(tiny_bert, other_bert, news_folder):
    import mlmtune

    first = compare([tiny_bert], news_folder, **SMALL)
    again = compare([tiny_bert], news_folder, **SMALL)
    assert first == again
    # the one-model API is unchanged, and equal to the side by side
    result = mlmtune.evaluate(tiny_bert, news_folder, **SMALL)
    assert (result.perplexity, result.accuracy, result.masked_tokens) == \
        (first[0]["perplexity"], first[0]["accuracy"], first[0]["masked_tokens"])
    # a model's numbers do not depend on the models beside it
    pair = compare([other_bert, tiny_bert], news_folder, **SMALL)
    assert pair[1] == first[0]
    assert isinstance(pair, list) and all(isinstance(r, dict) for r in pair)


def test_compare_api_refuses_model_keyword_and_unknown_options(tiny_bert, news_folder):
    with pytest.raises(ConfigError, match="first argument"):
        compare([tiny_bert], news_folder, model=tiny_bert)
    with pytest.raises(ConfigError, match="no_such_option"):
        compare([tiny_bert], news_folder, no_such_option=1)
    with pytest.raises(ConfigError, match="no model"):
        compare([], news_folder)


# --- bad input: one error line, exit 2 -----------------------------------------------------------


def test_evaluate_the_same_model_twice_is_refused(capsys, tiny_bert, news_folder):
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--model", tiny_bert, "--data", news_folder,
                             *SMALL_ARGS)
    assert_clean_error_no_stdout(code, out, err, f"--model {tiny_bert}", "twice", "once")
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--model", tiny_bert + "/", "--data",
                             news_folder, *SMALL_ARGS)
    assert_clean_error_no_stdout(code, out, err, "twice")


@pytest.mark.parametrize("kind, needle", [("vocab", "vocabularies of 30,522 and 1,000 tokens"),
                                          ("casing", "another tokenization")])
def test_evaluate_a_model_with_another_tokenizer_is_refused(capsys, tiny_bert, small_vocab_bert, cased_bert,
                                                             news_folder, kind, needle):
    other = small_vocab_bert if kind == "vocab" else cased_bert
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--model", other, "--data", news_folder,
                             *SMALL_ARGS)
    assert_clean_error_no_stdout(code, out, err, f"--model {other}", f"--model {tiny_bert}", needle, "on its own")
    with pytest.raises(ModelError):
        compare([tiny_bert, other], news_folder, **SMALL)
    if kind == "casing":  # on its own it evaluates (the 1,000-token one reads the news as [UNK]s, never masked)
        code, out, err = run_cli(capsys, "evaluate", "--model", other, "--data", news_folder, *SMALL_ARGS, "--json")
        assert code == 0, err
        assert json.loads(out)["masked_tokens"] > 0


def test_eval_masks_that_mask_nothing(capsys, tiny_bert, news_folder):
    code, _, err = run_cli(capsys, *eval_argv(tiny_bert, news_folder, "--eval-size", "2",
                                              "--eval-mlm-probability", "0.000001"))
    assert_clean_error(code, err, "--eval-mlm-probability")


# --- the numbers are train's ---------------------------------------------------------------------

def test_evaluate_repeats_the_numbers_training_logged_in_bf16(tiny_encoder, news_folder, tmp_path, capsys):
    """`mlmtune evaluate --config OUT/run.json --model BASE --model OUT` gives exactly metrics.jsonl's
    step-0 and final evaluations, in bf16 too, where attention implementations round differently."""
    from mlmtune.run.metrics_log import read_metrics

    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", tiny_encoder, "--data", news_folder, "--output-dir", out,
                           "--chunk-size", "64", "--eval-size", "24", "--batch-size", "4", "--max-steps", "2",
                           "--seed", "0", "--precision", "bf16", "--head-init", "random", "--no-report")
    assert code == 0, err
    evals = [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "eval"]
    code, stdout, err = run_cli(capsys, "evaluate", "--config", out / "run.json", "--model", tiny_encoder,
                                "--model", out, "--json")
    assert code == 0, err
    scored = [json.loads(line) for line in stdout.splitlines()]
    assert [(s["perplexity"], s["accuracy"], s["masked_tokens"]) for s in scored] == \
        [(r["perplexity"], r["accuracy"], r["masked_tokens"]) for r in (evals[0], evals[-1])]


def test_evaluate_scores_the_runs_eval_set(tiny_bert, news_folder, tmp_path):
    from mlmtune.eval.compare import evaluate

    out = tmp_path / "run"
    results = fit(tiny_run(tiny_bert, news_folder, out, max_steps=4))
    again = evaluate(str(out), news_folder, chunk_size=64, eval_size=40, seed=0, precision="fp32")
    assert again.perplexity == pytest.approx(results["eval_perplexity"], rel=1e-5)


# --- --eval-data ----------------------------------------------------------------------------------

def test_evaluate_scores_eval_data_without_reading_or_needing_training_text(eval_data_run, split_news, capsys):
    results = json.loads((eval_data_run / "results.json").read_text())
    _, valid = split_news
    code, out, err = run_cli(capsys, "evaluate", "--model", eval_data_run, "--eval-data", valid, "--chunk-size", 64,
                             "--eval-size", "none", "--seed", 3, "--precision", "fp32", "--json")
    assert_ok(code, err)
    row = json.loads(out)
    assert row["masked_tokens"] == results["eval_masked_tokens"]
    assert row["perplexity"] == pytest.approx(results["eval_perplexity"], rel=1e-5)


def test_evaluate_needs_no_training_part(tiny_bert, split_news, capsys):
    """`--eval-fraction 0.99` used to fail with '0 training and N evaluation blocks'."""
    train, _ = split_news
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--data", Path(train) / "000.txt",
                             "--eval-fraction", "0.99", "--chunk-size", 64, "--json")
    assert_ok(code, err)
    assert json.loads(out)["masked_tokens"] > 0


def test_side_by_side_with_only_eval_data_does_not_read_the_default_data(capsys, monkeypatch, tmp_path, vocab_run,
                                                                          tiny_bert, news_folder):
    """`evaluate --eval-data E` without --data reads E alone; the model with added words made its own
    evaluation set from --data's default (bbc-news) as well, a training part it does not need."""
    import mlmtune.data.sources as corpus

    read = []
    original = corpus.read_corpus
    monkeypatch.setattr(corpus, "read_corpus", lambda sources, *a, **k: read.append(list(sources)) or original(
        sources, *a, **k))
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--model", vocab_run, "--eval-data",
                             news_folder, "--chunk-size", "64", "--eval-size", "24", "--precision", "fp32", "--json")
    assert_ok(code, err)
    assert ["bbc-news"] not in read
    base, tuned = (json.loads(line) for line in out.splitlines())
    assert base["masked_words"] == tuned["masked_words"] > 0


def test_the_masked_word_measure_reads_the_eval_data_when_given(monkeypatch, tmp_path, tiny_bert, domain_folder):
    """With --eval-data nothing of --data is held out: the masked words come from the eval source, never
    from training documents (scoring those would flatter the model)."""
    from mlmtune.config import build_config
    from mlmtune.data.sources import documents_from_config
    from mlmtune.eval import words as wordeval
    from mlmtune.eval.compare import masked_word_sets

    valid = tmp_path / "valid.txt"
    valid.write_text("The quizzify panel met on Tuesday.\n\nA zymurgist wrote to the board.\n", encoding="utf-8")
    seen, real = [], wordeval.prepare
    monkeypatch.setattr(wordeval, "prepare", lambda texts, tokenizers, **kw: seen.append(list(texts)) or real(
        texts, tokenizers, **kw))
    tok = fresh_tokenizer()
    for data, read_train in (([domain_folder], True), ([], False)):
        cfg = build_config({"model": tiny_bert, "data": data, "eval_data": [str(valid)]})
        masked_word_sets(cfg, documents_from_config(cfg, read_train=read_train), [tok], 128)
        assert seen[-1] == [valid.read_text(encoding="utf-8")]


# --- a run with added words beside its base -------------------------------------------------------

def test_evaluate_predict_and_report_work_on_the_run(capsys, vocab_run_copy, tiny_bert, domain_folder):
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--model", vocab_run_copy, "--data",
                             domain_folder, "--chunk-size", "64", "--eval-size", "24", "--precision", "fp32", "--json")
    assert_ok(code, err)
    base, tuned = (json.loads(line) for line in out.splitlines())
    assert tuned["own_tokenization"] and "own_tokenization" not in base
    assert base["masked_words"] == tuned["masked_words"] > 0  # the same words for both vocabularies
    records = [json.loads(line) for line in (vocab_run_copy / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in records if r["type"] == "eval"][-1]
    assert math.isclose(tuned["word_bits_per_char"], final["word_bits_per_char"], rel_tol=1e-4)
    code, out, err = run_cli(capsys, "predict", "--model", vocab_run_copy, "The [MASK] report.")
    assert_ok(code, err)
    from fastapi.testclient import TestClient
    from helpers import API

    from mlmtune.serve.app import create_app

    with TestClient(create_app(str(vocab_run_copy), compare=tiny_bert)) as client:  # serve: the run beside its base
        r = client.post(API, json={"text": "The [MASK] report.", "top_k": 3})
        assert r.status_code == 200 and len(r.json()["models"]) == 2
    code, out, err = run_cli(capsys, "report", vocab_run_copy)
    assert_ok(code, err)
    page = (vocab_run_copy / "report.html").read_text()
    assert "its own vocabulary" in page and "word bits/char" in page


def test_the_table_footnote_holds_whichever_model_comes_first(vocab_run, tiny_bert):
    from mlmtune.eval.compare import ModelScores, format_table
    from mlmtune.eval.metrics import EvalResult

    rows = [ModelScores(str(vocab_run), EvalResult.from_sums(10.0, 5, 2)),
            ModelScores(tiny_bert, EvalResult.from_sums(12.0, 6, 2), own_tokens=True)]
    text = format_table(rows)
    assert "differ by added words" in text and "adds words to the first" not in text  # the base adds none


def test_the_footnote_does_not_point_to_a_masked_word_column_that_is_not_there(vocab_run, tiny_bert):
    """A corpus under 10 documents has no masked-word measure: 'rank by the masked words' pointed nowhere."""
    from mlmtune.eval.compare import ModelScores, format_table
    from mlmtune.eval.metrics import EvalResult

    rows = [ModelScores(tiny_bert, EvalResult.from_sums(10.0, 5, 2)),
            ModelScores(str(vocab_run), EvalResult.from_sums(12.0, 6, 2), own_tokens=True)]
    text = format_table(rows)
    assert "word bits/char" not in text and "rank by the masked words" not in text and "no masked-word measure" in text


def test_progress_in_a_notebook_without_ipywidgets_falls_back_to_the_text_bar(tmp_path):
    """A notebook (ipykernel loaded) shows a bar although stderr is no terminal; without ipywidgets
    tqdm.auto falls back to its text bar (with its own hint to install ipywidgets), which still counts
    every batch. Run in a fresh process: the stand-in notebook modules must not leak into other tests."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, types, warnings\n"
        "shell = type('ZMQInteractiveShell', (), {})\n"
        "ipython = types.ModuleType('IPython'); ipython.get_ipython = lambda: shell()\n"
        "sys.modules.update({'IPython': ipython, 'ipykernel': types.ModuleType('ipykernel'),\n"
        "                    'ipykernel.zmqshell': types.ModuleType('ipykernel.zmqshell'),\n"
        "                    'ipywidgets': None})  # None: import ipywidgets fails\n"
        "import tqdm.std\n"
        "from mlmtune.eval.compare import interactive, progress\n"
        "assert interactive()\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    bar = progress(list(range(5)), 'runs/demo', enabled=True)\n"
        "assert list(bar) == list(range(5)) and isinstance(bar, tqdm.std.tqdm), type(bar)\n"
        "assert type(bar).__module__ != 'tqdm.notebook', type(bar)\n"
        "assert any('ipywidgets' in str(w.message) for w in caught), [str(w.message) for w in caught]\n"
        "assert progress([1], 'm', enabled=False) == [1]  # not the main process: no bar\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert "evaluate demo" in proc.stderr  # the bar, on stderr
