"""Issue 13, data and runs: --eval-data, training further, run.json as a config without traps, the
data summary, .tsv tables, --version and help, and what trackers and results.json carry."""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
from pathlib import Path

import pytest
from helpers import assert_clean_error, assert_ok, run_cli, texts_of, train_args

from mlmtune.cli import build_parser
from mlmtune.cli.args import config_from_args
from mlmtune.config import resolve
from mlmtune.data.blocks import cut, fingerprint, tokenize
from mlmtune.run.metrics_log import read_metrics

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(scope="module")
def split_news(news_folder, tmp_path_factory) -> tuple[str, str]:
    """The 40 articles as a training folder of 30 and a validation folder of 10."""
    root = tmp_path_factory.mktemp("split-news")
    files = sorted(Path(news_folder).glob("*.txt"))
    for name, part in (("train", files[:30]), ("valid", files[30:])):
        (root / name).mkdir()
        for f in part:
            (root / name / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    return str(root / "train"), str(root / "valid")


@pytest.fixture(scope="module")
def eval_data_run(tiny_bert, split_news, tmp_path_factory):
    """A 4-step run on the training folder, evaluated on the validation folder (the whole of it)."""
    from mlmtune.cli import main

    train, valid = split_news
    out = tmp_path_factory.mktemp("eval-data") / "run"
    code = main([str(a) for a in train_args(tiny_bert, out, "--data", train, "--eval-data", valid,
                                            "--eval-size", "none", "--max-steps", 4)])
    assert code == 0
    return out


# --- --eval-data ---------------------------------------------------------------------------------

def test_eval_data_is_the_whole_eval_set_and_nothing_is_held_out_of_data(eval_data_run, split_news, tokenizer):
    train, valid = split_news
    data = json.loads((eval_data_run / "run.json").read_text())["data"]
    assert data["holdout"] == "eval-data"
    assert data["eval_fingerprint"] == fingerprint(cut(tokenize(texts_of(valid), tokenizer, progress=False), 64))
    all_train = cut(tokenize(texts_of(train), tokenizer, progress=False), 64)
    assert (data["train_examples"], data["train_fingerprint"]) == (len(all_train), fingerprint(all_train))
    assert json.loads((eval_data_run / "run.json").read_text())["config"]["eval_data"] == [valid]


def test_eval_data_drops_repeats_and_training_text_and_is_capped_by_eval_size(split_news, tokenizer, tmp_path):
    from mlmtune.config import build_config
    from mlmtune.data.blocks import splits_from_config

    train, valid = split_news
    copy = tmp_path / "valid-plus.txt"  # one validation article twice, one training article
    copy.write_text(texts_of(valid)[0], encoding="utf-8")
    leak = tmp_path / "leak.txt"
    leak.write_text(texts_of(train)[0], encoding="utf-8")
    cfg = build_config({"data": [train], "eval_data": [valid, str(copy), str(leak)], "chunk_size": 64,
                        "eval_size": None})
    splits = splits_from_config(cfg, tokenizer, 512)
    assert splits.duplicates == 2
    assert fingerprint(splits.eval) == fingerprint(cut(tokenize(texts_of(valid), tokenizer, progress=False), 64))
    capped = splits_from_config(cfg.replace(eval_size=7), tokenizer, 512)
    assert len(capped.eval) == 7


def test_resume_refuses_another_eval_source(eval_data_run, split_news, capsys):
    train, _ = split_news
    code, _, err = run_cli(capsys, "train", "--config", eval_data_run / "run.json", "--resume", "--eval-data", train)
    assert_clean_error(code, err, "eval_data")


def test_resume_refuses_a_changed_eval_file(tiny_bert, split_news, tmp_path, capsys):
    train, valid = split_news
    mine = tmp_path / "valid"
    mine.mkdir()
    for text in texts_of(valid):
        (mine / f"{len(list(mine.iterdir())):03d}.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--eval-data", mine, "--max-steps", 2))
    assert_ok(code, err)
    (mine / "000.txt").write_text("Something else entirely. " * 40, encoding="utf-8")
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-steps", 3)
    assert_clean_error(code, err, "evaluation data changed")


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


def test_streaming_takes_eval_data_as_its_eval_set(tiny_bert, split_news, tmp_path, capsys):
    train, valid = split_news
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--eval-data", valid,
                                                    "--streaming", "--max-steps", 2, "--eval-size", 20))
    assert_ok(code, err)
    data = json.loads((out / "run.json").read_text())["data"]
    assert data["holdout"] == "eval-data" and data["eval_examples"] == 20
    assert "from --eval-data" in stdout + err


# --- training further ---------------------------------------------------------------------------

