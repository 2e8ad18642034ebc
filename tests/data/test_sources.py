"""Bad input: one line `error: <problem>: <fix>` on stderr and exit code 2, or a correct result.

Nothing is half-written: a run whose input is invalid creates no output folder, and an existing
output folder (a previous tiny run, hashed before and after) is left exactly as it was.

Most cases call `mlmtune.cli.main([...])` in-process; `test_subprocess_*` run `python -m mlmtune`
to prove the exit code is real and no traceback reaches stderr.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_clean_error, assert_ok, eval_argv, news_text, run_cli, snapshot, train_argv


# --- data sources ------------------------------------------------------------------------------

@pytest.mark.parametrize("source, needle", [
    ("/nonexistent/notes.txt", "no such file"),
    ("missing.txt", "no such file"),
    ("./missing-folder", "no such file"),
    ("", "is empty"),  # Path("") is the current folder: must not read it
    ("   ", "is empty"),
])
def test_missing_or_empty_data_path(capsys, tiny_bert, tmp_path, monkeypatch, source, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stray.txt").write_text("text in the current folder " * 100)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, source, out))
    assert_clean_error(code, err, needle)
    assert not out.exists()


@pytest.mark.parametrize("content", ["", "   \n\t\n  \n"], ids=["empty", "whitespace"])
@pytest.mark.parametrize("line_by_line", [False, True], ids=["document", "line-by-line"])
def test_empty_and_whitespace_only_file(capsys, tiny_bert, tmp_path, content, line_by_line):
    data = tmp_path / "notes.txt"
    data.write_text(content)
    out = tmp_path / "out"
    extra = ["--line-by-line"] if line_by_line else []
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, data, out, *extra))
    assert_clean_error(code, err, "holds no text")
    assert not out.exists()


@pytest.mark.parametrize("files", [{}, {"a.pdf": b"%PDF-1.4", "b.csv": b"text\nhello\n"}, {"a.txt": b"", "b.txt": b"\n \n"}],
                         ids=["empty-folder", "no-txt", "only-empty-txt"])
def test_folder_without_text(capsys, tiny_bert, tmp_path, files):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, folder, out))
    assert_clean_error(code, err, "no .txt files" if not any(n.endswith(".txt") for n in files) else "holds no text")
    assert not out.exists()


def test_binary_garbage_txt(capsys, tiny_bert, news_folder, tmp_path):
    rng = random.Random(0)
    garbage = bytes(rng.randrange(256) for _ in range(4096)) + b"\x00\x00\x00"
    (tmp_path / "garbage.txt").write_bytes(garbage)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, tmp_path / "garbage.txt", out))
    assert_clean_error(code, err, "binary", "garbage.txt")
    # one bad file inside an otherwise good folder: the message names that file
    folder = Path(shutil.copytree(news_folder, tmp_path / "news"))
    (folder / "zz-broken.txt").write_bytes(garbage)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, folder, out))
    assert_clean_error(code, err, "binary", "zz-broken.txt")
    assert not out.exists()


def test_invalid_utf8_then_latin1(capsys, tiny_bert, news_folder, tmp_path):
    data = tmp_path / "latin.txt"
    data.write_bytes(("Caf\u00e9 prices rose by \u00a35 for na\u00efve tourists.\n" + news_text(news_folder)).encode("latin-1", "replace"))
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, data, out))
    assert_clean_error(code, err, "not valid utf-8", "--encoding")
    assert not out.exists()
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, data, out, "--encoding", "latin-1"))
    assert_ok(code, err)
    assert (out / "model.safetensors").is_file() and (out / "results.json").is_file()


def test_utf16_file_is_named_and_reads_with_its_encoding(capsys, tiny_bert, news_folder, tmp_path):
    data = tmp_path / "wide.txt"
    data.write_text(news_text(news_folder, 3), encoding="utf-16")
    code, _, err = run_cli(capsys, *eval_argv(tiny_bert, data))
    assert_clean_error(code, err, "--encoding utf-16")
    code, out, err = run_cli(capsys, *eval_argv(tiny_bert, data, "--encoding", "utf-16", "--json"))
    assert_ok(code, err)
    assert json.loads(out)["masked_tokens"] > 0


def test_unknown_encoding(capsys, tiny_bert, news_folder, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--encoding", "klingon"))
    assert_clean_error(code, err, "klingon")
    assert not out.exists()


def test_one_10mb_line_evaluates(capsys, tiny_bert, news_folder, tmp_path):
    words = news_text(news_folder, 10).split()
    rng = random.Random(0)
    pieces, size = [], 0
    while size < 10_000_000:
        w = rng.choice(words)
        pieces.append(w)
        size += len(w.encode("utf-8")) + 1
    data = tmp_path / "one-line.txt"
    data.write_text(" ".join(pieces))  # one line, no newline
    assert data.stat().st_size >= 10_000_000
    code, out, err = run_cli(capsys, *eval_argv(tiny_bert, data, "--chunk-size", "64", "--json"))
    assert_ok(code, err)
    result = json.loads(out)
    assert result["masked_tokens"] > 0 and result["perplexity"] > 0


def test_csv_with_missing_values_skips_them(capsys, tiny_bert, news_folder, tmp_path):
    from mlmtune.data.sources import read_corpus

    texts = [p.read_text(encoding="utf-8")[:600] for p in sorted(Path(news_folder).glob("*.txt"))[:24]]
    path = tmp_path / "reviews.csv"
    kept = []
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "label"])
        for i, t in enumerate(texts):
            if i % 4 == 0:
                w.writerow([i, "", "x"])  # empty text
            elif i % 4 == 1:
                w.writerow([i])  # short row: text and label missing
            else:
                w.writerow([i, t, ""])
                kept.append(t)
    assert read_corpus([str(path)]).train == kept
    code, out, err = run_cli(capsys, *eval_argv(tiny_bert, path, "--json"))
    assert_ok(code, err)
    assert json.loads(out)["masked_tokens"] > 0


def _write_table(path: Path, rows: list[dict]) -> None:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_table_without_the_text_column(capsys, tiny_bert, news_folder, tmp_path, suffix):
    rows = [{"id": i, "body": t[:500]} for i, t in enumerate(news_text(news_folder, 12).split("\n\n"))]
    path = tmp_path / f"data{suffix}"
    _write_table(path, rows)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, path, out))
    assert_clean_error(code, err, "no column 'text'", "body", "--text-column")
    assert not out.exists()
    if suffix == ".parquet":  # the fix the message names works
        code, _, err = run_cli(capsys, *eval_argv(tiny_bert, path, "--text-column", "body"))
        assert_ok(code, err)


def test_text_column_without_text(capsys, tiny_bert, tmp_path):
    path = tmp_path / "numbers.jsonl"
    path.write_text("".join(json.dumps({"text": i}) + "\n" for i in range(20)))
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, path, tmp_path / "out"))
    assert_clean_error(code, err, "holds no text")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, content, needle", [
    ("bad.jsonl", '{"text": "fine"}\n{"text": "unterminated\n', "line 2"),
    ("bad.jsonl", '{"text": "fine"} and then some\n', "line 1"),
    ("bad.jsonl", '{"text": "fine"}\n{"text": "fine"}\n[1, 2]\n', "line 3"),
    ("bad.jsonl", '{"text": "fine"}\n{"text": "cut off', "line 2"),
    ("bad.json", '[{"text": "fine"}, {"text": ', "line 1"),
    ("bad.csv", 'text\n"never closed\n', "csv"),
    ("bad.parquet", "PAR1 this is not parquet at all", "parquet"),
], ids=["unterminated", "trailing", "not-an-object", "truncated", "json-array", "csv-quote", "parquet"])
def test_malformed_table_files(capsys, tiny_bert, tmp_path, name, content, needle):
    path = tmp_path / name
    path.write_text(content)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, path, tmp_path / "out"))
    assert_clean_error(code, err, "cannot read", needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, content, needle", [
    ("empty.jsonl", "", "holds no text"), ("empty.csv", "", "holds no text"), ("blank.jsonl", "\n\n  \n", "holds no text"),
    ("header.csv", "id,text\n", "no data rows"), ("header.parquet", None, "has no rows"),
])
def test_empty_table_files(capsys, tiny_bert, tmp_path, name, content, needle):
    path = tmp_path / name
    if content is None:  # a parquet file with the text column and no rows
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    else:
        path.write_text(content)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, path, tmp_path / "out"))
    assert_clean_error(code, err, needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source", ["imdb", "stanfordnlp/imdb"])
def test_hub_dataset_while_offline(capsys, tiny_bert, tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, source, tmp_path / "out"))
    assert_clean_error(code, err, "Hugging Face Hub", source)
    assert not (tmp_path / "out").exists()


def test_eval_split_of_a_local_file(capsys, tiny_bert, news_folder, tmp_path):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "out", "--eval-split", "test"))
    assert_clean_error(code, err, "--eval-split")
    assert not (tmp_path / "out").exists()


def test_corpus_too_small(capsys, tiny_bert, tmp_path):
    (tmp_path / "tiny.txt").write_text("Just one short sentence.")
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, tmp_path / "tiny.txt", tmp_path / "out"))
    assert_clean_error(code, err, "too small", "--chunk-size")
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, tmp_path / "tiny.txt", tmp_path / "out", "--line-by-line"))
    assert_clean_error(code, err, "too small", "lines")
    assert not (tmp_path / "out").exists()


def test_batch_larger_than_the_data(capsys, tiny_bert, news_folder, tmp_path):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "out", "--batch-size", "100000"))
    assert_clean_error(code, err, "--batch-size")
    assert not (tmp_path / "out").exists()


# --- models ------------------------------------------------------------------------------------

@pytest.fixture
def broken_models(tiny_bert, tmp_path) -> dict[str, Path]:
    src = Path(tiny_bert)
    made = {}
    made["no-tokenizer"] = tmp_path / "no-tokenizer"
    made["no-tokenizer"].mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(src / f, made["no-tokenizer"] / f)
    made["tokenizer-only"] = tmp_path / "tokenizer-only"
    made["tokenizer-only"].mkdir()
    for f in src.glob("tokenizer*"):
        shutil.copy(f, made["tokenizer-only"] / f.name)
    made["truncated-weights"] = Path(shutil.copytree(src, tmp_path / "truncated-weights"))
    w = made["truncated-weights"] / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    made["broken-config"] = Path(shutil.copytree(src, tmp_path / "broken-config"))
    (made["broken-config"] / "config.json").write_text('{"model_type": "bert", ')
    made["a-file"] = tmp_path / "model.txt"
    made["a-file"].write_text("not a model")
    return made


@pytest.mark.parametrize("kind, needles", [
    ("no-tokenizer", ["no tokenizer", "--tokenizer"]),
    ("tokenizer-only", ["tokenizer-only"]),
    ("truncated-weights", ["truncated-weights"]),
    ("broken-config", ["broken-config"]),
    ("a-file", ["model.txt"]),
])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_broken_model_folders(capsys, broken_models, news_folder, tmp_path, command, kind, needles):
    model = broken_models[kind]
    if command == "predict":
        argv = ["predict", "--model", model, "The [MASK] is happy."]
    else:
        argv = eval_argv(model, news_folder)
    code, _, err = run_cli(capsys, *argv)
    assert_clean_error(code, err, *needles)


def test_model_without_tokenizer_works_with_tokenizer_flag(capsys, broken_models, tiny_bert, news_folder):
    code, _, err = run_cli(capsys, *eval_argv(broken_models["no-tokenizer"], news_folder, "--tokenizer", tiny_bert))
    assert_ok(code, err)


@pytest.mark.parametrize("model", ["/nonexistent/model", "./no-such-model-folder"])
def test_model_path_that_does_not_exist(capsys, news_folder, tmp_path, monkeypatch, model):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *train_argv(model, news_folder, tmp_path / "out"))
    assert_clean_error(code, err, "does not exist", model)
    assert not (tmp_path / "out").exists()
    code, _, err = run_cli(capsys, "predict", "--model", model, "a [MASK] b")
    assert_clean_error(code, err, "does not exist")


@pytest.mark.parametrize("model", [
    "no-such-model-mlmtune-test",
    pytest.param("mlmtune-test/no-such-model"),
])
def test_hub_model_id_while_offline(capsys, news_folder, tmp_path, monkeypatch, model):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *train_argv(model, news_folder, tmp_path / "out"))
    line = assert_clean_error(code, err, model)
    assert "hub" in line.lower() or "huggingface" in line.lower(), line
    assert not (tmp_path / "out").exists()


# --- predict -----------------------------------------------------------------------------------

@pytest.mark.parametrize("texts", [["The cat sat on the mat."], [""], ["a [MASK] b", "no mask here"],
                                   ["<mask> is RoBERTa's token, not BERT's"]],
                         ids=["no-mask", "empty", "one-of-two", "other-model-token"])
def test_predict_text_without_mask(capsys, tiny_bert, texts):
    code, _, err = run_cli(capsys, "predict", "--model", tiny_bert, *texts)
    assert_clean_error(code, err, "no mask token", "[MASK]")


def test_predict_several_masks_gives_one_list_per_mask(capsys, tiny_bert):
    code, out, err = run_cli(capsys, "predict", "--model", tiny_bert, "--json", "--top-k", "3",
                             "[MASK] went to the [MASK] to buy [MASK].", "One [MASK] only.")
    assert_ok(code, err)
    records = [json.loads(line) for line in out.splitlines()]
    assert [len(r["masks"]) for r in records] == [3, 1]
    assert all(len(mask) == 3 and all({"token", "score"} <= set(p) for p in mask) for r in records for mask in r["masks"])
    code, out, err = run_cli(capsys, "predict", "--model", tiny_bert, "--top-k", "2", "A [MASK] and a [MASK].")
    assert_ok(code, err)
    assert "mask 1/2" in out and "mask 2/2" in out


@pytest.mark.parametrize("stdin", ["", "\n   \n\n"], ids=["empty", "blank-lines"])
def test_predict_stdin_without_text(capsys, tiny_bert, monkeypatch, stdin):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code, _, err = run_cli(capsys, "predict", "--model", tiny_bert, "-")
    assert_clean_error(code, err, "no text given")


def test_predict_stdin_lines(capsys, tiny_bert, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("The [MASK] is happy.\n\nA [MASK] day.\n"))
    code, out, err = run_cli(capsys, "predict", "--model", tiny_bert, "--json", "-")
    assert_ok(code, err)
    assert len(out.splitlines()) == 2


@pytest.mark.parametrize("top_k, needle", [("0", "top-k"), ("-1", "top-k"), (str(10**9), "top-k"),
                                           ("2.5", "--top-k"), ("abc", "--top-k"), ("", "--top-k")])
def test_predict_bad_top_k(capsys, tiny_bert, top_k, needle):
    code, _, err = run_cli(capsys, "predict", "--model", tiny_bert, f"--top-k={top_k}", "The [MASK] is happy.")
    assert_clean_error(code, err, needle)


def test_predict_text_longer_than_the_model(capsys, tiny_bert):
    """The tiny model has 128 positions but its tokenizer says 512: a long text must not crash."""
    long_tail = "The [MASK] said " + "word " * 300
    code, out, err = run_cli(capsys, "predict", "--model", tiny_bert, "--json", long_tail)
    assert_ok(code, err)
    assert len(json.loads(out)["masks"]) == 1
    code, _, err = run_cli(capsys, "predict", "--model", tiny_bert, "word " * 300 + "[MASK].")
    assert_clean_error(code, err, "beyond the model's 128 tokens", "shorten")


def test_predict_compare_model_missing(capsys, tiny_bert):
    code, _, err = run_cli(capsys, "predict", "--model", tiny_bert, "--compare", "/nonexistent/base", "a [MASK] b")
    assert_clean_error(code, err, "/nonexistent/base")


# --- option values -----------------------------------------------------------------------------

BAD_VALUES = [
    ("chunk-size", "0"), ("chunk-size", "-1"), ("chunk-size", "abc"), ("chunk-size", "1.5"), ("chunk-size", "200"),
    ("mlm-probability", "0"), ("mlm-probability", "1"), ("mlm-probability", "1.5"), ("mlm-probability", "-0.1"),
    ("mlm-probability", "nan"), ("eval-mlm-probability", "nan"), ("eval-mlm-probability", "0"),
    ("mask-replace-prob", "1.5"), ("random-replace-prob", "-0.1"), ("mask-replace-prob", "nan"),
    ("batch-size", "0"), ("batch-size", "-1"), ("batch-size", "2.5"),
    ("lr", "0"), ("lr", "-1"), ("lr", "-1e-5"), ("lr", "nan"), ("lr", "inf"), ("lr", "fast"),
    ("epochs", "0"), ("epochs", "-1"), ("max-steps", "0"), ("eval-size", "0"), ("train-size", "-5"),
    ("eval-fraction", "0"), ("eval-fraction", "1"), ("gradient-accumulation-steps", "0"), ("warmup-ratio", "1"),
    ("keep-checkpoints", "0"), ("log-every", "0"), ("save-every", "0"), ("precision", "fp64"),
]


@pytest.mark.parametrize("flag, value", BAD_VALUES, ids=[f"{f}={v}" for f, v in BAD_VALUES])
def test_train_bad_option_value(capsys, tiny_bert, news_folder, tmp_path, flag, value):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, f"--{flag}={value}"))
    line = assert_clean_error(code, err, f"--{flag}")
    if value == "200":
        assert "128" in line  # the tiny model's positions
    assert not out.exists()


@pytest.mark.parametrize("flag, value", [("chunk-size", "0"), ("chunk-size", "200"), ("eval-mlm-probability", "nan"),
                                         ("batch-size", "0"), ("eval-size", "-3")])
def test_evaluate_bad_option_value(capsys, tiny_bert, news_folder, flag, value):
    code, _, err = run_cli(capsys, *eval_argv(tiny_bert, news_folder, f"--{flag}={value}"))
    assert_clean_error(code, err, f"--{flag}")


@pytest.mark.parametrize("value", ["1000", "2"])
def test_max_length_out_of_range(capsys, tiny_bert, news_folder, tmp_path, value):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--line-by-line", "--max-length", value))
    line = assert_clean_error(code, err, "--max-length")
    if value == "1000":
        assert "128" in line
    assert not out.exists()


def test_mask_and_random_replace_above_one(capsys, tiny_bert, news_folder, tmp_path):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "out",
                                               "--mask-replace-prob", "0.8", "--random-replace-prob", "0.3"))
    assert_clean_error(code, err, "--mask-replace-prob", "--random-replace-prob", "exceed 1")
    assert not (tmp_path / "out").exists()


def test_eval_masks_that_mask_nothing(capsys, tiny_bert, news_folder):
    code, _, err = run_cli(capsys, *eval_argv(tiny_bert, news_folder, "--eval-size", "2",
                                              "--eval-mlm-probability", "0.000001"))
    assert_clean_error(code, err, "--eval-mlm-probability")


def test_train_eval_masks_that_mask_nothing(capsys, tiny_bert, news_folder, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--eval-size", "2",
                                               "--eval-mlm-probability", "0.000001"))
    assert_clean_error(code, err, "--eval-mlm-probability")
    assert not out.exists()


@pytest.mark.parametrize("seed", ["-1", str(2**70)])
def test_bad_seed(capsys, tiny_bert, news_folder, tmp_path, seed):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, f"--seed={seed}"))
    assert_clean_error(code, err, "--seed")
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--chunksize", "--learning-rate", "--no-such-flag"])
def test_unknown_flag(capsys, tiny_bert, news_folder, tmp_path, flag):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "out", flag, "5"))
    assert_clean_error(code, err, "unrecognized arguments", flag)
    assert not (tmp_path / "out").exists()


def test_streaming_without_max_steps(capsys, tiny_bert, news_folder, tmp_path):
    argv = train_argv(tiny_bert, news_folder, tmp_path / "out", "--streaming")
    argv.remove("--max-steps")
    argv.remove("1")
    code, _, err = run_cli(capsys, *argv)
    assert_clean_error(code, err, "--streaming", "--max-steps")
    assert not (tmp_path / "out").exists()


def test_streaming_malformed_jsonl(capsys, tiny_bert, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "unterminated\n')
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, path, tmp_path / "out", "--streaming"))
    assert_clean_error(code, err, "bad.jsonl")
    assert not (tmp_path / "out").exists()


# --- config files ------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("yaml_text, key", [
    ("chunck_size: 64\n", "chunck_size"),
    ("learning_rate: 0.1\n", "learning_rate"),
    ("chunk_size: [1, 2]\n", "chunk_size"),
    ("chunk_size: sixty-four\n", "chunk_size"),
    ("data: 5\n", "data"),
    ("line_by_line: maybe\n", "line_by_line"),
    ("eval_size: 1.5\n", "eval_size"),
])
def test_config_unknown_key_or_wrong_type(capsys, tiny_bert, news_folder, tmp_path, command, yaml_text, key):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml_text)
    if command == "train":
        argv = ["train", "--config", cfg, "--print-config"]
    else:
        argv = eval_argv(tiny_bert, news_folder, "--config", cfg)
    code, out, err = run_cli(capsys, *argv)
    assert_clean_error(code, err, f"'{key}'")
    assert out == ""


@pytest.mark.parametrize("yaml_text, key", [
    pytest.param("precision: fp64\n", "precision"),
    pytest.param("1: 2\n", "1"),
])
def test_config_values_checked_in_config_py(capsys, tmp_path, yaml_text, key):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml_text)
    code, _, err = run_cli(capsys, "train", "--config", cfg, "--print-config")
    assert_clean_error(code, err, key)


@pytest.mark.parametrize("name, content, needle", [
    ("bad.yaml", "lr: [1, 2\n", "cannot be parsed"),
    ("list.yaml", "- chunk_size\n- 64\n", "mapping"),
    ("words.yaml", "just some words\n", "mapping"),
    ("binary.yaml", b"\xff\xfe\x00\x01garbage\x00", "cannot be parsed"),
    ("bad.json", '{"lr": 0.1,', "cannot be parsed"),
    ("missing.yaml", None, "does not exist"),
    ("folder.yaml", "DIR", "folder.yaml"),
])
def test_config_file_not_yaml_or_missing(capsys, tmp_path, name, content, needle):
    path = tmp_path / name
    if content == "DIR":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    code, out, err = run_cli(capsys, "train", "--config", path, "--print-config")
    assert_clean_error(code, err, needle)
    assert out == ""


def test_run_json_is_a_valid_config(capsys, finished_run, tmp_path):
    new = tmp_path / "new"
    code, _, err = run_cli(capsys, "train", "--config", finished_run / "run.json", "--output-dir", new)
    assert_ok(code, err)
    old_cfg = json.loads((finished_run / "run.json").read_text())["config"]
    new_cfg = json.loads((new / "run.json").read_text())["config"]
    assert {k: v for k, v in new_cfg.items() if k != "output_dir"} == {k: v for k, v in old_cfg.items() if k != "output_dir"}
    code, out, err = run_cli(capsys, "evaluate", "--config", finished_run / "run.json", "--json")
    assert_ok(code, err)
    assert json.loads(out)["masked_tokens"] > 0


# --- output folders, resume, checkpoints ---------------------------------------------------------

def test_output_folder_of_another_run_is_refused(capsys, run_copy):
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--output-dir", run_copy)
    assert_clean_error(code, err, "--overwrite", "--resume")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("bad", [["--data", "/nonexistent/notes.txt"], ["--chunk-size", "500"], ["--lr", "0"]],
                         ids=["missing-data", "chunk-size", "lr"])
def test_overwrite_with_bad_input_keeps_the_old_run(capsys, run_copy, bad):
    """--overwrite clears the folder only once the new run's input is all valid."""
    before = snapshot(run_copy)
    argv = ["train", "--config", run_copy / "run.json", "--output-dir", run_copy, "--overwrite", *bad]
    if bad[0] == "--data":  # replace the run's data, do not add to it
        cfg = json.loads((run_copy / "run.json").read_text())["config"]
        cfg["data"] = [bad[1]]
        (run_copy.parent / "cfg.json").write_text(json.dumps(cfg))
        argv = ["train", "--config", run_copy.parent / "cfg.json", "--output-dir", run_copy, "--overwrite"]
    code, _, err = run_cli(capsys, *argv)
    assert_clean_error(code, err, bad[0])
    assert snapshot(run_copy) == before


