"""Checkpoints (run/checkpoints.py): a state file (mlmtune_state.json) of the wrong shape, or a checkpoint file cut
short, is refused by --resume as one `error:` line naming the damaged checkpoint, and the run is left
as it was."""

from __future__ import annotations

import json
import stat

import pytest
from helpers import assert_clean_error, poison_weights, resume, run_cli, snapshot

from mlmtune.run.files import FILE_MODE
from mlmtune.run.layout import STATE_FILE

# --- mlmtune_state.json ---------------------------------------------------------------------------

@pytest.mark.parametrize("content, needle", [
    ([1, 2], "a JSON list"),
    ("oops", "a JSON str"),
    ({"tokens": 5}, "no step"),
    ({"step": "2"}, "'2'"),
    ({"step": 1.5}, "1.5"),
    ({"step": True}, "True"),
    ({"step": 7}, "not the folder's 2"),
    ({"step": 2, "tokens": "many"}, "tokens"),
    ({"step": 2, "train_seconds": [1]}, "train_seconds"),
    ({"step": 2, "baseline_perplexity": "high"}, "baseline_perplexity"),
    ({"step": 2, "eval_seconds": -3}, "eval_seconds"),
])
def test_trainer_state_of_the_wrong_shape(tmp_path, content, needle):
    from mlmtune.errors import CheckpointError
    from mlmtune.run.checkpoints import read_state

    folder = tmp_path / "step-0000002"
    folder.mkdir()
    (folder / STATE_FILE).write_text(json.dumps(content))
    with pytest.raises(CheckpointError) as info:
        read_state(folder)
    message = str(info.value)
    for part in (STATE_FILE, str(folder), needle, "--overwrite"):
        assert part in message, (part, message)


def test_a_good_trainer_state_is_read(tmp_path):
    from mlmtune.run.checkpoints import read_state

    folder = tmp_path / "step-0000003"
    folder.mkdir()
    state = {"step": 3, "tokens": 96, "train_seconds": 1.5, "eval_seconds": 0, "baseline_perplexity": None}
    (folder / STATE_FILE).write_text(json.dumps(state))
    assert read_state(folder) == state


@pytest.mark.parametrize("content", [[2], {"step": "2"}, {"step": 2, "tokens": "many"}], ids=["list", "step-str", "tokens"])
def test_resume_from_a_trainer_state_of_the_wrong_shape(capsys, run_copy, content):
    newest = sorted((run_copy / "checkpoints").glob("step-*"))[-1]
    (newest / STATE_FILE).write_text(json.dumps(content))
    before = snapshot(run_copy)
    code, _, err = resume(capsys, run_copy)
    assert_clean_error(code, err, "damaged", newest.name, STATE_FILE, "--overwrite")
    assert snapshot(run_copy) == before


# --- a checkpoint file cut short ------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "model.safetensors", "optimizer.bin", "scheduler.bin", STATE_FILE,
    pytest.param("random_states_0.pkl"),
])
def test_resume_from_a_truncated_checkpoint(capsys, run_copy, name):
    newest = sorted((run_copy / "checkpoints").glob("step-*"))[-1]
    target = newest / name
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--output-dir", run_copy, "--resume")
    assert_clean_error(code, err, "damaged", newest.name)
    assert snapshot(run_copy) == before


# --- a checkpoint that holds NaN or infinity ---------------------------------------------------------

def test_resume_from_a_checkpoint_with_an_infinite_weight_names_it(capsys, run_copy):
    """It was resumed, trained on, and then blamed on the learning rate ("lower --lr")."""
    newest = sorted((run_copy / "checkpoints").glob("step-*"))[-1]
    name = poison_weights(newest / "model.safetensors", float("inf"))
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--resume", "--max-steps", "3")
    line = assert_clean_error(code, err, newest.name, "NaN or infinity", name.removeprefix("model."),
                              "model.safetensors", "older checkpoint")
    assert "--lr" not in line
    assert snapshot(run_copy) == before


def test_resume_from_a_checkpoint_with_a_nan_in_the_optimizer_names_it(capsys, run_copy):
    import torch

    newest = sorted((run_copy / "checkpoints").glob("step-*"))[-1]
    state = torch.load(newest / "optimizer.bin", weights_only=False)
    first = next(iter(state["state"]))
    state["state"][first]["exp_avg_sq"].view(-1)[0] = float("nan")
    torch.save(state, newest / "optimizer.bin")
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--resume", "--max-steps", "3")
    assert_clean_error(code, err, newest.name, "NaN or infinity", "exp_avg_sq", "optimizer.bin")
    assert snapshot(run_copy) == before


# --- a tool that reads a Trainer's folder is not fooled --------------------------------------------

def test_a_run_holds_no_file_of_the_trainers_names(finished_run):
    """The run wrote checkpoints/step-N/trainer_state.json in its own schema (no global_step, no
    log_history): a tool that reads Trainer folders took it for a TrainerState and failed on it. Now
    the Trainer's tools find no state and no checkpoint of theirs in the folder."""
    from transformers import TrainerState
    from transformers.trainer_utils import get_last_checkpoint

    assert not [p for p in finished_run.rglob("*") if p.name in ("trainer_state.json", "trainer_state")]
    assert get_last_checkpoint(str(finished_run)) is None  # no checkpoint-N folder
    for folder in [finished_run, *sorted((finished_run / "checkpoints").iterdir())]:
        with pytest.raises(FileNotFoundError):
            TrainerState.load_from_json(str(folder / "trainer_state.json"))
        assert folder == finished_run or (folder / STATE_FILE).is_file()


def test_resume_reads_checkpoints_written_under_the_old_name(capsys, run_copy):
    """A run of mlmtune 0.1.0 wrote its state as trainer_state.json: --resume continues it."""
    import shutil

    for checkpoint in (run_copy / "checkpoints").iterdir():
        (checkpoint / STATE_FILE).rename(checkpoint / "trainer_state.json")
    shutil.rmtree(run_copy / "checkpoints" / "step-0000002")  # resume from step 1 of the old layout
    code, out, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--output-dir", run_copy,
                             "--resume", "--max-steps", "3")
    assert code == 0, err
    assert "resumed from" in out and "at step 1" in out
    newest = sorted((run_copy / "checkpoints").glob("step-*"))[-1]
    assert newest.name == "step-0000003" and (newest / STATE_FILE).is_file()
    assert json.loads((newest / STATE_FILE).read_text())["step"] == 3


def test_every_checkpoint_file_has_the_mode_of_the_runs_other_files(finished_run):
    """model.safetensors of a checkpoint was 0600 (safetensors' own mode) beside 0644 for every other file."""
    files = [p for p in finished_run.rglob("*") if p.is_file()]
    assert any(p.name == "model.safetensors" and "checkpoints" in p.parts for p in files)
    assert {p.relative_to(finished_run).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == \
        {p.relative_to(finished_run).as_posix(): oct(FILE_MODE) for p in files}
