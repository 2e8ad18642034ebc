"""Tokenize once: the prepared blocks of a corpus, kept on disk and memory-mapped.

A run, its --resume, a rerun and `mlmtune evaluate` of the same data read the blocks an earlier one
prepared instead of tokenizing the corpus again (on bbc-news, 40 of a resume's 45 CPU-seconds of
start-up were that), and the processes of a node share one copy in the page cache instead of holding
one each: one process per node writes the entry, the others read it (training/prepare.py).

Where: $MLMTUNE_CACHE, else $XDG_CACHE_HOME/mlmtune, else ~/.cache/mlmtune (as Hugging Face keeps
~/.cache/huggingface); MLMTUNE_CACHE=off keeps nothing. An entry is a folder `blocks/<key>` whose key
is a hash of all the blocks depend on: the bytes of every source file (a Hub dataset: the fingerprint
`datasets` gives its cached copy), the tokenizer's full serialisation (added words too), the options
that shape the blocks (chunk size, line by line, maximum length, evaluation share, seed, splits,
column, encoding) and this format's version. --train-size and --eval-size are drawn after, so they
share an entry. It holds flat .npy arrays and meta.json, written into a hidden temporary folder and
renamed once complete: a reader never sees half an entry, and a killed writer leaves a temporary that
the next writer of that entry removes. An entry that cannot be written (read-only, a full disk) only
costs the time: the blocks are used from memory, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .sources import BUILTIN_CORPORA, TEXT_SUFFIXES, bbc_news_folder, looks_like_path, quiet_datasets

FORMAT = 1  # bump when the arrays or what they hold change
OFF = ("off", "none", "0", "false", "no")
ARRAYS = ("tokens", "words", "offsets")


def cache_root() -> Path | None:
    """The cache folder ($MLMTUNE_CACHE, XDG, ~/.cache), or None when MLMTUNE_CACHE turns it off."""
    given = os.environ.get("MLMTUNE_CACHE")
    if given is not None:
        return None if given.strip().lower() in OFF or not given.strip() else Path(os.path.expanduser(given))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlmtune"


def _files(source: str) -> list[Path] | None:
    """The local files a source reads, in reading order; None for a Hub dataset (or what reading will
    refuse with its own message)."""
    path = Path(os.path.expanduser(source))
    if source in BUILTIN_CORPORA and not path.exists():
        try:
            return sorted(p for p in bbc_news_folder().rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        except Exception:
            return None
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if path.is_file():
        return [path]
    return None


def _hub_fingerprint(name: str, split: str | None) -> str | None:
    """The fingerprint of a Hub dataset's cached copy (its Arrow files), or None when it cannot be had."""
    if split is None:
        return ""
    import datasets

    try:
        with quiet_datasets():
            return datasets.load_dataset(name, split=split)._fingerprint
    except Exception:
        return None  # offline, a typo: reading says so in its own words


def source_digest(sources: list[str], *, split: str, eval_split: str | None) -> str | None:
    """A hash of the text `sources` hold: every file's path (relative to its source) and bytes, or a
    Hub dataset's fingerprint. None when one cannot be hashed (no caching then)."""
    h = hashlib.blake2b(digest_size=16)
    for source in sources:
        h.update(f"\0source {source}\0".encode())
        files = _files(source)
        if files is None:
            if looks_like_path(source) or Path(os.path.expanduser(source)).exists():
                return None
            fingerprints = [_hub_fingerprint(source, split), _hub_fingerprint(source, eval_split)]
            if None in fingerprints:
                return None
            h.update(" ".join(fingerprints).encode())
            continue
        root = Path(os.path.expanduser(source))
        for f in files:
            try:
                name = str(f.relative_to(root)) if root.is_dir() else f.name
                h.update(f"\0file {name} {f.stat().st_size}\0".encode())
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            except OSError:
                return None
    return h.hexdigest()


def tokenizer_digest(tokenizer) -> str | None:
    """A hash of everything that decides the tokens: the fast tokenizer's whole serialisation (model,
    normaliser, pre-tokenizer, post-processor, added tokens). None for a tokenizer without one.
    Its truncation and padding are left out: transformers sets them on the backend for each call (a
    tokenizer that has cut a text serialises differently from a fresh copy of itself, which would miss
    the cache), and mlmtune's calls give their own."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    try:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        text = json.dumps(state, sort_keys=True)
    except Exception:
        return None
    h = hashlib.blake2b(digest_size=16)
    h.update(type(tokenizer).__name__.encode())
    h.update(text.encode())
    return h.hexdigest()


def entry_key(**parts) -> str | None:
    """The entry's name: a hash of `parts` (None if any part is None: something could not be hashed)."""
    if any(value is None for key, value in parts.items() if key.endswith("digest")):
        return None
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def entry_path(key: str) -> Path | None:
    root = cache_root()
    return None if root is None else root / "blocks" / key


def load(entry: Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """The arrays (memory-mapped, read-only) and meta of a complete entry, or None."""
    meta_file = entry / "meta.json"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            return None
        arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return arrays, meta


def save(entry: Path, arrays: dict[str, np.ndarray], meta: dict) -> str | None:
    """Write an entry (a hidden temporary folder, meta.json last, then one rename). Returns None, or
    why it could not be written (the caller goes on without it)."""
    tmp = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        for old in entry.parent.glob(f".{entry.name}.*"):  # what a killed writer of this entry left
            shutil.rmtree(old, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array))
        (tmp / "meta.json").write_text(json.dumps({"format": FORMAT, "arrays": list(arrays), **meta}),
                                       encoding="utf-8")
        try:
            os.rename(tmp, entry)
        except OSError:
            if not (entry / "meta.json").is_file():  # another process's complete entry won the race: fine
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        return None
    except OSError as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        return exc.strerror or str(exc)


def entry_bytes(entry: Path) -> int:
    return sum(p.stat().st_size for p in entry.iterdir() if p.is_file())
