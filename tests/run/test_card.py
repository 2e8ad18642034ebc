"""The model card: OUTPUT/README.md in the Hub's format, read back with huggingface_hub.ModelCard."""

import json
import math
from pathlib import Path

import pytest
from helpers import fit_tiny_run, run_cli
from huggingface_hub import ModelCard

from mlmtune.config import build_config
from mlmtune.run.card import card_text, hub_base, hub_datasets, human_seconds, write_card
from mlmtune.run.layout import MARKER
from mlmtune.training.fit import fit


def test_train_writes_a_card_the_hub_reads(finished_run, tiny_bert, news_folder):
    results = json.loads((finished_run / "results.json").read_text())
    card = ModelCard.load(finished_run / "README.md")
    data = card.data
    assert data.pipeline_tag == "fill-mask" and data.library_name == "transformers"
    assert "mlmtune" in data.tags and "sentence-transformers" not in data.tags
    assert data.base_model is None and not data.datasets  # a local base and local text: no Hub id to name
    assert data.model_name == "news-bert"
    metrics = {r.metric_type: r.metric_value for r in data.eval_results}
    assert math.isclose(metrics["perplexity"], results["eval_perplexity"], rel_tol=1e-4)
    assert math.isclose(metrics["accuracy"], results["eval_accuracy"], abs_tol=1e-4)
    assert all(r.task_type == "fill-mask" for r in data.eval_results)
    text = card.text
    assert f"{results['baseline_perplexity']:,.2f}" in text and f"{results['eval_perplexity']:,.2f}" in text
    # local paths are named by their last part only
    assert Path(tiny_bert).name in text and Path(news_folder).name in text
    assert str(Path(tiny_bert).parent) not in card.content and str(Path(news_folder).parent) not in card.content
    assert "README.md" in results["files"]  # --overwrite replaces it with the rest of the run


def card_for(config: dict, **run) -> ModelCard:
    results = {"steps": 10, "eval_perplexity": 12.5, "eval_accuracy": 0.4, "baseline_perplexity": 40.0,
               "train_tokens": 1000, "train_seconds": 156.2, "wall_seconds": 170}
    return ModelCard(card_text(Path("/nowhere/out"), run={"config": config, **run}, results=results, records=[]))


def test_hub_ids_are_named_and_local_paths_are_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("text")
    card = card_for({"model": "bert-base-uncased", "data": ["stanfordnlp/imdb", "notes.txt", "/home/me/x.jsonl",
                                                            "bbc-news"], "eval_split": "test"},
                    command="mlmtune train --data /home/me/x.jsonl")
    assert card.data.base_model == "bert-base-uncased"
    assert card.data.datasets == ["stanfordnlp/imdb"]
    assert card.data.eval_results[0].dataset_type == "stanfordnlp/imdb"
    assert card.data.eval_results[0].dataset_split == "test"
    assert "/home/me" not in card.text.replace("mlmtune train --data /home/me/x.jsonl", "")
    assert "2 min 36 s" in card.text


def test_a_separate_eval_set_is_the_model_index_dataset():
    card = card_for({"model": "minilm", "data": ["notes.txt"], "eval_data": ["stanfordnlp/imdb"]})
    assert card.data.datasets == ["stanfordnlp/imdb"]
    assert {r.dataset_type for r in card.data.eval_results} == {"stanfordnlp/imdb"}
    assert "blocks of [stanfordnlp/imdb]" in card.text
    plain = card_for({"model": "minilm", "data": ["notes.txt"]})
    assert plain.data.eval_results[0].dataset_split == "held-out documents" and not plain.data.datasets


