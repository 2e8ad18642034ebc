"""Phase 1 of a run (training/prepare.py): what train says about its data, the evaluation masks
independent of --mlm-probability, and data too small for a batch or an evaluation."""

from __future__ import annotations

import json

import pytest
from helpers import assert_clean_error, assert_ok, run_cli, strict_json, tiny_run, train_args, train_argv

from mlmtune.run.metrics_log import read_metrics
from mlmtune.training.fit import fit

# --- what train prints and reads ----------------------------------------------------------------

def test_train_prints_a_data_summary(eval_data_run, capsys, tiny_bert, split_news, tmp_path):
    train, _ = split_news
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--max-steps", 1,
                                                    "--gradient-accumulation-steps", 2))
    assert_ok(code, err)
    data = json.loads((out / "run.json").read_text())
    d = data["data"]
    line = next(line for line in (stdout + err).splitlines() if line.startswith("data: "))
    for figure in (d["documents"], d["train_examples"], d["train_tokens"], d["eval_examples"], d["eval_tokens"],
                   data["steps_per_epoch"]):
        assert f"{figure:,}" in line, (figure, line)
    assert "global batch of 16 (8 per process x 1 process x 2 accumulation)" in line


def test_line_by_line_says_how_many_lines_it_cut(tiny_bert, tokenizer, tmp_path, capsys):
    lines = [("word " * n).strip() for n in (3, 30, 5, 40, 8, 2, 50, 4, 6, 7, 9, 12)] * 3
    lines = [f"{i} {line}" for i, line in enumerate(lines)]
    data = tmp_path / "lines.txt"
    data.write_text("\n".join(lines), encoding="utf-8")
    expected = sum(len(tokenizer(line)["input_ids"]) > 16 for line in lines)
    assert 0 < expected < len(lines)
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", data, "--line-by-line",
                                                    "--max-length", 16, "--max-steps", 1, "--batch-size", 4))
    assert_ok(code, err)
    assert f"cut {expected} of {len(lines)} lines at --max-length 16" in stdout + err
    assert json.loads((out / "run.json").read_text())["data"]["lines_truncated"] == expected


def test_the_same_file_twice_is_counted_and_said(capsys, tmp_path, tiny_bert, news_folder):
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--data", news_folder))
    assert_ok(code, err)
    assert "dropped 40 repeated documents" in stdout + err
    run = strict_json(out / "run.json")
    assert run["data"]["duplicates_dropped"] == 40 and run["data"]["documents"] == 40


def test_eval_masking_rate_is_independent_of_the_training_rate(tiny_bert, news_folder, tmp_path):
    a = fit(tiny_run(tiny_bert, news_folder, tmp_path / "a", max_steps=2, mlm_probability=0.4))
    b = fit(tiny_run(tiny_bert, news_folder, tmp_path / "b", max_steps=2))
    assert a["eval_masked_tokens"] == b["eval_masked_tokens"]
    train_a = [r for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if r["type"] == "train"]
    train_b = [r for r in read_metrics(tmp_path / "b" / "metrics.jsonl") if r["type"] == "train"]
    assert sum(r["masked_tokens"] for r in train_a) > 2 * sum(r["masked_tokens"] for r in train_b)


# --- data too small for a batch or an evaluation --------------------------------------------------


def test_batch_larger_than_the_data(capsys, tiny_bert, news_folder, tmp_path):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "out", "--batch-size", "100000"))
    assert_clean_error(code, err, "--batch-size")
    assert not (tmp_path / "out").exists()


def test_train_eval_masks_that_mask_nothing(capsys, tiny_bert, news_folder, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--eval-size", "2",
                                               "--eval-mlm-probability", "0.000001"))
    assert_clean_error(code, err, "--eval-mlm-probability")
    assert not out.exists()


@pytest.mark.parametrize("extra", [[], ["--streaming", "--max-steps", "2"]], ids=["text", "stream"])
def test_a_masking_rate_that_leaves_steps_empty_is_refused_before_training(capsys, tiny_bert, news_folder, tmp_path,
                                                                           extra):
    """--mlm-probability 0.0005 trained on nothing (masked_tokens 0, loss 0.0) and exited 0."""
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--mlm-probability", "0.0005", *extra))
    line = assert_clean_error(code, err, "--mlm-probability 0.0005", "tokens per optimizer step", "3 or more")
    expected = float(line.split(" masks ")[1].split()[0])
    assert 0.05 < expected < 0.07  # 0.0005 x ~32 tokens x 4 examples: the figure is computed, not made up
    assert not out.exists()


def test_the_floor_lets_an_ordinary_small_batch_train(capsys, tiny_bert, news_folder, tmp_path):
    """4 blocks of 32 at 0.03 expect ~3.8 masked tokens: at the floor, not below."""
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "out", "--mlm-probability", "0.03"))
    assert_ok(code, err)


def test_train_size_below_a_batch_names_train_size(capsys, tmp_path, tiny_bert, news_folder):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "o", "--train-size", "1"))
    assert_clean_error(code, err, "raise --train-size to at least 4")


# --- a run_mlm user's text file: one example a line ------------------------------------------------

def one_example_a_line(news_folder, path, n: int = 300, blank_lines: bool = False) -> list[str]:
    """`n` sentences of the news articles, one a line (as run_mlm.py's --train_file reads a file)."""
    import re
    from pathlib import Path

    text = " ".join(p.read_text(encoding="utf-8") for p in sorted(Path(news_folder).glob("*.txt")))
    sentences = [" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) > 4][:n]
    path.write_text(("\n\n" if blank_lines else "\n").join(sentences) + "\n", encoding="utf-8")
    return sentences


def test_a_file_of_one_example_a_line_says_how_it_is_read(tiny_bert, news_folder, tmp_path, capsys):
    """`--data train.txt` with 2,000 lines was one document, silently: run_mlm's --train_file makes each
    line an example, and --line-by-line pads lines instead of concatenating them."""
    data = tmp_path / "train.txt"
    sentences = one_example_a_line(news_folder, data)
    code, out, err = run_cli(capsys, *train_argv(tiny_bert, data, tmp_path / "whole"))
    assert_ok(code, err)
    notes = [line for line in out.splitlines() if line.startswith(f"note: {data} has 300 lines")]
    assert len(notes) == 1 and "--line-per-document" in notes[0]
    assert strict_json(tmp_path / "whole" / "run.json")["data"]["documents"] == 1
    # --line-per-document: each line a document, concatenated and cut (blocks of 32), not padded lines
    code, out, err = run_cli(capsys, *train_argv(tiny_bert, data, tmp_path / "lines", "--line-per-document"))
    assert_ok(code, err)
    assert "note: " + str(data) not in out
    record = strict_json(tmp_path / "lines" / "run.json")
    assert record["data"]["documents"] == len(set(sentences)) and record["data"]["holdout"] == "documents"
    assert record["config"]["line_per_document"] and "blocks of 32 tokens" in out


def test_no_note_for_a_file_with_paragraphs_or_few_lines(news_folder, tmp_path):
    from mlmtune.data.sources import read_corpus

    paragraphs, few = tmp_path / "paragraphs.txt", tmp_path / "few.txt"
    one_example_a_line(news_folder, paragraphs, blank_lines=True)
    one_example_a_line(news_folder, few, n=20)
    assert read_corpus([str(paragraphs)]).notes == [] and read_corpus([str(few)]).notes == []
    assert read_corpus([str(few)], line_by_line=True).notes == []  # already one document a line
