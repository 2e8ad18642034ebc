"""--push-to-hub and mlmtune push, against a local stand-in of the Hub's API (tests/hub_standin.py):
never the network. Offline mode, no token, a bad token and an unreachable Hub each give one line."""

import json
import os
import socket
import subprocess
import sys

import pytest
from helpers import SRC, assert_clean_error, run_cli
from hub_standin import HubStandIn
from huggingface_hub import ModelCard, constants


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The stand-in, and this process's huggingface_hub pointed at it with its token (HF_ENDPOINT and
    HF_HUB_OFFLINE are read when huggingface_hub is imported, so the constants are patched)."""
    with HubStandIn() as standin:
        monkeypatch.setattr(constants, "ENDPOINT", standin.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", standin.token)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        yield standin


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-stored-tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_push_uploads_the_runs_files_and_a_card_naming_the_repo(run_copy, hub, capsys):
    (run_copy / "notes.txt").write_text("my private notes")
    try:
        code, out, err = run_cli(capsys, "push", run_copy, "me/news-bert")
    finally:
        (run_copy / "notes.txt").unlink()
    assert code == 0, err
    uploaded = hub.repos["me/news-bert"]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "report.html", "results.json",
                 "run.json", "metrics.jsonl"):
        assert uploaded[name] == (run_copy / name).read_bytes(), name
    assert not [n for n in uploaded if n.startswith("checkpoints/")]  # not unless asked
    assert "notes.txt" not in uploaded  # the user's file in the folder is not the run's
    assert (run_copy / "checkpoints").is_dir()
    card = ModelCard(uploaded["README.md"].decode())
    assert card.data.model_name == "me/news-bert" and 'model="me/news-bert"' in card.text
    assert hub.validated and hub.created[0]["name"] == "news-bert" and hub.created[0]["organization"] == "me"
    assert out.strip().splitlines()[-1].startswith(f"pushed to {hub.url}/me/news-bert")


def test_push_of_a_run_another_process_holds_is_refused(run_copy, hub, holder, capsys):
    proc = holder(run_copy)
    code, _, err = run_cli(capsys, "push", run_copy, "me/busy")
    assert_clean_error(code, err, f"PID {proc.pid}", "in use")
    assert "me/busy" not in hub.repos


def test_push_checkpoints_when_asked(run_copy, hub, capsys):
    code, _, err = run_cli(capsys, "push", run_copy, "me/with-states", "--checkpoints")
    assert code == 0, err
    states = [n for n in hub.repos["me/with-states"] if n.startswith("checkpoints/step-")]
    assert states and all((run_copy / n).is_file() for n in states)


def test_a_card_that_cannot_be_rewritten_is_uploaded_as_it_is(finished_run, hub, monkeypatch, capsys):
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("mlmtune.run.hub.write_card", read_only)
    code, out, err = run_cli(capsys, "push", finished_run, "me/read-only")
    assert code == 0, err
    assert "cannot be rewritten" in out
    assert hub.repos["me/read-only"]["README.md"] == (finished_run / "README.md").read_bytes()


def test_a_second_push_updates_the_existing_repo(run_copy, hub, capsys):
    assert run_cli(capsys, "push", run_copy, "me/twice")[0] == 0
    assert run_cli(capsys, "push", run_copy, "me/twice")[0] == 0
    assert len(hub.commits) == 2


def test_a_token_the_hub_refuses_is_one_line(run_copy, hub, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    code, _, err = run_cli(capsys, "push", run_copy, "me/news-bert")
    assert_clean_error(code, err, "401", "write access", "mlmtune push")
    assert not hub.repos


def test_an_unreachable_hub_is_one_line(run_copy, monkeypatch, no_token, capsys, tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_TOKEN", "hf_any")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    code, _, err = run_cli(capsys, "push", run_copy, "me/news-bert")
    assert_clean_error(code, err, "network", "stays complete")


def test_push_offline_is_one_line(finished_run, monkeypatch, capsys):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_TOKEN", "hf_any")
    assert_clean_error(*run_cli(capsys, "push", finished_run, "me/x")[::2], "HF_HUB_OFFLINE")


def test_push_without_a_token_is_one_line(finished_run, no_token, capsys):
    assert_clean_error(*run_cli(capsys, "push", finished_run, "me/x")[::2], "token", "HF_TOKEN", "hf auth login")


@pytest.mark.parametrize("repo", ["", "me/bad name", "a/b/c", "me/x--", " me/x"])
def test_a_malformed_repo_id_is_one_line(finished_run, hub, repo, capsys):
    assert_clean_error(*run_cli(capsys, "push", finished_run, repo)[::2], "repository id", "owner/name")


def test_push_of_a_folder_without_a_finished_run(tmp_path, hub, capsys):
    (tmp_path / "notes.txt").write_text("x")
    assert_clean_error(*run_cli(capsys, "push", tmp_path, "me/x")[::2], "no run")
    assert_clean_error(*run_cli(capsys, "push", tmp_path / "missing", "me/x")[::2], "no run")


@pytest.mark.parametrize("problem", ["offline", "no token"])
def test_train_refuses_push_to_hub_before_training(tiny_bert, news_folder, tmp_path, monkeypatch, no_token, capsys,
                                                   problem):
    if problem == "offline":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        monkeypatch.setenv("HF_TOKEN", "hf_any")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", tiny_bert, "--data", news_folder, "--output-dir", out,
                           "--max-steps", "1", "--push-to-hub", "me/x")
    assert_clean_error(code, err, "--push-to-hub", "HF_HUB_OFFLINE" if problem == "offline" else "HF_TOKEN")
    assert not out.exists()  # nothing trained, nothing written


@pytest.mark.slow
def test_train_push_to_hub_through_hf_endpoint(tiny_bert, news_folder, tmp_path):
    """The way a user runs it: HF_ENDPOINT and HF_TOKEN in the environment, a fresh process."""
    out = tmp_path / "run"
    with HubStandIn() as standin:
        env = {**os.environ, "HF_ENDPOINT": standin.url, "HF_TOKEN": standin.token, "HF_HUB_OFFLINE": "0",
               "HF_HOME": str(tmp_path / "hf-home"), "PYTHONPATH": SRC}
        done = subprocess.run([sys.executable, "-m", "mlmtune", "train", "--model", tiny_bert, "--data", news_folder,
                               "--output-dir", str(out), "--max-steps", "2", "--batch-size", "4", "--chunk-size", "32",
                               "--train-size", "16", "--eval-size", "8", "--no-report", "--push-to-hub", "me/tuned"],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        uploaded = standin.repos["me/tuned"]
    files = json.loads((out / "results.json").read_text())["files"]
    assert set(files) <= set(uploaded) and "README.md" in files
    assert uploaded["model.safetensors"] == (out / "model.safetensors").read_bytes()
    assert json.loads((out / "run.json").read_text())["config"]["push_to_hub"] == "me/tuned"


def test_a_failed_upload_after_training_keeps_the_model(tiny_bert, news_folder, tmp_path, hub, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise OSError("connection reset by peer")

    monkeypatch.setattr("huggingface_hub.HfApi.upload_folder", refuse)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", tiny_bert, "--data", news_folder, "--output-dir", out,
                           "--max-steps", "2", "--batch-size", "4", "--chunk-size", "32", "--train-size", "16",
                           "--eval-size", "8", "--no-report", "--push-to-hub", "me/tuned")
    # training's progress bar is on stderr above it; the failure is one line at the end
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(n in last for n in ("connection reset", "stays complete",
                                                                  f"mlmtune push {out} me/tuned"))
    files = json.loads((out / "results.json").read_text())["files"]
    assert all((out / f).is_file() for f in files) and "model.safetensors" in files
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# --- what a hostile user found (issue 13) ---------------------------------------------------------

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