def test_the_base_model_of_builtin_and_cached_folders():
    assert hub_base("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    cached = "/home/me/.cache/huggingface/hub/models--google-bert--bert-base-uncased/snapshots/86b5e09344"
    assert hub_base(cached) == "google-bert/bert-base-uncased"
    assert hub_base("/home/me/encoders/mine") is None and hub_base("./mine") is None
    assert hub_base("FacebookAI/roberta-base") == "FacebookAI/roberta-base"
    assert hub_datasets(["imdb", "bbc-news", "notes.txt", "a/b.csv", "~/x"]) == ["imdb"]


def test_the_command_names_local_paths_by_their_last_component():
    card = card_for({"model": "minilm", "data": ["bbc-news"]},
                    command="mlmtune train --data=/home/someone/news --model '/srv/my models/enc' "
                            "--output-dir=runs/x --max-steps=5")
    assert "--data=news" in card.text and "/home/someone" not in card.text and "/srv" not in card.text
    assert "--model enc" in card.text and "--output-dir=runs/x --max-steps=5" in card.text


@pytest.mark.parametrize("seconds, text", [(8.44, "8.4 s"), (156.2, "2 min 36 s"), (4000, "1 h 6 min"), (None, "n/a")])
def test_human_seconds(seconds, text):
    assert human_seconds(seconds) == text


def test_a_users_readme_is_kept(run_copy, capsys):
    card = (run_copy / "README.md").read_text()
    try:
        (run_copy / "README.md").write_text("# my own notes\n")
        assert write_card(run_copy, say=print) == []
        assert (run_copy / "README.md").read_text() == "# my own notes\n"
        assert "not a model card mlmtune wrote" in capsys.readouterr().out
    finally:
        (run_copy / "README.md").write_text(card)


def test_report_rewrites_the_card_and_lists_it(run_copy, capsys):
    results_path = run_copy / "results.json"
    saved = results_path.read_text()
    try:
        results = json.loads(saved)
        results["files"].remove("README.md")  # a run from before cards
        results_path.write_text(json.dumps(results))
        (run_copy / "README.md").unlink()
        code, out, err = run_cli(capsys, "report", run_copy)
        assert code == 0, err
        assert MARKER in (run_copy / "README.md").read_text()
        assert "README.md" in json.loads(results_path.read_text())["files"]
        assert ModelCard.load(run_copy / "README.md").data.pipeline_tag == "fill-mask"
    finally:
        results_path.write_text(saved)


def test_a_users_readme_in_a_run_folder_survives_overwrite(tiny_bert, news_folder, tmp_path, capsys):
    out = tmp_path / "run"
    config = dict(model=tiny_bert, data=[news_folder], output_dir=str(out), chunk_size=32, batch_size=4, eval_size=8,
                  train_size=16, max_steps=1, report=False, precision="fp32", seed=0)
    fit(build_config(config))
    assert "README.md" in json.loads((out / "results.json").read_text())["files"]
    fit(build_config({**config, "max_steps": 2, "overwrite": True}))  # the old card is replaced
    assert "2 optimizer steps" in (out / "README.md").read_text()
    results = json.loads((out / "results.json").read_text())
    results["files"].remove("README.md")  # as if README.md were a file of the user's, not the run's
    (out / "results.json").write_text(json.dumps(results))
    (out / "README.md").write_text("# my notes\n")
    capsys.readouterr()
    fit(build_config({**config, "overwrite": True}))
    assert (out / "README.md").read_text() == "# my notes\n"
    assert "README.md" not in json.loads((out / "results.json").read_text())["files"]
    assert "not a model card mlmtune wrote" in capsys.readouterr().out


# --- a card the user edited, a continued run, an impossible time ----------------------------------

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


@pytest.mark.parametrize("when", [1e30, -1e30, float("nan")])
def test_a_card_from_a_results_json_with_an_impossible_time(when):
    """results.json is read back by `mlmtune report` and `push`: a finished_at of 1e30 raised
    OverflowError (a traceback) while writing the card."""
    from mlmtune.run.card import card_text

    text = card_text(Path("nowhere"), run={}, results={"started_at": when, "finished_at": when}, records=[])
    assert "## Training" in text


def test_the_card_speaks_to_a_hub_user(tmp_path):
    """The usage line named the bare folder (`model="demo"`, a Hub id to transformers), the card had no
    widget examples, no language, no hyperparameter list, and said "precision no" (accelerate's word)."""
    out = tmp_path / "demo"
    out.mkdir()
    (out / "tokenizer_config.json").write_text(json.dumps({"mask_token": "<mask>"}))
    config = {"model": "minilm", "data": ["bbc-news"], "probe": ["A [MASK] day.", "The [MASK] fell."], "lr": 3e-5,
              "batch_size": 8, "max_steps": 120, "epochs": 3, "seed": 7}
    results = {"steps": 120, "eval_perplexity": 12.5, "precision": "no"}
    card = ModelCard(card_text(out, run={"config": config, "processes": 1}, results=results, records=[]))
    assert card.data.widget == [{"text": "A <mask> day."}, {"text": "The <mask> fell."}]
    assert card.data.language == "en"
    assert 'model="./demo")' in card.text and 'model="demo"' not in card.text
    pushed = ModelCard(card_text(out, run={"config": config}, results=results, records=[], repo="me/demo"))
    assert 'model="me/demo")' in pushed.text
    assert "precision no" not in card.text and "precision fp32" in card.text
    assert "- learning_rate: 3e-05" in card.text and "- per_device_train_batch_size: 8" in card.text
    assert "- max_steps: 120" in card.text and "num_train_epochs" not in card.text  # a step budget: epochs unused
    local = ModelCard(card_text(out, run={"config": {**config, "data": ["notes.txt"]}}, results=results, records=[]))
    assert local.data.language is None  # a user's text: its language is not known, so none is claimed
    assert card_for({"model": "minilm", "data": ["notes.txt"]}).data.widget[0]["text"] == "The [MASK] is happy."