def test_output_dir_is_a_file(capsys, tiny_bert, news_folder, tmp_path):
    out = tmp_path / "out"
    out.write_text("precious")
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out))
    assert_clean_error(code, err, "is a file")
    assert out.read_text() == "precious"


def test_resume_without_a_run(capsys, tiny_bert, news_folder, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--resume"))
    assert_clean_error(code, err, "--resume", "run.json")
    assert not out.exists()


def test_resume_without_a_checkpoint(capsys, run_copy):
    shutil.rmtree(run_copy / "checkpoints")
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--output-dir", run_copy, "--resume")
    assert_clean_error(code, err, "no complete checkpoint")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("change, field", [(["--lr", "0.1"], "lr"), (["--chunk-size", "16"], "chunk_size"),
                                           (["--mlm-probability", "0.3"], "mlm_probability")])
def test_resume_with_a_changed_config(capsys, run_copy, change, field):
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--output-dir", run_copy,
                           "--resume", *change)
    assert_clean_error(code, err, f"{field} was")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("name", [
    "model.safetensors", "optimizer.bin", "scheduler.bin", "trainer_state.json",
    pytest.param("random_states_0.pkl"),
])
def test_resume_from_a_truncated_checkpoint(capsys, run_copy, name):
    newest = sorted((run_copy / "checkpoints").glob("step-*"))[-1]
    target = newest / name
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--output-dir", run_copy, "--resume")
    assert_clean_error(code, err, "damaged", newest.name)
    assert snapshot(run_copy) == before


