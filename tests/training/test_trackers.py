"""Experiment trackers (training/trackers.py): tensorboard and mlflow get the run's figures; a tracker
that cannot start leaves no run."""

from __future__ import annotations

import pytest
from helpers import assert_clean_error, assert_ok, run_cli, tiny_run, train_argv

from mlmtune.training.fit import fit


def test_a_tracker_that_cannot_start_leaves_no_run(capsys, tiny_bert, news_folder, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # mlflow 3 refuses a file store without it
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--report-to", "mlflow"))
    assert_clean_error(code, err, "--report-to mlflow", "--report-to none")
    assert not out.exists() or not any(out.iterdir())  # no run.json, no metrics: the next run is not refused
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--report-to", "mlflow"))
    assert_ok(code, err)


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


def test_tensorboard_tracker_writes_events(tiny_bert, news_folder, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "tb"
    fit(tiny_run(tiny_bert, news_folder, out, max_steps=4, report_to="tensorboard"))
    assert list(out.rglob("events.out.tfevents.*"))


def test_mlflow_tracker_records_the_run(tiny_bert, news_folder, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    uri = (tmp_path / "mlruns").as_uri()  # a file store (mlflow-skinny has no database backend)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    out = tmp_path / "mlf"
    fit(tiny_run(tiny_bert, news_folder, out, max_steps=4, log_every=2, report_to="mlflow"))
    client = mlflow.MlflowClient(tracking_uri=uri)  # not mlflow.set_tracking_uri: a global other tests would see
    runs = client.search_runs([client.get_experiment_by_name(out.name).experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    history = client.get_metric_history(runs[0].info.run_id, "train/loss")
    assert [m.step for m in history] == [2, 4]
    assert runs[0].data.params["lr"] == "0.003"


def test_wandb_is_a_tracker_that_writes_under_the_run_folder(tmp_path, monkeypatch):
    """--report-to wandb was refused; wandb.init's default folder is ./wandb, outside the run."""
    import importlib.util

    from mlmtune.config import build_config
    from mlmtune.errors import ConfigError
    from mlmtune.training.trackers import check_tracker, tracker_options

    cfg = build_config({"report_to": "wandb", "output_dir": str(tmp_path / "run")})
    assert tracker_options(cfg) == {"wandb": {"dir": str(tmp_path / "run")}}
    assert tracker_options(build_config({"report_to": "tensorboard"})) == {}
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match="needs the wandb package: pip install wandb"):
        check_tracker("wandb")


def test_wandb_offline_needs_no_account(tiny_bert, news_folder, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for key in ("WANDB_API_KEY", "WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc, no wandb settings of the machine's user
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "wb"
    fit(tiny_run(tiny_bert, news_folder, out, max_steps=4, log_every=2, report_to="wandb"))
    assert list((out / "wandb").glob("offline-run-*/run-*.wandb"))  # the run's log, to `wandb sync` later
    assert not any(elsewhere.iterdir())  # nothing in the working directory
