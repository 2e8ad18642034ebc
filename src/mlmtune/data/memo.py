"""Prepared corpora reused within a process: a second `mlmtune.evaluate`, `compare` or `train` on the same
text reads and tokenizes nothing again (bbc-news: ~12 s saved a call on 2 cores).

Each cache keeps its last MAX_ENTRIES results, keyed by everything that shapes them: the config fields
(sources, split, column, encoding, lines, chunk size, sizes, seed, ...), the tokenizer's content (its
serialised form, added words included) and, for local files and folders, each file's path, size and
modification time, so a file changed on disk is read again. What a cache returns is shared between
callers: read it, never change it.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
MAX_ENTRIES = 2  # a base and its run, or two corpora: what an evaluation or a notebook goes back to


class Memo:
    """The last MAX_ENTRIES values made by `make`, by key."""

    def __init__(self, size: int = MAX_ENTRIES):
        self.size = size
        self.entries: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        value = make()  # a failure caches nothing
        self.entries[key] = value
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self.entries.clear()


def files_signature(paths: list[Path]) -> tuple:
    """Path, size and modification time of every file at or below `paths` (a folder: all its files)."""
    out = []
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        for f in files:
            try:
                stat = f.stat()
            except OSError:  # vanished between the listing and the stat: the reader will say so
                continue
            out.append((str(f), stat.st_size, stat.st_mtime_ns))
    return tuple(out)


def local_paths(sources: list[str]) -> list[Path]:
    """The --data / --eval-data values that are local files or folders (others: Hub names, bbc-news)."""
    return [Path(os.path.expanduser(s)) for s in sources if s.strip() and Path(os.path.expanduser(s)).exists()]


def tokenizer_fingerprint(tokenizer) -> str:
    """What makes two tokenizers cut text alike: a fast tokenizer's serialised form (vocabulary, added words,
    normaliser; ~30 ms for 30k tokens), else its name, class and size."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else \
        f"{type(tokenizer).__name__}:{getattr(tokenizer, 'name_or_path', '')}:{len(tokenizer)}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