def test_resume_with_more_steps_continues_the_finished_run(tiny_bert, split_news, tmp_path, capsys):
    train, _ = split_news
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--max-steps", 4))
    assert_ok(code, err)
    first = json.loads((out / "run.json").read_text())
    code, stdout, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-steps", 8)
    assert_ok(code, err)
    assert "training further" in stdout + err
    run = json.loads((out / "run.json").read_text())
    assert run["total_steps"] == 8 and run["config"]["max_steps"] == 8
    assert [(c["at_step"], c["total_steps"], c["max_steps"]) for c in run["continued"]] == [(4, 4, 4)]
    assert "--max-steps=4" in first["command"] and run["config"]["resume"] is False
    assert run["command"] == first["command"].replace("--max-steps=4", "--max-steps=8")  # the run as it now stands
    assert json.loads((out / "results.json").read_text())["steps"] == 8
    train_records = {r["step"]: r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "train"}
    assert sorted(train_records) == list(range(1, 9))
    # the schedule rebuilt for 8 steps (linear, no warm-up): after step s the rate is 3e-3 * (8 - s) / 8,
    # so the run goes on learning instead of staying at the old schedule's 0
    assert train_records[4]["lr"] == pytest.approx(0.0)
    for s in (5, 6, 7, 8):
        assert train_records[s]["lr"] == pytest.approx(3e-3 * (8 - s) / 8)
    assert [p.name for p in sorted((out / "checkpoints").iterdir())][-1] == "step-0000008"
    # a second continuation keeps both earlier totals
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-steps", 10)
    assert_ok(code, err)
    assert [c["total_steps"] for c in json.loads((out / "run.json").read_text())["continued"]] == [4, 8]


def test_resume_with_fewer_steps_than_done_is_one_line(tiny_bert, split_news, tmp_path, capsys):
    train, _ = split_news
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--max-steps", 4))
    assert_ok(code, err)
    before = (out / "run.json").read_text()
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-steps", 3)
    assert_clean_error(code, err, "--max-steps 3", "4")
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-steps", "none",
                           "--max-time", "5s")
    assert_clean_error(code, err, "continues by steps")
    assert (out / "run.json").read_text() == before


def test_resume_with_more_epochs_continues(tiny_bert, split_news, tmp_path, capsys):
    train, _ = split_news
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--epochs", 1, "--batch-size", 64))
    assert_ok(code, err)
    per_epoch = json.loads((out / "run.json").read_text())["steps_per_epoch"]
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--epochs", 2)
    assert_ok(code, err)
    assert json.loads((out / "results.json").read_text())["steps"] == 2 * per_epoch
    assert json.loads((out / "run.json").read_text())["continued"][0]["epochs"] == 1


def test_a_budget_run_ends_mid_epoch_with_a_checkpoint_and_continues_by_time(tiny_bert, split_news, tmp_path, capsys):
    """The demo's shape: a --max-time run stops mid-epoch; its last step is saved, so it can go on."""
    train, _ = split_news
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--max-time", "1s",
                                               "--batch-size", 2, "--log-every", 1000))
    assert_ok(code, err)
    first = json.loads((out / "results.json").read_text())
    assert first["steps"] % json.loads((out / "run.json").read_text())["steps_per_epoch"] != 0  # mid-epoch
    assert (out / "checkpoints" / f"step-{first['steps']:07d}").is_dir()
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-steps", 1000)
    assert_clean_error(code, err, "continues by time")
    more = math.ceil(first["budget_seconds_spent"]) + 1  # a slow step on a busy machine overshoots the 1 s
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-time", f"{more}s")
    assert_ok(code, err)
    second = json.loads((out / "results.json").read_text())
    assert second["steps"] > first["steps"] and second["budget_seconds_spent"] >= more
    run = json.loads((out / "run.json").read_text())
    assert run["max_time_seconds"] == more and run["continued"][0]["max_time_seconds"] == 1
    code, _, err = run_cli(capsys, "train", "--config", out / "run.json", "--resume", "--max-time", "1s")
    assert_clean_error(code, err, "--max-time 1s", "already spent")


# --- run.json as a config -----------------------------------------------------------------------

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


def test_run_json_command_runs_as_written(tiny_bert, split_news, tmp_path, capsys):
    train, valid = split_news
    out = tmp_path / "my run"  # a space, a value that starts with '-', a quote: all must survive
    args = train_args(tiny_bert, out, "--data", train, "--eval-data", valid, "--max-steps", 2, "--overwrite",
                      "--probe", "-- it's [MASK] --", "--max-grad-norm", "none", "--line-by-line")
    code, _, err = run_cli(capsys, *args)
    assert_ok(code, err)
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["overwrite"] is False and run["config"]["resume"] is False
    words = shlex.split(run["command"])
    assert words[:2] == ["mlmtune", "train"] and "--overwrite" not in words
    parsed = build_parser().parse_args(words[1:])
    assert resolve(config_from_args(parsed)).to_dict() == run["config"]  # run.json holds the resolved config


