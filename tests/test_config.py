"""config.py: YAML, run.json and the flags are views of the same dataclasses, and every option is
checked before anything runs: a bad value is one `error:` line, exit 2, and nothing written."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml
from helpers import assert_clean_error, assert_ok, eval_argv, run_cli, train_args, train_argv, vocab_train_args

from mlmtune.cli import build_parser, main
from mlmtune.cli.args import config_from_args
from mlmtune.config import (
    FOLLOWING,
    build_config,
    load_config_file,
    parse_count,
    parse_duration,
    resolve,
    resume_mismatch,
    to_command,
    to_yaml,
    validate,
)
from mlmtune.data.sources import read_corpus
from mlmtune.data.split import heldout_texts, training_texts
from mlmtune.errors import ConfigError

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


def test_print_config_round_trips(tmp_path, capsys):
    assert main(["train", "--print-config", "--lr", "3e-4", "--data", "a.txt", "--data", "b.txt",
                 "--whole-word-mask", "--eval-size", "none"]) == 0
    text = capsys.readouterr().out
    (tmp_path / "c.yaml").write_text(text)
    cfg = build_config(load_config_file(tmp_path / "c.yaml"))
    assert cfg.lr == 3e-4 and cfg.data == ["a.txt", "b.txt"] and cfg.whole_word_mask and cfg.eval_size is None
    assert to_yaml(cfg) == text


def test_flags_override_the_file(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("lr: 1.0e-3\nbatch_size: 4\nmodel: minilm\n")
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--batch-size", "8", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["lr"] == 1e-3 and printed["batch_size"] == 8


@pytest.mark.parametrize("content, key", [
    ("lr: 1e-3\nbatchsize: 4\n", "batchsize"),
    ("batch_size: many\n", "batch_size"),
    ("whole_word_mask: 3\n", "whole_word_mask"),
    ("data: 5\n", "data"),
    ("mlm_probability: [0.1]\n", "mlm_probability"),
])
def test_unknown_keys_and_wrong_types_name_the_key(tmp_path, capsys, content, key):
    path = tmp_path / "c.yaml"
    path.write_text(content)
    assert main(["train", "--config", str(path), "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and f"'{key}'" in err and len(err.splitlines()) == 1


def test_yaml_strings_that_are_numbers_are_read_as_numbers():
    # YAML 1.1 reads `5e-5` as a string; accept it for a float field
    assert build_config({"lr": "5e-5"}).lr == 5e-5


def test_a_run_json_is_a_valid_config(tmp_path):
    run = {"config": build_config({"lr": 2e-4, "model": "x"}).to_dict(), "versions": {"torch": "2"}, "processes": 1}
    (tmp_path / "run.json").write_text(json.dumps(run))
    cfg = build_config(load_config_file(tmp_path / "run.json"))
    assert cfg.lr == 2e-4 and cfg.model == "x"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_parses_and_validates(path):
    text = path.read_text()
    assert text.startswith("#") and "Run: mlmtune train --config" in text  # a header saying what and how
    cfg = build_config(load_config_file(path))
    validate(cfg)


def test_examples_reproduce_the_seeds():
    imdb = build_config(load_config_file(Path(__file__).parent.parent / "examples" / "seed_imdb.yaml"))
    assert (imdb.model, imdb.data, imdb.chunk_size, imdb.train_size, imdb.eval_size, imdb.batch_size, imdb.lr,
            imdb.epochs) == ("bert-base-uncased", ["imdb"], 128, 10000, 1000, 16, 5e-5, 10)
    lines = build_config(load_config_file(Path(__file__).parent.parent / "examples" / "seed_line_by_line.yaml"))
    assert lines.line_by_line and lines.max_length == 512 and lines.batch_size == 2 and lines.epochs == 2


def test_resume_mismatch_names_the_field():
    saved = build_config({"lr": 1e-4}).to_dict()
    assert "lr" in resume_mismatch(saved, build_config({"lr": 2e-4}))
    assert resume_mismatch(saved, build_config({"lr": 1e-4, "log_every": 3, "resume": True})) is None


def test_resolve_fills_in_the_defaults_that_follow_other_options():
    cfg = resolve(build_config({"batch_size": 8, "head_lr": 2e-3, "add_tokens": "10"}))
    assert (cfg.eval_batch_size, cfg.head_init, cfg.new_token_lr) == (16, "warm", 2e-3)
    given = resolve(build_config({"batch_size": 8, "eval_batch_size": 5, "head_init": "prefit"}))
    assert (given.eval_batch_size, given.head_init, given.new_token_lr) == (5, "prefit", None)  # no --add-tokens
    assert resolve(build_config({"streaming": True, "eval_size": None, "max_steps": 2})).eval_size == 1000
    assert resolve(build_config({"eval_size": None})).eval_size is None  # in memory, none means all
    assert resolve(cfg) == cfg


def test_print_config_shows_the_resolved_values(capsys):
    code, out, _ = run_cli(capsys, "train", "--batch-size", "4", "--print-config")
    assert code == 0
    shown = yaml.safe_load(out.replace("# ", "#"))
    assert shown["eval_batch_size"] == 8 and shown["head_init"] == "warm"


def test_the_command_leaves_out_what_follows_and_a_resume_accepts_a_run_json_that_left_it_null():
    cfg = resolve(build_config({"batch_size": 4, "add_tokens": "10", "head_lr": 3e-3}))
    words = shlex.split(to_command(cfg))
    assert not any(w.startswith(("--eval-batch-size", "--head-init", "--new-token-lr")) for w in words)
    assert resolve(config_from_args(build_parser().parse_args(words[1:]))) == cfg
    own = resolve(build_config({"batch_size": 4, "eval_batch_size": 6}))
    assert "--eval-batch-size=6" in to_command(own)  # a value of its own stays
    older = {**build_config({"batch_size": 4}).to_dict(), "eval_batch_size": None, "head_init": None}
    assert resume_mismatch(older, resolve(build_config({"batch_size": 4}))) is None
    assert "head_init" in resume_mismatch(older, resolve(build_config({"batch_size": 4, "head_init": "random"})))


def test_validation_collects_every_problem():
    with pytest.raises(ConfigError) as err:
        validate(build_config({"mlm_probability": 0.0, "batch_size": 0, "mask_replace_prob": 0.9,
                               "random_replace_prob": 0.2}))
    message = str(err.value)
    for flag in ("--mlm-probability", "--batch-size", "--mask-replace-prob"):
        assert flag in message


def test_readme_lists_every_flag():
    from mlmtune.config import FIELDS

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [name for name in FIELDS if f"`--{name.replace('_', '-')}`" not in readme]
    assert not missing, f"README lacks {missing}"
    head = readme.splitlines()[:5]  # the README opens with the two commands
    assert head[2] == "```bash" and head[3].startswith("make demo") and head[4].startswith("make test")


# --- option values: one error line, nothing written -----------------------------------------------

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


def test_mask_and_random_replace_above_one(capsys, tiny_bert, news_folder, tmp_path):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "out",
                                               "--mask-replace-prob", "0.8", "--random-replace-prob", "0.3"))
    assert_clean_error(code, err, "--mask-replace-prob", "--random-replace-prob", "exceed 1")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seed", ["-1", str(2**70)])
def test_bad_seed(capsys, tiny_bert, news_folder, tmp_path, seed):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, f"--seed={seed}"))
    assert_clean_error(code, err, "--seed")
    assert not out.exists()


@pytest.mark.parametrize("flag, value, needle", [
    ("--weight-decay", "inf", "finite"),
    ("--weight-decay", "nan", "finite"),
    ("--lr", "nan", "finite"),
    ("--head-lr", "-inf", "finite"),
    ("--max-grad-norm", "inf", "finite"),
    ("--warmup-ratio", "nan", "finite"),
    ("--mlm-probability", "nan", "finite"),
    ("--mask-replace-prob", "nan", "finite"),
    ("--eval-fraction", "inf", "finite"),
    ("--weight-decay", "1e5", "weight-decay"),  # lr x decay >= 1 flips every weight
])
def test_non_finite_options_write_nothing(capsys, tmp_path, tiny_bert, news_folder, flag, value, needle):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, f"{flag}={value}"))
    assert_clean_error(code, err, flag if needle == "finite" else needle, needle)
    assert not out.exists()


# --- config files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("yaml_text, key", [
    ("chunck_size: 64\n", "chunck_size"),
    ("lerning_rate: 0.1\n", "lerning_rate"),  # learning_rate is the Trainer's name for lr (ALIASES)
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


# --- run.json as a config, and as a command -------------------------------------------------------

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


# --- --add-tokens ---------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, needle", [
    (["--add-tokens", "0"], "--add-tokens 0"),
    (["--add-tokens", "-5"], "--add-tokens -5"),
    (["--add-tokens", "50", "--min-count", "100000"], "--min-count"),
    (["--add-tokens", "5", "--min-count", "0"], "--min-count"),
    (["--add-tokens", "5", "--streaming"], "--streaming"),
    (["--new-token-lr", "1e-3"], "needs --add-tokens"),
    (["--add-tokens", "5", "--new-token-lr", "0"], "--new-token-lr"),
    (["--add-tokens", "5", "--new-token-lr", "nan"], "--new-token-lr"),
])
def test_bad_add_tokens_flags(capsys, tiny_bert, news_folder, tmp_path, extra, needle):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, news_folder, out, *extra))
    assert_clean_error(code, err, needle)
    assert not out.exists()


def test_a_number_that_is_also_a_file_name_is_refused(capsys, monkeypatch, tmp_path, tiny_bert, news_folder):
    """`--add-tokens 5` beside a word file named 5 silently added the 5 most frequent cut words."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "5").write_text("glaxosmith\n", encoding="utf-8")
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, news_folder, out, "--add-tokens", "5"))
    assert_clean_error(code, err, "./5")
    assert not out.exists()


