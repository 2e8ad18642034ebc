"""What the tests share besides fixtures: running the command line in-process and reading its one
error line, the argv and configs of small runs, tiny models and corpora, folder snapshots, and
`mlmtune serve` in a subprocess.

Plain functions and constants (the fixtures are in conftest.py). Importable without pytest, torch or
transformers (heavy imports are inside the functions): benchmarks/serve_load.py takes `spawn` and
`stop` from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

from mlmtune.cli import main
from mlmtune.config import build_config

REPO = Path(__file__).resolve().parents[1]
SRC = str(REPO / "src")
CLOZE_NEWS = REPO / "benchmarks" / "cloze_news.tsv"
API = "/v1/fill-mask"


# --- the command line in-process, and its one error line --------------------------------------

def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """main(argv) in-process -> (exit code, stdout, stderr). argparse errors exit via SystemExit."""
    capsys.readouterr()  # drop what fixtures printed
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code, err: str, *needles: str) -> str:
    """Exit code 2 and exactly one stderr line `error: ...` naming every needle (case-insensitive)."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"stderr is not one error line:\n{err}"
    assert code == 2, f"exit code {code} for {lines[0]}"
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_clean_error_no_stdout(code, out: str, err: str, *needles: str) -> str:
    """Exit 2, exactly one stderr line `error: ...` naming every needle, and nothing on stdout."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"stderr is not one error line:\n{err}"
    assert code == 2, f"exit code {code} for {lines[0]}"
    assert out == "", out
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_ok(code, err: str) -> None:
    assert code == 0, err
    assert "Traceback" not in err and "error:" not in err, err


def error_after_bar(code, err: str, *needles: str) -> str:
    """assert_clean_error for a failure during training: the progress bar's lines may come first."""
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and not ln.startswith("train:")]
    return assert_clean_error(code, "\n".join(lines) + "\n", *needles)


# --- the argv and configs of small runs ---------------------------------------------------------

FAST = ["--precision", "fp32", "--no-report"]


def train_argv(model, data, out, *extra) -> list:
    """`train` for one step of a tiny run (blocks of 32, batch 4, 8 eval blocks)."""
    return ["train", "--model", model, "--data", data, "--output-dir", out, "--chunk-size", "32",
            "--batch-size", "4", "--eval-size", "8", "--max-steps", "1", "--seed", "0", *FAST, *extra]


def eval_argv(model, data, *extra) -> list:
    return ["evaluate", "--model", model, "--data", data, "--chunk-size", "32", "--eval-size", "8",
            "--seed", "0", "--precision", "fp32", *extra]


def resume(capsys, run: Path):
    return run_cli(capsys, "train", "--config", run / "run.json", "--output-dir", run, "--resume")


def train_args(model: str, out: Path, *extra) -> list:
    """`train` with blocks of 64, batch 8, lr 3e-3 and seed 3, logging every step; the data in `extra`."""
    return ["train", "--model", model, "--output-dir", out, "--chunk-size", 64, "--batch-size", 8,
            "--lr", "3e-3", "--log-every", 1, "--precision", "fp32", "--no-report", "--seed", 3, *extra]


def vocab_train_args(model, data, out, *extra):
    """`train` of the domain-vocabulary tests: blocks of 64, batch 8, 24 eval blocks, 6 steps."""
    return ["train", "--model", model, "--data", data, "--output-dir", out, "--chunk-size", "64", "--batch-size", "8",
            "--eval-size", "24", "--max-steps", "6", "--no-report", "--precision", "fp32", "--lr", "3e-3", *extra]


def tiny_run(model, data, out, **extra):
    """The config of a 30-step run (blocks of 64, batch 8, 40 eval blocks, lr 3e-3) with `extra` changed."""
    values = dict(model=model, data=[data], output_dir=str(out), chunk_size=64, batch_size=8, eval_size=40,
                  lr=3e-3, head_lr=3e-3, max_steps=30, log_every=5, report=False, precision="fp32", seed=0)
    values.update(extra)
    return build_config(values)


def fit_tiny_run(tiny_bert, news_folder, out: Path, **overrides) -> dict:
    """Train a 1-step run of 16 blocks of 32 into `out`; returns its config as a dict."""
    from mlmtune.training.fit import fit

    config = dict(model=tiny_bert, data=[news_folder], output_dir=str(out), chunk_size=32, batch_size=4,
                  eval_size=8, train_size=16, max_steps=1, report=False, precision="fp32", seed=0)
    config.update(overrides)
    fit(build_config(config))
    return config


def tiny(model, data, out, **extra):
    """The config of a tiny run (blocks of 32, batch 4, 8 eval blocks) without a plan: `extra` gives it."""
    values = dict(model=model, data=[data], output_dir=str(out), chunk_size=32, batch_size=4, eval_size=8,
                  precision="fp32", report=False, seed=0)
    values.update(extra)
    return build_config(values)


