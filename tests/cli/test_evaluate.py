"""Issue 13's data/runs and Hub parts, attacked as a hostile user would: each test here failed before
the fix committed with it (data loss and silent wrong results first, then tracebacks and messages)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import assert_clean_error, fit_tiny_run, run_cli

from mlmtune.config import build_config
from mlmtune.run.layout import MARKER
from mlmtune.training.fit import fit


def test_an_edited_card_survives_overwrite(tiny_bert, news_folder, tmp_path, capsys):
    """The card says 'remove this line to keep your edits': a card so edited is the user's file, and
    --overwrite must not throw it away with the earlier run (it stays listed in results.json)."""
    out = tmp_path / "run"
    config = fit_tiny_run(tiny_bert, news_folder, out)
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
    config = fit_tiny_run(tiny_bert, news_folder, out)
    notes = tmp_path / "notes.md"
    notes.write_text("# notes\n")
    (out / "README.md").unlink()
    (out / "README.md").symlink_to(notes)
    fit(build_config({**config, "overwrite": True}))
    assert (out / "README.md").is_symlink() and notes.read_text() == "# notes\n"


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


def test_sentence_files_never_come_from_outside_the_base(tmp_path, tiny_encoder):
    """modules.json names module folders; a module folder or file that links out of the base's folder
    (to ~/.ssh, say) was copied into the output, and --push-to-hub would have published it."""
    import shutil

    from mlmtune.run.sentence import sentence_layout

    base = tmp_path / "encoder"
    shutil.copytree(tiny_encoder, base)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "id_rsa").write_text("PRIVATE")
    (base / "1_Pooling").mkdir()
    (base / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (base / "1_Pooling" / "notes.txt").symlink_to(secret / "id_rsa")
    (base / "2_Normalize").symlink_to(secret, target_is_directory=True)
    (base / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        {"idx": 3, "name": "3", "path": "../../etc", "type": "sentence_transformers.models.Dense"}]))
    layout = sentence_layout(str(base))
    assert sorted(layout.files) == ["1_Pooling/config.json", "modules.json"]
    assert not any(b"PRIVATE" in data for data in layout.files.values())


def test_sentence_files_of_a_hub_cache_snapshot_are_read_through_its_links(tmp_path, tiny_encoder):
    """The Hugging Face cache keeps a snapshot's files as links into ../../blobs: those are the base's own."""
    import shutil

    from mlmtune.run.sentence import sentence_layout

    repo = tmp_path / "models--org--enc"
    snapshot = repo / "snapshots" / "abc123"
    shutil.copytree(tiny_encoder, snapshot)
    (repo / "blobs").mkdir()
    (repo / "blobs" / "b1").write_text('{"pooling_mode_mean_tokens": true}')
    (snapshot / "1_Pooling").mkdir()
    (snapshot / "1_Pooling" / "config.json").symlink_to(Path("../../../blobs/b1"))
    (snapshot / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    assert sorted(sentence_layout(str(snapshot)).files) == ["1_Pooling/config.json", "modules.json"]


def test_push_never_uploads_a_file_linked_from_outside_the_run(run_copy, tmp_path, hub, capsys):
    """A README.md the user replaced by a link to their private notes (still listed in results.json):
    push would publish the notes. Only files that resolve inside the output folder go up."""
    out = run_copy
    notes = tmp_path / "private.md"
    notes.write_text("PRIVATE notes")
    (out / "README.md").unlink()
    (out / "README.md").symlink_to(notes)
    code, _, err = run_cli(capsys, "push", out, "me/run")
    assert code == 0, err
    uploaded = hub.repos["me/run"]
    assert "config.json" in uploaded and "README.md" not in uploaded
    assert not any(b"PRIVATE" in data for data in uploaded.values())
    assert notes.read_text() == "PRIVATE notes"


def test_push_offline_does_not_say_leave_out_push(finished_run, monkeypatch, capsys):
    """`mlmtune push` offline said 'leave out push and upload later with mlmtune push': advice for
    train's --push-to-hub, nonsense for the push command itself."""
    from huggingface_hub import constants

    out = finished_run
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_TOKEN", "hf_any")
    code, _, err = run_cli(capsys, "push", out, "me/run")
    assert_clean_error(code, err, "HF_HUB_OFFLINE")
    assert "leave out push" not in err


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


def test_the_card_of_a_continued_run_says_it_was_continued(tiny_bert, news_folder, tmp_path):
    """After `--resume --max-steps 3` the card showed the first command (--max-steps=1) as how a
    3-step model was made: it now says the run was continued, and to what total."""
    from huggingface_hub import ModelCard

    out = tmp_path / "run"
    config = fit_tiny_run(tiny_bert, news_folder, out, save_every=1)
    fit(build_config({**config, "max_steps": 3, "resume": True}))
    card = ModelCard.load(out / "README.md")
    assert "--max-steps=3" in card.text and "--max-steps=1" not in card.text  # run.json's command: the run as it stands
    assert "continued with `--resume` 1 time (planned 1, then 3 steps)" in card.text


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


def test_push_refuses_a_run_whose_listed_files_are_missing(run_copy, hub, capsys):
    """A run whose weights were deleted or moved (results.json still lists model.safetensors) was
    uploaded without them: a repository the Hub shows as a model that no one can load."""
    out = run_copy
    (out / "model.safetensors").unlink()
    code, _, err = run_cli(capsys, "push", out, "me/run")
    assert_clean_error(code, err, "model.safetensors")
    assert "me/run" not in hub.repos


def test_push_of_an_edited_card_with_broken_metadata_names_the_card(run_copy, hub, capsys):
    """A card the user edited (marker removed) into metadata the Hub refuses: the upload failed with
    'check your network and HF_ENDPOINT', the wrong fix."""
    out = run_copy
    (out / "README.md").write_text("---\nlicense: [unclosed\n---\n# my card\n")
    code, _, err = run_cli(capsys, "push", out, "me/run")
    assert_clean_error(code, err, "README.md", "metadata")
    assert "network" not in err


@pytest.mark.parametrize("when", [1e30, -1e30, float("nan")])
def test_a_card_from_a_results_json_with_an_impossible_time(when):
    """results.json is read back by `mlmtune report` and `push`: a finished_at of 1e30 raised
    OverflowError (a traceback) while writing the card."""
    from mlmtune.run.card import card_text

    text = card_text(Path("nowhere"), run={}, results={"started_at": when, "finished_at": when}, records=[])
    assert "## Training" in text