def test_yaml_takes_a_number_and_the_choice_is_on_training_documents_only(tmp_path, domain_folder):
    path = tmp_path / "run.yaml"
    path.write_text("add_tokens: 100\nmin_count: 3\n")
    cfg = build_config(load_config_file(path))
    assert cfg.add_tokens == "100" and parse_count(cfg.add_tokens) == 100
    docs = read_corpus([domain_folder])
    train = training_texts(docs, eval_fraction=0.1, seed=42)
    held = heldout_texts(docs, eval_fraction=0.1, seed=42)
    assert len(train) + len(held) == len(docs.train) and not set(train) & set(held) and len(held) == 4
    with pytest.raises(ConfigError, match="--add-tokens 0"):
        parse_count("0")


# --- --max-time, --head-init, --dropout -----------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [("90s", 90), ("6m", 360), ("1.5h", 5400), ("2", 2), (" 10 min ", 600),
                                           ("1d", 86400), ("1s", 1)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "0s", "-5m", "abc", "1e999s", "5 weeks", "", "nan", "inf", "31d", "0.5s", "1e-320"])
def test_parse_duration_refuses(text):
    with pytest.raises(ConfigError, match="--max-time"):
        parse_duration(text)


@pytest.mark.parametrize("value", ["0", "-5m", "abc", "1e999s", "0s"])
def test_bad_max_time_writes_nothing(capsys, tmp_path, tiny_bert, news_folder, value):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, f"--max-time={value}"))
    assert_clean_error(code, err, "--max-time")
    assert not out.exists()


