"""`mlmtune evaluate --config OUT/run.json` (cli/evaluate.py): the run's own model on the run's own
evaluation set, its paths read where the run was made, and its tokenizer with the added words; a run
without a finished model, or one that streamed, says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import assert_clean_error, assert_ok, fit_tiny_run, run_cli, train_args, vocab_train_args, words_file


def test_evaluate_a_run_json_without_its_model_says_so(run_copy, tiny_bert, capsys):
    """`evaluate --config OUT/run.json` of a run that has not saved its model (interrupted, or still
    running) silently scored the base model: it is an error naming both ways on."""
    out = run_copy
    (out / "results.json").unlink()  # as before the final save
    code, _, err = run_cli(capsys, "evaluate", "--config", out / "run.json")
    assert_clean_error(code, err, "no finished model", "--model")
    # --model still scores whatever is named, the base included
    code, out_text, _ = run_cli(capsys, "evaluate", "--config", out / "run.json", "--model", tiny_bert)
    assert code == 0 and "perplexity" in out_text


def test_evaluate_a_run_json_from_another_folder_reads_the_runs_own_data(tiny_bert, news_folder, tmp_path,
                                                                          monkeypatch, capsys):
    """run.json keeps --data as typed (`--data news`): `evaluate --config ../a/runs/x/run.json` from
    another folder read that folder's own `news` (another text: silently another evaluation set)."""
    import shutil

    here, elsewhere = tmp_path / "a", tmp_path / "b"
    here.mkdir()
    elsewhere.mkdir()
    shutil.copytree(news_folder, here / "news")
    (elsewhere / "news").mkdir()
    for i in range(40):
        (elsewhere / "news" / f"{i}.txt").write_text(f"Completely different text number {i}, about cooking. " * 20)
    monkeypatch.chdir(here)
    fit_tiny_run(tiny_bert, news_folder, Path("runs/x"), data=["news"])
    code, first, err = run_cli(capsys, "evaluate", "--config", "runs/x/run.json", "--json")
    assert code == 0, err
    monkeypatch.chdir(elsewhere)
    code, second, err = run_cli(capsys, "evaluate", "--config", here / "runs/x/run.json", "--json")
    assert code == 0, err
    assert json.loads(second)["perplexity"] == pytest.approx(json.loads(first)["perplexity"])
    # a --data flag is the user's own, relative to where they are
    code, third, err = run_cli(capsys, "evaluate", "--config", here / "runs/x/run.json", "--json", "--data", "news")
    assert code == 0, err
    assert json.loads(third)["perplexity"] != pytest.approx(json.loads(first)["perplexity"])


def test_evaluate_with_a_run_json_scores_the_runs_own_model_on_its_own_eval_set(eval_data_run, capsys):
    results = json.loads((eval_data_run / "results.json").read_text())
    code, out, err = run_cli(capsys, "evaluate", "--config", eval_data_run / "run.json", "--json")
    assert code == 0, err
    assert [line for line in err.splitlines() if line.startswith("note: scoring the run's own model")]
    row = json.loads(out)
    assert row["model"] == str(eval_data_run)
    assert row["perplexity"] == pytest.approx(results["eval_perplexity"], rel=1e-6)
    assert row["masked_tokens"] == results["eval_masked_tokens"]


def test_evaluate_with_a_streamed_runs_json_says_its_eval_set_differs(tiny_bert, split_news, tmp_path, capsys):
    train, _ = split_news
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--streaming", "--max-steps", 1,
                                               "--eval-size", 10))
    assert_ok(code, err)
    code, _, err = run_cli(capsys, "evaluate", "--config", out / "run.json", "--json")
    assert code == 0 and "its numbers are not the run's" in err


