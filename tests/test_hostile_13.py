"""Issue 13's data/runs and Hub parts, attacked as a hostile user would: each test here failed before
the fix committed with it (data loss and silent wrong results first, then tracebacks and messages)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlmtune.card import MARKER
from mlmtune.config import build_config
from mlmtune.train import fit

from test_bad_input import assert_clean_error, run_cli


def tiny_run(tiny_bert, news_folder, out: Path, **overrides) -> dict:
    config = dict(model=tiny_bert, data=[news_folder], output_dir=str(out), chunk_size=32, batch_size=4,
                  eval_size=8, train_size=16, max_steps=1, report=False, precision="fp32", seed=0)
    config.update(overrides)
    fit(build_config(config))
    return config


def test_an_edited_card_survives_overwrite(tiny_bert, news_folder, tmp_path, capsys):
    """The card says 'remove this line to keep your edits': a card so edited is the user's file, and
    --overwrite must not throw it away with the earlier run (it stays listed in results.json)."""
    out = tmp_path / "run"
    config = tiny_run(tiny_bert, news_folder, out)
    card = out / "README.md"
    edited = card.read_text().replace(MARKER, "") + "\nMy own notes on this model.\n"
    card.write_text(edited)
    capsys.readouterr()
    fit(build_config({**config, "overwrite": True}))
    assert card.read_text() == edited
    assert "not a model card mlmtune wrote" in capsys.readouterr().out
    assert "README.md" not in json.loads((out / "results.json").read_text())["files"]


def test_a_symlinked_readme_survives_overwrite(tiny_bert, news_folder, tmp_path):
    """A README.md linked to the user's notes elsewhere: the link stays, the notes are untouched."""
    out = tmp_path / "run"
    config = tiny_run(tiny_bert, news_folder, out)
    notes = tmp_path / "notes.md"
    notes.write_text("# notes\n")
    (out / "README.md").unlink()
    (out / "README.md").symlink_to(notes)
    fit(build_config({**config, "overwrite": True}))
    assert (out / "README.md").is_symlink() and notes.read_text() == "# notes\n"


def test_evaluate_a_run_json_without_its_model_says_so(tiny_bert, news_folder, tmp_path, capsys):
    """`evaluate --config OUT/run.json` of a run that has not saved its model (interrupted, or still
    running) silently scored the base model: it is an error naming both ways on."""
    out = tmp_path / "run"
    tiny_run(tiny_bert, news_folder, out)
    (out / "results.json").unlink()  # as before the final save
    code, _, err = run_cli(capsys, "evaluate", "--config", out / "run.json")
    assert_clean_error(code, err, "no finished model", "--model")
    # --model still scores whatever is named, the base included
    code, out_text, _ = run_cli(capsys, "evaluate", "--config", out / "run.json", "--model", tiny_bert)
    assert code == 0 and "perplexity" in out_text