SMALL = dict(chunk_size=32, eval_size=16, seed=0, precision="fp32")
SMALL_ARGS = ["--chunk-size", "32", "--eval-size", "16", "--seed", "0", "--precision", "fp32"]


# --- what a run wrote ---------------------------------------------------------------------------

def snapshot(folder: Path) -> dict[str, str]:
    """Every file (hidden ones too) and folder below `folder`, with a hash of each file."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def strict_json(path: Path):
    """json.loads that refuses NaN and Infinity, as every JSON reader but Python's does."""
    def refuse(name):
        raise ValueError(f"{path} holds {name}")
    return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=refuse)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


JUNK_LINES = ["5", '"text"', "[1, 2]", "null", '{"type": "eval", "step": 1}', '{"type": "eval", "step": "x", "perplexity": 9}',
              '{"type": "eval", "step": 2, "perplexity": null}', '{"type": "train", "step": 3, "loss": "low"}',
              '{"type": "eval", "step": 3, "perplexity": 0}', '{"type": "train", "loss": 2.0}', '{"type": "eval", "st']


# --- tiny models and corpora --------------------------------------------------------------------

def tiny_bert_config(vocab_size: int, **overrides):
    from transformers import BertConfig

    values = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=128, type_vocab_size=2)
    values.update(overrides)
    return BertConfig(**values)


def save_tiny(folder, model_class, tokenizer, *, seed: int = 0, **overrides) -> str:
    """A tiny `model_class` (BertForMaskedLM, BertModel) with the tokenizer's vocabulary, weights drawn
    from `seed`, saved with the tokenizer in `folder`."""
    import torch

    torch.manual_seed(seed)
    model_class(tiny_bert_config(len(tokenizer), **overrides)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def poison_weights(file: Path, value: float, contains: str = "LayerNorm.weight") -> str:
    """Write `value` (NaN, infinity) into the first tensor of the safetensors `file` whose name holds
    `contains`, keeping its other tensors and metadata; returns that tensor's name."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(file), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    name = next(k for k in sorted(tensors) if contains in k)
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = value
    save_file(tensors, str(file), metadata=metadata)
    return name


def bbc_files(n: int, seed: int = 0) -> list[Path]:
    from mlmtune.data.sources import bbc_news_folder

    files = sorted(bbc_news_folder().rglob("*.txt"))
    return random.Random(seed).sample(files, n)


def news_text(news_folder: str, n: int = 5) -> str:
    return "\n\n".join(p.read_text(encoding="utf-8") for p in sorted(Path(news_folder).glob("*.txt"))[:n])


def texts_of(folder: str) -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(Path(folder).glob("*.txt"))]


RARE = ["glaxosmith", "zymurgist", "quizzify"]  # words minilm's WordPiece cuts into pieces


def fresh_tokenizer():
    from mlmtune.model.tokenizer import load_tokenizer

    return load_tokenizer("minilm")


def words_file(tmp_path) -> Path:
    """RARE, one word a line, in tmp_path/words.txt (an --add-tokens file)."""
    words = tmp_path / "words.txt"
    words.write_text("\n".join(RARE) + "\n", encoding="utf-8")
    return words


# --- fill-mask answers --------------------------------------------------------------------------

ONE, TWO = "The [MASK] is happy.", "A much longer [MASK] where [MASK] sits."


def same_answer(ours, theirs):
    """Two fill-mask answers (any nesting) agree: the same structure, ids, strings, scores to 1e-5."""
    import pytest

    if isinstance(theirs, dict):
        assert set(ours) == {"score", "token", "token_str", "sequence"}
        assert (ours["token"], ours["token_str"], ours["sequence"]) == (theirs["token"], theirs["token_str"],
                                                                        theirs["sequence"])
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-5)
        return
    assert isinstance(ours, list) and len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        same_answer(a, b)


# --- processes and ports ------------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from mlmtune.run.lock import folder_lock
with folder_lock(sys.argv[1], "train"):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_lock(folder: Path) -> subprocess.Popen:
    """A second process that takes the lock of `folder` (as a run does) and keeps it until killed."""
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def free_port() -> str:
    """A port no one listens on now (a fixed one fails when two test runs share the machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def spawn(model: str, compare: str | None = None, *, stderr, timeout: float = 300,
          env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`python -m mlmtune serve --port 0` in a subprocess (the browser tests, benchmarks/serve_load.py):
    the process and the URL it printed once listening. Raises RuntimeError (after killing it) when no
    URL comes."""
    cmd = [sys.executable, "-m", "mlmtune", "serve", "--model", model, "--host", "127.0.0.1", "--port", "0"]
    if compare:
        cmd += ["--compare", compare]
    env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            match = re.search(r"http://127\.0\.0\.1:\d+/", line)
            if match and not found:
                found.append(match.group(0))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout) or not found:
        stop(proc)
        raise RuntimeError("mlmtune serve printed no URL")
    return proc, found[0]


def stop(proc: subprocess.Popen) -> None:
    """Terminate a spawned server, killing it if it does not stop within 15 s."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