def test_evaluate_with_tokenizer_scores_a_run_with_its_added_words(capsys, tmp_path, tiny_bert, domain_folder):
    """A checkpoint without tokenizer files trained with --tokenizer T --add-tokens: the run's folder holds
    T plus the new words. `evaluate --config OUT/run.json --model OUT` (the report's own command) loaded T
    for the run, scoring it on ids without its words, silently; it must score what training scored."""
    import shutil

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(tiny_bert) / name, bare / name)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *vocab_train_args(str(bare), domain_folder, out, "--tokenizer", tiny_bert,
                                               "--add-tokens", words_file(tmp_path), "--max-steps", "2"))
    assert_ok(code, err)
    final = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["type"] == "eval"][-1]
    code, stdout, err = run_cli(capsys, "evaluate", "--config", out / "run.json", "--model", out, "--json")
    assert_ok(code, err)
    got = json.loads(stdout.splitlines()[0])
    assert got["perplexity"] == pytest.approx(final["perplexity"], rel=1e-4)
    code, stdout, err = run_cli(capsys, "evaluate", "--config", out / "run.json", "--model", bare, "--model", out,
                                "--json")
    assert_ok(code, err)
    base, tuned = (json.loads(line) for line in stdout.splitlines())
    assert tuned["perplexity"] == pytest.approx(final["perplexity"], rel=1e-4) and tuned["own_tokenization"]


def last_eval(run: Path) -> dict:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["type"] == "eval"][-1]


def test_evaluate_a_run_folder_scores_on_the_runs_own_eval_set(finished_run, tiny_bert, capsys):
    """`mlmtune evaluate --model runs/demo` scored other masks (143.25 on 15,755 tokens against the run's
    142.93 on 5,685): it took the default --data, --eval-size and --chunk-size, not the run's."""
    final = last_eval(finished_run)
    code, out, err = run_cli(capsys, "evaluate", "--model", finished_run, "--json")
    assert_ok(code, err)
    row = json.loads(out)
    assert row["perplexity"] == pytest.approx(final["perplexity"], rel=1e-6)
    assert (row["accuracy"], row["masked_tokens"]) == (pytest.approx(final["accuracy"]), final["masked_tokens"])
    notes = [line for line in err.splitlines() if line.startswith("note: scoring on the evaluation set of the run")]
    assert len(notes) == 1 and str(finished_run) in notes[0] and "eval size 8" in notes[0]
    # beside its base, on the same masks: the base is scored on the run's evaluation set too
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--model", finished_run, "--json")
    assert_ok(code, err)
    base, tuned = (json.loads(line) for line in out.splitlines())
    assert tuned["perplexity"] == pytest.approx(final["perplexity"], rel=1e-6)
    assert base["masked_tokens"] == final["masked_tokens"]
    # a flag still chooses: another --eval-size is another evaluation set, and the note says it was given
    code, out, err = run_cli(capsys, "evaluate", "--model", finished_run, "--eval-size", "4", "--json")
    assert_ok(code, err)
    assert json.loads(out)["masked_tokens"] < final["masked_tokens"] and "with --eval-size as given" in err


def test_evaluate_shows_progress_on_stderr_without_carriage_returns_when_piped(finished_run, capsys):
    """A piped evaluate ran 355 s without a word; a bar's \\r frames would litter a log."""
    code, out, err = run_cli(capsys, "evaluate", "--model", finished_run, "--json")
    assert_ok(code, err)
    assert f"evaluating {finished_run} on 8 examples" in err and f"evaluated {finished_run} in " in err
    assert "\r" not in err and out.count("\n") == 1  # stdout: the one JSON line


def test_the_masked_word_measure_respects_eval_size(tiny_bert, news_folder, capsys):
    from helpers import eval_argv

    rows = {}
    for size in (2, 8):
        code, out, err = run_cli(capsys, *eval_argv(tiny_bert, news_folder, "--json")[:-0 or None], "--eval-size",
                                 str(size))
        assert_ok(code, err)
        rows[size] = json.loads(out)
    assert 0 < rows[2]["masked_words"] < rows[8]["masked_words"]