def test_bad_head_init(capsys, tmp_path, tiny_bert, news_folder):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "o", "--head-init", "hot"))
    assert_clean_error(code, err, "--head-init")


@pytest.mark.parametrize("value", ["1", "-0.1", "nan", "1.5"])
def test_bad_dropout(capsys, tmp_path, tiny_bert, news_folder, value):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "o", f"--dropout={value}"))
    assert_clean_error(code, err, "--dropout")


def test_resume_takes_the_same_budget_written_otherwise():
    from mlmtune.config import resume_mismatch

    cfg = build_config({"max_time": "20.0s"})
    assert resume_mismatch({"max_time": "20s"}, cfg) is None
    # another budget is no mismatch but a new plan: continuation.py checks it (tests/test_hf_habits.py)
    assert resume_mismatch({"max_time": "30s"}, cfg) is None


# --- the Trainer's and run_mlm.py's names (config.ALIASES) -------------------------------------------

# alias -> (the value typed on the command line, or None for a flag alone; the field it sets; its value)
ALIAS_CASES = {
    "learning_rate": ("3e-4", "lr", 3e-4),
    "per_device_train_batch_size": ("8", "batch_size", 8),
    "per_device_eval_batch_size": ("7", "eval_batch_size", 7),
    "num_train_epochs": ("2.0", "epochs", 2),  # the Trainer's epochs are floats
    "model_name_or_path": ("bert-base-uncased", "model", "bert-base-uncased"),
    "tokenizer_name": ("bert-base-cased", "tokenizer", "bert-base-cased"),
    "train_file": ("train.txt", "data", ["train.txt"]),
    "dataset_name": ("imdb", "data", ["imdb"]),
    "validation_file": ("valid.txt", "eval_data", ["valid.txt"]),
    "max_train_samples": ("100", "train_size", 100),
    "max_eval_samples": ("50", "eval_size", 50),
    "overwrite_output_dir": (None, "overwrite", True),
    "logging_steps": ("5", "log_every", 5),
    "eval_steps": ("20", "eval_every", 20),
    "save_steps": ("30", "save_every", 30),
    "save_total_limit": ("4", "keep_checkpoints", 4),
    "torch_compile": (None, "compile", True),
    "hub_model_id": ("me/news-bert", "push_to_hub", "me/news-bert"),
}


