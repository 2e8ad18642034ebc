"""`mlmtune evaluate` side by side (issue 12, item 4): several models on the same fixed masks, the
cloze test, the linear probe, documents with classes, and every bad input as one error line."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    CLOZE_NEWS,
    SMALL,
    SMALL_ARGS,
    assert_clean_error_no_stdout,
    bbc_files,
    run_cli,
    save_tiny,
    tiny_bert_config,
)

from mlmtune.config import build_config
from mlmtune.data.sources import Documents, bbc_news_folder, read_corpus
from mlmtune.errors import ConfigError, DataError, ModelError
from mlmtune.eval.cloze import ClozeItem, cloze_accuracy, cloze_hit, parse_cloze, read_cloze_file
from mlmtune.eval.compare import compare, format_table, run_comparison
from mlmtune.eval.linear_probe import heldout_documents, linear_probe, probe_documents

# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def other_bert(tmp_path_factory, tokenizer) -> str:
    """A second tiny BERT with the same tokenizer as tiny_bert and other weights."""
    from transformers import BertForMaskedLM

    return save_tiny(tmp_path_factory.mktemp("other-bert"), BertForMaskedLM, tokenizer, seed=1)


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


@pytest.fixture(scope="module")
def labelled_jsonl(tmp_path_factory) -> str:
    """60 BBC articles with their topic (sport or business) as `label`, and a `topic` column with one class."""
    files = [p for p in bbc_files(400, seed=3) if p.parent.name in ("sports", "business")][:60]
    folder = tmp_path_factory.mktemp("labelled")
    path = folder / "news.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for p in files:
            fh.write(json.dumps({"text": p.read_text(encoding="latin-1"), "label": p.parent.name,
                                 "topic": "news"}) + "\n")
    return str(path)


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


# --- cloze -------------------------------------------------------------------------------------

def test_cloze_scoring_on_given_predictions():
    items = [ClozeItem("a [MASK]", ("Budget",), 1), ClozeItem("b [MASK]", ("rose", "climbed"), 2),
             ClozeItem("c [MASK]", ("half",), 3)]
    predictions = [
        [" budget ", "plan", "x", "y", "z"],  # case-insensitive, stripped: a hit at 1
        ["fell", "dropped", "x", "CLIMBED", "z"],  # the 4th: a hit at 5, not at 1
        ["first", "second", "x", "y", "z", "half"],  # the 6th: no hit at 5
    ]
    assert cloze_hit(predictions[0], items[0].answers, 1)
    assert not cloze_hit(predictions[1], items[1].answers, 3) and cloze_hit(predictions[1], items[1].answers, 4)
    assert cloze_accuracy(predictions, items, 1) == pytest.approx(1 / 3)
    assert cloze_accuracy(predictions, items, 5) == pytest.approx(2 / 3)
    assert not cloze_hit(["budgets"], ("budget",), 1)  # whole tokens, not prefixes
    assert math.isnan(cloze_accuracy([], [], 1))
    with pytest.raises(ValueError):
        cloze_accuracy(predictions[:2], items, 1)


def test_cloze_hits_what_the_model_predicts(tiny_bert, news_folder, tmp_path):
    """Answers built from the model's own fill-mask ranking must score 100% / 0% exactly."""
    from mlmtune.model.fill_mask import FillMask

    sentences = [line.split("\t")[0] for line in CLOZE_NEWS.read_text(encoding="utf-8").splitlines()
                 if line and not line.startswith("#")][:20]
    ranked = [[p.token for p in preds[0]] for preds in FillMask(tiny_bert).predict(sentences, top_k=5)]
    usable = [(s, r) for s, r in zip(sentences, ranked) if all(t.replace("#", "").isalnum() for t in (r[0], r[4]))]
    assert len(usable) >= 5
    top1 = tmp_path / "top1.tsv"
    top1.write_text("# answers: the model's own first choice\n"
                    + "".join(f"{s}\t{r[0].upper()}|zzzz\n" for s, r in usable), encoding="utf-8")
    fifth = tmp_path / "fifth.tsv"
    fifth.write_text("".join(f"{s}\t {r[4]} \n" for s, r in usable), encoding="utf-8")

    rows = compare([tiny_bert], news_folder, probes=str(top1), **SMALL)
    assert (rows[0]["cloze_top1"], rows[0]["cloze_top5"], rows[0]["cloze_items"]) == (1.0, 1.0, len(usable))
    rows = compare([tiny_bert], news_folder, probes=str(fifth), **SMALL)
    assert (rows[0]["cloze_top1"], rows[0]["cloze_top5"]) == (0.0, 1.0)


def test_the_cloze_file_of_the_benchmarks_parses():
    items = read_cloze_file(CLOZE_NEWS)
    assert len(items) == 60
    assert items[0].answers == ("rose", "climbed", "jumped", "surged") and items[0].line == 2
    assert all(item.sentence.count("[MASK]") == 1 and item.answers for item in items)


