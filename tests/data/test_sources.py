"""Text sources -> documents (data/sources.py): .txt files and folders, tables (.jsonl, .json, .csv,
.tsv, .parquet) and their label column, Hub datasets, bbc-news, --eval-data, and encodings.

Bad input is one line `error: <problem>: <fix>` on stderr and exit code 2, and nothing is written: a
run whose input is invalid creates no output folder."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest
from helpers import assert_clean_error, assert_ok, eval_argv, news_text, run_cli, tiny_run, train_args, train_argv

from mlmtune.data.blocks import cut, tokenize
from mlmtune.data.sources import bbc_news_folder, read_corpus
from mlmtune.errors import DataError
from mlmtune.model.tokenizer import load_tokenizer
from mlmtune.training.fit import fit

# --- files, folders, tables -----------------------------------------------------------------------

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


# --- UTF-32, a FIFO, /dev/null --------------------------------------------------------------------

def test_utf32_file_is_named_as_utf32(capsys, tiny_bert, news_folder, tmp_path):
    data = tmp_path / "wide.txt"
    data.write_text("\n\n".join(p.read_text() for p in sorted(Path(news_folder).glob("*.txt"))[:3]), encoding="utf-32")
    for extra in ([], ["--encoding", "utf-16"]):
        code, _, err = run_cli(capsys, *eval_argv(tiny_bert, data, *extra))
        line = assert_clean_error(code, err, "UTF-32", "--encoding utf-32")
        assert "--encoding utf-16" not in line
    code, out, err = run_cli(capsys, *eval_argv(tiny_bert, data, "--encoding", "utf-32", "--json"))
    assert_ok(code, err)
    assert json.loads(out)["masked_tokens"] > 0


@pytest.mark.parametrize("kind", ["fifo", "dev-null"])
def test_data_that_is_not_a_regular_file(capsys, tiny_bert, tmp_path, monkeypatch, kind):
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this system")
        os.mkfifo(tmp_path / "pipe")
        source = "pipe"  # a bare name: it exists, so it is no Hub dataset
        monkeypatch.chdir(tmp_path)
    else:
        if not Path("/dev/null").exists():
            pytest.skip("no /dev/null on this system")
        source = "/dev/null"
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, source, out))
    line = assert_clean_error(code, err, source, "not a regular file")
    assert "no such file" not in line
    assert not out.exists()


# --- documents with classes (--label-column) ------------------------------------------------------

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


# --- --eval-data, .tsv, Hub datasets --------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("case", ["missing", "empty", "blank-name", "binary", "with-eval-split", "with-eval-fraction"])
def test_eval_data_bad_input(tiny_bert, split_news, tmp_path, capsys, command, case):
    train, valid = split_news
    empty, binary = tmp_path / "empty.txt", tmp_path / "data.txt"
    empty.write_text("")
    binary.write_bytes(b"\x00\x01\x02" * 100)
    flags, needles = {
        "missing": (["--eval-data", tmp_path / "nope.txt"], ["--eval-data", "nope.txt", "no such file"]),
        "empty": (["--eval-data", empty], ["--eval-data", "empty.txt", "no text"]),
        "blank-name": (["--eval-data", ""], ["--eval-data", "empty"]),
        "binary": (["--eval-data", binary], ["data.txt", "binary"]),
        "with-eval-split": (["--eval-data", valid, "--eval-split", "test"], ["--eval-data", "--eval-split"]),
        "with-eval-fraction": (["--eval-data", valid, "--eval-fraction", "0.2"], ["--eval-fraction", "drop"]),
    }[case]
    out = tmp_path / "run"
    args = (train_args(tiny_bert, out, "--data", train, "--max-steps", 2) if command == "train"
            else ["evaluate", "--model", tiny_bert, "--data", train, "--chunk-size", 64])
    code, _, err = run_cli(capsys, *args, *flags)
    assert_clean_error(code, err, *needles)
    assert not out.exists()  # nothing written


def test_a_tsv_file_is_read_as_a_table(tmp_path):
    from mlmtune.data.sources import read_corpus

    path = tmp_path / "reviews.tsv"
    rows = ['He said "fine", then left.', "Commas, stay; in the text", "'single' and \"double\" quotes"]
    path.write_text("id\tbody\n" + "".join(f"{i}\t{text}\n" for i, text in enumerate(rows)), encoding="utf-8")
    assert read_corpus([str(path)], text_column="body").train == rows
    from mlmtune.errors import DataError

    with pytest.raises(DataError, match="no column 'text'"):
        read_corpus([str(path)])


@pytest.mark.parametrize("kind", ["empty folder", "tsv without the text column"])
def test_a_bad_eval_data_source_is_named_as_eval_data(kind, tiny_bert, news_folder, tmp_path, capsys):
    """An --eval-data folder without .txt files said 'point --data at a folder', and a .tsv without the
    text column did not say which flag: the user looked at the wrong option."""
    if kind == "empty folder":
        source = tmp_path / "eval"
        source.mkdir()
    else:
        source = tmp_path / "eval.tsv"
        source.write_text("a\tb\nx\ty\n")
    code, _, err = run_cli(capsys, "train", "--model", tiny_bert, "--data", news_folder, "--eval-data", source,
                           "--output-dir", tmp_path / "out", "--max-steps", "1")
    assert_clean_error(code, err, "--eval-data")
    assert "--data at" not in err and not (tmp_path / "out").exists()


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
    # the tokenize-once cache fingerprints both splits (data/cache.py) before they are read for the text
    assert calls[-2:] == [("imdb", "train"), ("imdb", "test")]
    assert set(calls) == {("imdb", "train"), ("imdb", "test")}
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["holdout"] == "split"  # no documents taken from the training split
    tokenizer = load_tokenizer(tiny_bert)
    assert run["data"]["eval_examples"] == len(cut(tokenize(tables["test"], tokenizer), 64))
    assert run["data"]["train_examples"] == len(cut(tokenize(tables["train"], tokenizer), 64))