def test_every_alias_has_a_case():
    from mlmtune.config import ALIASES

    assert set(ALIAS_CASES) | {"resume_from_checkpoint"} == set(ALIASES)  # resume_from_checkpoint: tests below


@pytest.mark.parametrize("alias", sorted(ALIAS_CASES))
def test_an_alias_sets_its_one_field_as_a_flag_a_yaml_key_and_a_keyword(alias, tmp_path, capsys):
    typed, field, expected = ALIAS_CASES[alias]
    value = [] if typed is None else [typed]
    defaults = build_config().to_dict()
    for flag in (f"--{alias}", f"--{alias.replace('_', '-')}"):  # HfArgumentParser takes both spellings
        code, out, err = run_cli(capsys, "train", flag, *value, "--print-config")
        assert code == 0, err
        shown = yaml.safe_load(out)
        assert shown[field] == expected
        changed = {k for k in shown if shown[k] != defaults[k] and (k == field or k not in FOLLOWING)}  # resolved
        assert changed == {field}, changed  # exactly one field
        assert alias not in shown  # run.json and --print-config keep mlmtune's own name
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({alias: True if typed is None else typed}))
    assert getattr(build_config(load_config_file(tmp_path / "c.yaml")), field) == expected
    assert getattr(build_config({alias: True if typed is None else typed}), field) == expected


def test_an_alias_and_its_field_together_are_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--lr", "1e-4", "--learning_rate", "2e-4", "--print-config")
    assert_clean_error(code, err, "learning_rate", "lr", "keep one")
    with pytest.raises(ConfigError, match="keep one"):
        build_config({"train_file": "a.txt", "dataset_name": "imdb"})
    # a flag overrides a file's key for the same field, whatever the name
    (tmp_path / "c.yaml").write_text("learning_rate: 1.0e-4\n")
    code, out, err = run_cli(capsys, "train", "--config", tmp_path / "c.yaml", "--lr", "2e-4", "--print-config")
    assert code == 0 and yaml.safe_load(out)["lr"] == 2e-4


def test_every_option_takes_its_underscore_spelling_and_a_trainer_boolean(capsys):
    code, out, err = run_cli(capsys, "train", "--output_dir", "runs/x", "--chunk_size", "64", "--line_by_line",
                             "--whole_word_mask", "true", "--eval_data", "v.txt", "--print-config")
    assert code == 0, err
    shown = yaml.safe_load(out)
    assert (shown["output_dir"], shown["chunk_size"], shown["line_by_line"], shown["whole_word_mask"],
            shown["eval_data"]) == ("runs/x", 64, True, True, ["v.txt"])
    code, out, err = run_cli(capsys, "train", "--line_by_line", "False", "--print-config")
    assert code == 0 and yaml.safe_load(out)["line_by_line"] is False