def test_resume_with_a_damaged_run_json(capsys, run_copy, tiny_bert, news_folder):
    (run_copy / "run.json").write_text('{"config": {"lr": ')
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, run_copy, "--max-steps", "2",
                                               "--save-every", "1", "--resume"))
    assert_clean_error(code, err, "run.json")
    assert snapshot(run_copy) == before


# --- report ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["empty-folder", "missing-folder", "a-file"])
def test_report_without_a_run(capsys, tmp_path, kind):
    folder = tmp_path / "folder"
    if kind == "empty-folder":
        folder.mkdir()
    elif kind == "a-file":
        folder.write_text("x")
    code, _, err = run_cli(capsys, "report", folder)
    assert_clean_error(code, err, "run.json")
    if kind == "empty-folder":
        assert list(folder.iterdir()) == []
    elif kind == "missing-folder":
        assert not folder.exists()


def test_report_with_a_damaged_run_json(capsys, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text('{"config": ')
    code, _, err = run_cli(capsys, "report", folder)
    assert_clean_error(code, err, "run.json")


# --- real processes: the exit code and stderr as a shell sees them --------------------------------

def run_process(args: list, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("HF_DATASETS_DISABLE_PROGRESS_BARS", None)  # the CLI must quiet them itself when piped
    return subprocess.run([sys.executable, "-m", "mlmtune", *map(str, args)], cwd=cwd, input=stdin,
                          capture_output=True, text=True, env=env, timeout=300)


def test_subprocess_missing_data(tiny_bert, tmp_path):
    proc = run_process(train_argv(tiny_bert, "missing.txt", "out"), cwd=tmp_path)
    assert_clean_error(proc.returncode, proc.stderr, "missing.txt")
    assert proc.stdout == "" and not (tmp_path / "out").exists()


def test_subprocess_unknown_flag(tmp_path):
    proc = run_process(["train", "--chunksize", "64"], cwd=tmp_path)
    assert_clean_error(proc.returncode, proc.stderr, "--chunksize")


def test_subprocess_predict_empty_stdin(tiny_bert, tmp_path):
    proc = run_process(["predict", "--model", tiny_bert, "-"], cwd=tmp_path, stdin="")
    assert_clean_error(proc.returncode, proc.stderr, "no text given")


def test_subprocess_bad_yaml(tmp_path):
    (tmp_path / "bad.yaml").write_text("chunk_size: [64\n")
    proc = run_process(["train", "--config", "bad.yaml"], cwd=tmp_path)
    assert_clean_error(proc.returncode, proc.stderr, "bad.yaml", "cannot be parsed")


def test_subprocess_table_without_text_column(tiny_bert, tmp_path):
    """Reading a table shows datasets progress bars and logs; piped, only the error line remains."""
    (tmp_path / "data.csv").write_text("id,body\n" + "".join(f"{i},some words number {i}\n" for i in range(50)))
    proc = run_process(train_argv(tiny_bert, "data.csv", "out"), cwd=tmp_path)
    assert_clean_error(proc.returncode, proc.stderr, "no column 'text'", "--text-column")
    assert not (tmp_path / "out").exists()


def test_a_tracker_that_cannot_start_leaves_no_run(capsys, tiny_bert, news_folder, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # mlflow 3 refuses a file store without it
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--report-to", "mlflow"))
    assert_clean_error(code, err, "--report-to mlflow", "--report-to none")
    assert not out.exists() or not any(out.iterdir())  # no run.json, no metrics: the next run is not refused
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--report-to", "mlflow"))
    assert_ok(code, err)
