"""The honest "before": a model as every view of it loads it (the report, `serve`, `predict`).

A checkpoint without an MLM head (minilm, mpnet, e5, bge) is given a head, and a fresh head predicts
noise: every word the tuned model predicts would look NEW and every base word OUT. Training does not
start from that head but from its warm start (the output bias set to the log unigram frequency of the
training text, model/warmstart.py), so that is the "before" shown, labelled "<model>, warm-started
head", with the same words wherever it is shown:

- the model is a run's base (the run is known: the report's own run, `serve`/`predict` of a run
  folder with `--compare` naming its `--model`): the head grown from the run's --seed, with the bias
  from the unigram counts training saved (OUTPUT/unigram_counts.npy), read with the run's --tokenizer;
  so it is the head training began with;
- no run is known, or the run kept no counts (a run of an older mlmtune): the unigram counts of the
  built-in corpus bbc-news, which any English text resembles in its frequent words (said in a note);
  without that corpus, the untrained head, labelled "untrained head";
- a run trained with --head-init random began from the random head, so that is its "before" too.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..data.sources import read_corpus
from ..errors import DataError
from ..model.fill_mask import FillMask
from ..model.warmstart import unigram_counts
from .files import atomic_write_bytes, read_json
from .layout import UNIGRAM_FILE, is_run

FALLBACK_TEXT = "bbc-news"  # the built-in corpus: the unigram counts when no run names its training text


def write_counts(path: Path, counts: np.ndarray) -> None:
    """The warm start's unigram counts, as .npy (int64; read back without pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(counts, dtype=np.int64), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def read_counts(path: Path) -> np.ndarray | None:
    """The counts write_counts wrote, or None (missing, damaged, or not a vector of counts)."""
    try:
        counts = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if counts.ndim != 1 or counts.dtype.kind not in "iu" or (len(counts) and counts.min() < 0):
        return None
    return counts


def run_of(folder: str | Path | None) -> dict | None:
    """The config of the run in `folder` (its run.json), or None when it is not a run folder."""
    if folder is None or not is_run(Path(folder)):
        return None
    config = (read_json(Path(folder) / "run.json") or {}).get("config")
    return config if isinstance(config, dict) else None


def same_model(a: str, b: str) -> bool:
    """Two names of one model: equal, or the same folder written two ways (runs/x, ./runs/x/)."""
    if a == b:
        return True
    return Path(a).exists() and Path(b).exists() and os.path.realpath(a) == os.path.realpath(b)


def shown_model(name: str, *, run: str | Path | None = None) -> FillMask:
    """`name` as the report, `serve` and `predict` show it: a grown head warm-started as training
    starts it (see the module's docstring; head_note says which). `run`: a run folder that may name
    `name` as its base."""
    config = run_of(run)
    if config is not None and isinstance(config.get("model"), str) and same_model(name, config["model"]):
        seed = config.get("seed") if isinstance(config.get("seed"), int) else 0
        tokenizer = config.get("tokenizer") if isinstance(config.get("tokenizer"), str) else None
        model = FillMask(name, tokenizer=tokenizer, seed=seed)
        if not model.grown_head or config.get("head_init") == "random":
            return model  # its own head, or a run that began from the random head: that is its "before"
        counts = read_counts(Path(run) / UNIGRAM_FILE)
        if counts is not None:
            model.warm_start(counts, "this run's training text")
            return model
    else:
        model = FillMask(name)
        if not model.grown_head:
            return model
    counts = fallback_counts(model.tokenizer)
    if counts is not None:
        model.warm_start(counts, FALLBACK_TEXT)
    return model


def fallback_counts(tokenizer) -> np.ndarray | None:
    """The unigram counts of bbc-news with `tokenizer` (None without the corpus package)."""
    try:
        texts = read_corpus([FALLBACK_TEXT]).train
    except DataError:
        return None
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return unigram_counts(np.fromiter((t for doc in ids for t in doc), dtype=np.int64), len(tokenizer))


def head_note(model: FillMask) -> str:
    """One sentence on how a grown head starts (empty for a model with its own head)."""
    if model.head_start == "warm":
        return (f"note: {model.name} has no MLM head; its head is warm-started as training starts one (output bias "
                f"= log unigram frequency of {model.head_text}): it predicts frequent words, not yet the context")
    if model.head_start == "random":
        return f"note: {model.name} has no MLM head; its predictions come from an untrained head"
    return ""
