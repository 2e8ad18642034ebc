"""Config files: YAML and run.json are views of the same dataclasses as the flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlmtune.cli import main
from mlmtune.config import build_config, load_config_file, resume_mismatch, to_yaml, validate
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