def test_cloze_parser_tolerates_comments_blank_lines_crlf_and_spaces():
    text = "\ufeff# a comment\r\n\r\nThe [MASK] rose.\t price | cost |\r\n#another\nA [MASK].\tb\n"
    items = parse_cloze(text.lstrip("\ufeff"))
    assert items == [ClozeItem("The [MASK] rose.", ("price", "cost"), 3), ClozeItem("A [MASK].", ("b",), 5)]


@pytest.mark.parametrize("content, needle", [
    ("", "no cloze items"),
    ("# only a comment\n\n", "no cloze items"),
    ("The [MASK] rose. price\n", "no tab"),
    ("The price rose.\tprice\n", "no [MASK]"),
    ("The [MASK] rose by [MASK].\tprice\n", "2 [MASK]s"),
    ("The [MASK] rose.\t\n", "no answer"),
    ("The [MASK] rose.\t | |\n", "no answer"),
    ("The [MASK] rose.\tprice\tcost\n", "tabs"),
])
def test_cloze_parser_bad_lines(tmp_path, content, needle):
    path = tmp_path / "probes.tsv"
    path.write_text("# header\n" + content if content else "", encoding="utf-8")
    with pytest.raises(DataError, match=None) as info:
        read_cloze_file(path)
    message = str(info.value)
    assert needle in message and str(path) in message
    if content.strip() and not content.startswith("#"):
        assert "line 2" in message


# --- the linear probe --------------------------------------------------------------------------

def test_linear_probe_on_separable_and_on_random_features():
    rng = np.random.default_rng(0)
    labels = ["a"] * 30 + ["b"] * 30 + ["c"] * 30
    centres = {"a": 0.0, "b": 10.0, "c": -10.0}
    separable = np.stack([rng.normal(size=8) + centres[label] * np.eye(8)[0] for label in labels])
    assert linear_probe(separable, labels, seed=0)["accuracy"] == 1.0
    noise = rng.normal(size=(90, 8))
    result = linear_probe(noise, labels, seed=0)
    assert result["folds"] == 5 and 0 <= result["accuracy"] < 0.8 and result["accuracy_std"] >= 0
    assert linear_probe(noise, labels, seed=0) == result  # --seed fixes the folds


def test_probe_documents_checks_classes_and_caps(tmp_path):
    texts = [f"doc {i}" for i in range(12)]
    with pytest.raises(DataError, match="all have the class 'x'.*at least 2 classes"):
        probe_documents(texts, ["x"] * 12, label_column="label", seed=0)
    with pytest.raises(DataError, match="class 'b' has 4 .*at least 5 of each class"):
        probe_documents(texts[:9] + ["more"], ["a"] * 6 + ["b"] * 4, label_column="label", seed=0)
    with pytest.raises(DataError, match="none of the"):
        probe_documents(texts, [None] * 12, label_column="label", seed=0)
    notes = []
    kept, labels = probe_documents(texts, ["a"] * 5 + ["b"] * 5 + [None, None], label_column="label", seed=0,
                                   say=notes.append)
    assert kept == texts[:10] and labels == ["a"] * 5 + ["b"] * 5 and "2 of the 12" in notes[0]
    many = [f"doc {i}" for i in range(1500)]
    kept, labels = probe_documents(many, [i % 3 for i in range(1500)], label_column="label", seed=0)
    assert len(kept) == 1000 and set(labels) == {"0", "1", "2"} and len(set(kept)) == 1000


def test_heldout_documents_are_the_ones_prepare_holds_out(tokenizer):
    from mlmtune.data.blocks import prepare

    texts = [f"document number {i} " + "word " * (3 + i % 7) for i in range(30)]
    crlf = ["\ufeff" + t + "\r\n" for t in texts[4:6]]  # repeats too, as chunking sees them (BOM, CRLF)
    docs = Documents(texts + texts[:4] + crlf, labels=[i % 2 for i in range(30)] + [9] * 6)  # 6 repeats, dropped
    held, labels = heldout_documents(docs, eval_fraction=0.3, seed=5)
    splits = prepare(docs, tokenizer, line_by_line=True, eval_fraction=0.3, seed=5, eval_size=None)
    expected = [tokenizer(t)["input_ids"] for t in held]
    got = [splits.eval.tokens[a:b].tolist() for a, b in zip(splits.eval.offsets[:-1], splits.eval.offsets[1:])]
    assert got == expected and len(held) == 9
    assert labels == [int(t.split()[2]) % 2 for t in held] and 9 not in labels
    with pytest.raises(DataError, match="fewer than 10"):
        heldout_documents(Documents(texts[:6]), eval_fraction=0.3, seed=5)
    own = Documents(texts, eval=["held a", texts[0], "held b"], labels=[0] * 30, eval_labels=["p", "q", "r"])
    assert heldout_documents(own, eval_fraction=0.3, seed=5) == (["held a", "held b"], ["p", "r"])