@pytest.mark.parametrize("name, needle", [("max_seq_length", "--chunk-size"),
                                          ("validation_split_percentage", "--eval-fraction"),
                                          ("do_train", "always trains")])
def test_a_trainer_name_without_one_meaning_says_what_to_write(capsys, name, needle):
    code, _, err = run_cli(capsys, "train", f"--{name}", "5", "--print-config")
    assert_clean_error(code, err, name, needle)
    with pytest.raises(ConfigError, match=needle):
        build_config({name: 5})


def test_num_train_epochs_must_be_whole(capsys):
    code, _, err = run_cli(capsys, "train", "--num_train_epochs", "2.5", "--print-config")
    assert_clean_error(code, err, "num_train_epochs", "--max-steps")


def test_the_python_api_takes_trainer_names(monkeypatch, tmp_path):
    import mlmtune
    import mlmtune.training.fit as fit_module

    seen = []
    monkeypatch.setattr(fit_module, "fit", lambda cfg: seen.append(cfg) or {})
    mlmtune.train(learning_rate=3e-4, per_device_train_batch_size=8, output_dir=str(tmp_path / "x"))
    assert (seen[0].lr, seen[0].batch_size) == (3e-4, 8)
    with pytest.raises(ConfigError, match="unknown config key 'learnin_rate'"):
        mlmtune.train(learnin_rate=3e-4)
    with pytest.raises(ConfigError, match="does not take"):
        mlmtune.evaluate("minilm", "bbc-news", learning_rate=1e-3)  # evaluate reads no learning rate


def test_evaluate_takes_the_trainer_names_it_has(monkeypatch):
    import mlmtune.eval.compare as compare

    seen = []
    monkeypatch.setattr(compare, "run_comparison", lambda cfg, *a, **k: seen.append(cfg) or [])
    with pytest.raises(IndexError):  # run_comparison gave no row: the config is all this test wants
        compare.evaluate("minilm", "bbc-news", per_device_eval_batch_size=3, max_eval_samples=9)
    assert (seen[0].eval_batch_size, seen[0].eval_size) == (3, 9)
    cfg = config_from_args(build_parser().parse_args(["evaluate", "--model_name_or_path", "m", "--max_eval_samples",
                                                      "9", "--validation_file", "v.txt"]), only=["eval_size",
                                                                                              "eval_data"])
    assert (cfg.eval_size, cfg.eval_data) == (9, ["v.txt"])


# --- --resume_from_checkpoint: what the Trainer means by it (a checkpoint folder), or a clear no -------

def test_resume_from_checkpoint_continues_the_run_of_that_checkpoint(run_copy, capsys):
    newest = run_copy / "checkpoints" / "step-0000002"
    code, out, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--resume_from_checkpoint", newest,
                             "--max-steps", "3")
    assert code == 0, err
    assert json.loads((run_copy / "results.json").read_text())["steps"] == 3
    assert f"resumed from {newest} at step 2" in out


def test_resume_from_checkpoint_true_is_resume():
    assert build_config({"resume_from_checkpoint": True}).resume
    assert build_config({"resume_from_checkpoint": "true"}).resume


@pytest.mark.parametrize("which, needle", [
    ("older", "newer checkpoint"),
    ("trainer", "pass it as --model"),
    ("missing", "no such folder"),
    ("other-output", "not of --output-dir"),
])
def test_resume_from_checkpoint_refuses_what_it_cannot_mean(finished_run, tmp_path, capsys, which, needle):
    trainer = tmp_path / "checkpoint-500"
    trainer.mkdir()
    path = {"older": finished_run / "checkpoints" / "step-0000001", "trainer": trainer,
            "missing": tmp_path / "nope", "other-output": finished_run / "checkpoints" / "step-0000002"}[which]
    extra = ["--output-dir", tmp_path / "elsewhere"] if which == "other-output" else []
    code, out, err = run_cli(capsys, "train", "--resume_from_checkpoint", path, *extra, "--print-config")
    assert_clean_error(code, err, "--resume_from_checkpoint", needle)
    assert out == ""
