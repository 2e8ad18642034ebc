"""The command line's entry point (cli/__init__.py): --version and --help, and `python -m mlmtune`
as a shell sees it: exit code 2 and one `error:` line on stderr, no traceback, no progress bars when
piped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_clean_error, run_cli, train_argv

from mlmtune.cli import main

# --- real processes: the exit code and stderr as a shell sees them --------------------------------

def run_process(args: list, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("HF_DATASETS_DISABLE_PROGRESS_BARS", None)  # the CLI must quiet them itself when piped
    return subprocess.run([sys.executable, "-m", "mlmtune", *map(str, args)], cwd=cwd, input=stdin,
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_subprocess_missing_data(tiny_bert, tmp_path):
    proc = run_process(train_argv(tiny_bert, "missing.txt", "out"), cwd=tmp_path)
    assert_clean_error(proc.returncode, proc.stderr, "missing.txt")
    assert proc.stdout == "" and not (tmp_path / "out").exists()


def test_subprocess_unknown_flag(tmp_path):
    proc = run_process(["train", "--chunksize", "64"], cwd=tmp_path)
    assert_clean_error(proc.returncode, proc.stderr, "--chunksize")


def test_subprocess_predict_empty_stdin(tiny_bert, tmp_path):
    proc = run_process(["predict", "--model", tiny_bert, "-"], cwd=tmp_path, stdin="")
    assert_clean_error(proc.returncode, proc.stderr, "no text given")


def test_subprocess_bad_yaml(tmp_path):
    (tmp_path / "bad.yaml").write_text("chunk_size: [64\n")
    proc = run_process(["train", "--config", "bad.yaml"], cwd=tmp_path)
    assert_clean_error(proc.returncode, proc.stderr, "bad.yaml", "cannot be parsed")


@pytest.mark.slow
def test_subprocess_table_without_text_column(tiny_bert, tmp_path):
    """Reading a table shows datasets progress bars and logs; piped, only the error line remains."""
    (tmp_path / "data.csv").write_text("id,body\n" + "".join(f"{i},some words number {i}\n" for i in range(50)))
    proc = run_process(train_argv(tiny_bert, "data.csv", "out"), cwd=tmp_path)
    assert_clean_error(proc.returncode, proc.stderr, "no column 'text'", "--text-column")
    assert not (tmp_path / "out").exists()


def test_version_and_top_level_help(capsys):
    import mlmtune

    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"mlmtune {mlmtune.__version__}"
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "your own text" in out and "fill in blanks" in out and "--eval-data" in out


# --- what answers without torch ----------------------------------------------------------------------

NO_TORCH_CHECK = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr))\n"
    "runpy.run_module('mlmtune', run_name='__main__', alter_sys=True)\n"
)


@pytest.mark.parametrize("args, code", [
    (["--help"], 0), (["--version"], 0), (["train", "--help"], 0), (["evaluate", "--help"], 0),
    (["predict", "--help"], 0), (["serve", "--help"], 0), (["vocab", "--help"], 0), (["report", "--help"], 0),
    (["train", "--learning_rate", "3e-4", "--print-config"], 0),
    (["train", "--batch", "8"], 2), (["train", "--lr", "fast", "--print-config"], 2), (["evaluate", "--nope"], 2),
    (["predict"], 2), (["frobnicate"], 2), (["serve", "--model", "m", "--port", "99999"], 2),
])
def test_help_version_and_argument_errors_answer_without_torch(tmp_path, args, code):
    """`mlmtune --help` took 7.8 s and a flag typo 8.5 s on a loaded machine: each imported torch before
    parsing its arguments. (How fast they are is benchmarks/cli_startup.py's to say, not a test's.)"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", NO_TORCH_CHECK, *args], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.stderr.splitlines()[-1] == "no torch", proc.stderr
    assert "Traceback" not in proc.stderr and proc.returncode == code, proc.stderr


def test_predict_checks_its_texts_before_loading_a_model(tiny_bert, tiny_roberta, monkeypatch, capsys):
    """`predict` of a text without a mask took 33 s: it loaded the model before looking at the text."""
    import mlmtune.model.fill_mask as fill_mask

    def loaded(*args, **kwargs):
        raise AssertionError("a model was loaded before the texts were checked")

    monkeypatch.setattr(fill_mask, "load_masked_lm", loaded)
    code, out, err = run_cli(capsys, "predict", "--model", tiny_bert, "The cat is happy.")
    assert_clean_error(code, err, "no mask token", "[MASK]")
    code, out, err = run_cli(capsys, "predict", "--model", tiny_bert, "--compare", tiny_roberta, "A [MASK].", "none")
    assert_clean_error(code, err, "no mask token in 'none'")
    # a model's own mask token is a mask (for every model, as [MASK] is): the texts pass, the models load
    with pytest.raises(AssertionError, match="a model was loaded"):
        main(["predict", "--model", tiny_bert, "--compare", tiny_roberta, "A <mask>."])