def test_linear_probe_end_to_end_with_tiny_models(tiny_bert, other_bert, labelled_jsonl):
    options = dict(chunk_size=32, eval_size=8, seed=0, precision="fp32", eval_fraction=0.5)
    rows = compare([tiny_bert, other_bert], labelled_jsonl, label_column="label", **options)
    held, labels = heldout_documents(read_corpus([labelled_jsonl]), eval_fraction=0.5, seed=0)
    for row in rows:
        assert isinstance(row["probe_accuracy"], float) and 0 <= row["probe_accuracy"] <= 1
        assert row["probe_documents"] == len(held) == 30 and row["probe_classes"] == 2
        assert row["probe_folds"] == 5 and row["probe_label_column"] == "label"
    again = compare([tiny_bert], labelled_jsonl, label_column="label", **options)
    assert again[0] == rows[0]
    # the table names the probe
    cfg = build_config({"model": tiny_bert, "data": [labelled_jsonl], **options})
    table = format_table(run_comparison(cfg, label_column="label", say=lambda m: None))
    assert table.splitlines()[0].endswith("linear probe") and "30 held-out documents, 2 classes of 'label'" in table
    assert "%" in table.splitlines()[1].split("  ")[-1]


# --- documents with classes ----------------------------------------------------------------------

def test_bbc_news_carries_its_topics():
    docs = read_corpus(["bbc-news"])
    folder = bbc_news_folder()
    expected = Counter(p.parent.name for p in folder.rglob("*.txt"))
    assert Counter(docs.labels) == expected and len(expected) == 5
    first = sorted(folder.rglob("*.txt"))[0]
    assert docs.labels[0] == first.parent.name and docs.train[0] == first.read_text(encoding="latin-1")
    lines = read_corpus(["bbc-news"], line_by_line=True)
    assert len(lines.labels) == len(lines.train) and set(lines.labels) == set(expected)


def test_tables_carry_their_label_column(tmp_path, news_folder):
    path = tmp_path / "t.jsonl"
    rows = [{"text": "first text", "label": "a", "cls": 1}, {"text": "  ", "label": "b", "cls": 2},
            {"text": "third text", "label": None, "cls": 3.0}, {"text": "fourth", "label": "d", "cls": 4}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    docs = read_corpus([str(path)])
    assert docs.train == ["first text", "third text", "fourth"] and docs.labels == ["a", None, "d"]
    assert read_corpus([str(path)], label_column="cls").labels == [1, 3, 4]
    assert read_corpus([str(path), news_folder]).labels[:4] == ["a", None, "d", None]  # a folder has no classes
    assert read_corpus([news_folder]).labels is None and read_corpus([news_folder]).eval_labels is None
    with pytest.raises(DataError, match="no column 'topic'.*--label-column"):
        read_corpus([str(path)], label_column="topic")
    with pytest.raises(DataError, match="folder of .txt files.*--label-column"):
        read_corpus([str(path), news_folder], label_column="label")
    with pytest.raises(DataError, match="--label-column label"):
        read_corpus(["bbc-news"], label_column="topic")
    # a `label` column nobody asked for that holds no classes is read as before
    scores = tmp_path / "scores.csv"
    scores.write_text("text,label\nsome text,0.37\nmore text,0.5\n", encoding="utf-8")
    assert read_corpus([str(scores)]).labels is None
    with pytest.raises(DataError, match="0.37.*not a class"):
        read_corpus([str(scores)], label_column="label")


# --- bad input: one error line, exit 2 -----------------------------------------------------------

@pytest.mark.parametrize("content, needle", [
    (None, "no such file"),
    ("", "no cloze items"),
    ("The [MASK] rose. price\n", "no tab"),
    ("The price rose.\tprice\n", "no [MASK]"),
    ("The [MASK] rose by [MASK].\tprice\n", "2 [MASK]s"),
    ("The [MASK] rose.\t|\n", "no answer"),
])
def test_evaluate_bad_probes_file(capsys, tiny_bert, news_folder, tmp_path, monkeypatch, content, needle):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "probes.tsv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--data", news_folder, *SMALL_ARGS,
                             "--probes", path)
    assert_clean_error_no_stdout(code, out, err, "--probes" if content is None else str(path), needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize("column, extra, needle", [
    ("missing", [], "no column 'missing'"),
    ("topic", [], "all have the class 'news'"),
    ("label", ["--eval-fraction", "0.12"], "at least 5 of each class"),
])
def test_evaluate_bad_label_column(capsys, tiny_bert, labelled_jsonl, column, extra, needle):
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--data", labelled_jsonl, *SMALL_ARGS,
                             "--label-column", column, *extra)
    assert_clean_error_no_stdout(code, out, err, "--label-column", needle)


def test_evaluate_label_column_of_a_folder_is_refused(capsys, tiny_bert, news_folder):
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--data", news_folder, *SMALL_ARGS,
                             "--label-column", "label")
    assert_clean_error_no_stdout(code, out, err, "--label-column", "folder")


def test_evaluate_a_cloze_mask_beyond_the_model_is_refused(capsys, tiny_bert, news_folder, tmp_path):
    path = tmp_path / "long.tsv"
    path.write_text("Short [MASK] here.\tfine\n" + "word " * 200 + "[MASK].\tend\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--data", news_folder, *SMALL_ARGS,
                             "--probes", path)
    assert_clean_error_no_stdout(code, out, err, "line 2", "beyond the model's 128 tokens", "shorten")


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
