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
