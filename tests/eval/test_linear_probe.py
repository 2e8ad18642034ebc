"""The linear probe (eval/linear_probe.py): logistic regression on the held-out documents' mean-pooled
features and their classes; a --label-column that cannot make classes is one error line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import SMALL_ARGS, assert_clean_error_no_stdout, bbc_files, run_cli

from mlmtune.config import build_config
from mlmtune.data.sources import Documents, read_corpus
from mlmtune.errors import DataError
from mlmtune.eval.compare import compare, format_table, run_comparison
from mlmtune.eval.linear_probe import heldout_documents, linear_probe, probe_documents


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


# --- bad input: one error line, exit 2, nothing on stdout -----------------------------------------

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