def test_to_command_round_trips_every_kind_of_field():
    from mlmtune.config import build_config, to_command

    cfg = build_config({"data": ["a b.txt", "-x"], "eval_size": None, "report": False, "lr": 1e-4,
                        "max_time": "90s", "whole_word_mask": True, "probe": ["The [MASK]."]})
    parsed = build_parser().parse_args(shlex.split(to_command(cfg))[1:])
    assert config_from_args(parsed).to_dict() == cfg.to_dict()
    assert to_command(build_config({})) == "mlmtune train"


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
                                                    "--max-length", 16, "--max-steps", 1, "--batch-size", 2))
    assert_ok(code, err)
    assert f"cut {expected} of {len(lines)} lines at --max-length 16" in stdout + err
    assert json.loads((out / "run.json").read_text())["data"]["lines_truncated"] == expected


def test_a_tsv_file_is_read_as_a_table(tmp_path):
    from mlmtune.data.sources import read_corpus

    path = tmp_path / "reviews.tsv"
    rows = ['He said "fine", then left.', "Commas, stay; in the text", "'single' and \"double\" quotes"]
    path.write_text("id\tbody\n" + "".join(f"{i}\t{text}\n" for i, text in enumerate(rows)), encoding="utf-8")
    assert read_corpus([str(path)], text_column="body").train == rows
    from mlmtune.errors import DataError

    with pytest.raises(DataError, match="no column 'text'"):
        read_corpus([str(path)])


def test_a_tsv_file_streams_as_a_table(tmp_path):
    from mlmtune.data.streaming import open_documents

    path = tmp_path / "reviews.tsv"
    path.write_text('text\tlabel\nA "quoted" start\t1\nsecond row\t0\n', encoding="utf-8")
    assert [ex["text"] for ex in open_documents([str(path)])] == ['A "quoted" start', "second row"]


# --- --version and help -------------------------------------------------------------------------

def test_version_and_top_level_help(capsys):
    import mlmtune

    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"mlmtune {mlmtune.__version__}"
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "your own text" in out and "fill in blanks" in out and "--eval-data" in out


def test_no_flag_shows_its_default_twice():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    seen = 0
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.help:
                assert action.help.count("(default:") <= 1, (name, action.option_strings, action.help)
                seen += 1
    assert seen > 60
    train = subparsers.choices["train"]
    eval_split = next(a for a in train._actions if "--eval-split" in a.option_strings)
    assert eval_split.help.endswith("(default: hold out documents)")


# --- trackers, metrics.jsonl and results.json ---------------------------------------------------

def test_trackers_get_lr_eval_loss_and_grad_norm(tiny_bert, split_news, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from accelerate import Accelerator

    from mlmtune.config import build_config
    from mlmtune.training.fit import fit

    logged: dict[str, list] = {}
    original = Accelerator.log

    def capture(self, values, step=None, log_kwargs=None):
        for key, value in values.items():
            logged.setdefault(key, []).append(value)
        return original(self, values, step=step, log_kwargs=log_kwargs or {})

    monkeypatch.setattr(Accelerator, "log", capture)
    train, _ = split_news
    fit(build_config(dict(model=tiny_bert, data=[train], output_dir=str(tmp_path / "run"), chunk_size=64,
                          batch_size=8, max_steps=3, log_every=1, report=False, precision="fp32",
                          report_to="tensorboard")))
    assert len(logged["train/lr"]) == len(logged["train/grad_norm"]) == 3
    assert all(v > 0 for v in logged["train/grad_norm"])
    assert logged["eval/loss"] and all(v > 0 for v in logged["eval/loss"])


def test_grad_norm_is_the_norm_before_clipping(tiny_bert, split_news, tmp_path, capsys):
    train, _ = split_news
    for clip in ("1e-4", "none"):
        out = tmp_path / clip
        code, _, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--max-steps", 3,
                                                   "--max-grad-norm", clip))
        assert_ok(code, err)
        records = [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "train"]
        assert len(records) == 3 and all(r["grad_norm"] > 1e-3 for r in records)  # far above the clip
        assert all(isinstance(r["time"], float) for r in records)


def test_results_carry_baseline_accuracy_and_utc_times(eval_data_run):
    results = json.loads((eval_data_run / "results.json").read_text())
    baseline = next(r for r in read_metrics(eval_data_run / "metrics.jsonl") if r["type"] == "eval" and r["step"] == 0)
    assert results["baseline_accuracy"] == baseline["accuracy"]
    assert ISO_UTC.match(results["started_at"]) and ISO_UTC.match(results["finished_at"])
    assert results["started_at"] <= results["finished_at"]
