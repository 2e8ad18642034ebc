"""Documents -> token blocks: tokenize, hold out evaluation text, concatenate-and-cut or line by
line, downsample. A document longer than data/windows.WINDOW_CHARS is tokenized window by window (the
same tokens, memory bounded by the window, not the document).

Everything after tokenization is numpy on flat arrays, so concatenating and cutting is linear in
the number of tokens (the seed's `sum(lists, [])` is quadratic).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from . import cache
from .memo import Memo, tokenizer_fingerprint
from .sources import Documents, documents_from_config, lines_are_documents
from .split import split_documents
from .windows import WINDOW_CHARS, WindowedEncoder


@dataclass
class Blocks:
    """Token sequences stored back to back: sequence i is tokens[offsets[i]:offsets[i + 1]].

    `words` runs beside `tokens`: the index of the word a token belongs to within its document
    (the fast tokenizer's word ids), -1 for special tokens. Whole-word masking reads it.
    """

    tokens: np.ndarray  # (T,) int32
    words: np.ndarray  # (T,) int32
    offsets: np.ndarray  # (N + 1,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1] - self.offsets[0])

    def take(self, indices) -> "Blocks":
        """The sequences at `indices`, in that order (a gather, linear in their tokens)."""
        indices = np.asarray(indices, dtype=np.int64)
        starts = self.offsets[indices]
        lengths = self.offsets[indices + 1] - starts
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return Blocks(self.tokens[gather], self.words[gather], offsets)

    def batch(self, indices, pad_id: int, pad_to_multiple_of: int = 1) -> dict[str, np.ndarray]:
        """A padded batch: input_ids (B, L) int64, word_ids (B, L) int32 (-1 at pads), attention_mask (B, L) bool."""
        part = self.take(indices)
        lengths = part.lengths
        width = int(lengths.max()) if len(lengths) else 0
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        attention = np.arange(width)[None, :] < lengths[:, None]  # (B, L)
        input_ids = np.full(attention.shape, pad_id, dtype=np.int64)
        word_ids = np.full(attention.shape, -1, dtype=np.int32)
        input_ids[attention] = part.tokens  # row-major fill keeps each row's order
        word_ids[attention] = part.words
        return {"input_ids": input_ids, "word_ids": word_ids, "attention_mask": attention}


def concat_blocks(parts: list[Blocks]) -> Blocks:
    offsets = [np.zeros(1, dtype=np.int64)]
    base = 0
    for p in parts:
        offsets.append(p.offsets[1:] - p.offsets[0] + base)
        base += p.num_tokens
    return Blocks(
        np.concatenate([p.tokens[p.offsets[0]:p.offsets[-1]] for p in parts]) if parts else np.zeros(0, np.int32),
        np.concatenate([p.words[p.offsets[0]:p.offsets[-1]] for p in parts]) if parts else np.zeros(0, np.int32),
        np.concatenate(offsets),
    )


def tokenize(texts: list[str], tokenizer, *, truncate_to: int | None = None, batch_size: int = 1000,
             progress: bool = True, stats: dict | None = None, window_chars: int = WINDOW_CHARS) -> Blocks:
    """One sequence per text, with special tokens and word ids, through the tokenizer in batched `datasets.map`;
    a text longer than `window_chars` in windows (data/windows.py). With `stats` (and `truncate_to`),
    stats["truncated"] is how many texts were cut at `truncate_to`."""
    import datasets

    fast = getattr(tokenizer, "is_fast", False)  # only fast tokenizers give word ids
    windowed = WindowedEncoder(tokenizer, size=window_chars)

    def encode_whole(texts: list[str]) -> dict:
        enc = tokenizer(
            texts, truncation=truncate_to is not None, max_length=truncate_to,
            return_attention_mask=False, return_token_type_ids=False,
        )
        if fast:
            words = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(texts))]
        else:  # no word ids: -1 everywhere (whole-word masking refuses such a tokenizer up front)
            words = [[-1] * len(ids) for ids in enc["input_ids"]]
        out = {"input_ids": enc["input_ids"], "word_ids": words}
        if counting:  # a fast tokenizer keeps what it cut off; a slow one: a full-length row may be cut
            out["truncated"] = ([bool(e.overflowing) for e in enc.encodings] if fast and enc.encodings
                                else [len(ids) >= truncate_to for ids in enc["input_ids"]])
        return out

    def encode(batch):
        texts = batch["text"]
        long = [i for i, text in enumerate(texts) if len(text) > window_chars]
        if not long or windowed.seam is None:
            return encode_whole(texts)
        short = [i for i, text in enumerate(texts) if len(text) <= window_chars]
        out = {key: [None] * len(texts) for key in ("input_ids", "word_ids", *(["truncated"] if counting else []))}
        for key, values in (encode_whole([texts[i] for i in short]) if short else {}).items():
            for i, value in zip(short, values):  # one type per column in a batch (Arrow infers lists as int64)
                out[key][i] = value if key == "truncated" else np.asarray(value, dtype=np.int32)
        for i in long:  # numpy arrays: a long document's tokens never become Python lists
            ids, words, cut = windowed.encode(texts[i], truncate_to)
            out["input_ids"][i], out["word_ids"][i] = ids, words
            if counting:
                out["truncated"][i] = cut
        return out

    counting = stats is not None and truncate_to is not None
    features = datasets.Features({
        "input_ids": datasets.List(datasets.Value("int32")),
        "word_ids": datasets.List(datasets.Value("int32")),
        **({"truncated": datasets.Value("bool")} if counting else {}),
    })
    shown = datasets.is_progress_bar_enabled()
    if not progress:
        datasets.disable_progress_bars()
    try:
        ds = datasets.Dataset.from_dict({"text": texts}).map(
            encode, batched=True, batch_size=batch_size, remove_columns=["text"], features=features,
            keep_in_memory=True, desc="tokenizing",
        )
    finally:
        if shown:
            datasets.enable_progress_bars()
    if stats is not None:
        stats["truncated"] = int(np.sum(ds.data.column("truncated").to_numpy())) if counting and len(ds) else 0
    if len(ds) == 0:
        return Blocks(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(1, np.int64))
    ids = ds.data.column("input_ids").combine_chunks()
    words = ds.data.column("word_ids").combine_chunks()
    offsets = ids.offsets.to_numpy().astype(np.int64)
    flat_ids = ids.values.to_numpy()[offsets[0]:offsets[-1]]
    w_off = words.offsets.to_numpy()
    flat_words = words.values.to_numpy()[w_off[0]:w_off[-1]]
    return Blocks(flat_ids.astype(np.int32, copy=False), flat_words.astype(np.int32, copy=False), offsets - offsets[0])


def cut(docs: Blocks, chunk_size: int) -> Blocks:
    """Concatenate every document and cut into blocks of `chunk_size`; only the final remainder is dropped."""
    tokens = docs.tokens[docs.offsets[0]:docs.offsets[-1]]
    words = docs.words[docs.offsets[0]:docs.offsets[-1]]
    n = len(tokens) // chunk_size
    return Blocks(
        tokens[: n * chunk_size].copy(), words[: n * chunk_size].copy(),
        np.arange(n + 1, dtype=np.int64) * chunk_size,
    )


def _rng(seed: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([seed, purpose])


def subsample(blocks: Blocks, size: int | None, seed: int, purpose: int) -> Blocks:
    """`size` sequences drawn without replacement, kept in corpus order (the sampler shuffles)."""
    if size is None or size >= len(blocks):
        return blocks
    keep = np.sort(_rng(seed, purpose).choice(len(blocks), size=size, replace=False))
    return blocks.take(keep)


def fingerprint(blocks: Blocks) -> str:
    """A short hash of the token ids and the block boundaries: the same text cut the same way gives
    the same fingerprint (about 10 ms per million tokens)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(np.ascontiguousarray(blocks.offsets - blocks.offsets[0], dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(blocks.tokens[blocks.offsets[0]:blocks.offsets[-1]], dtype=np.int32).tobytes())
    return h.hexdigest()


@dataclass
class Splits:
    train: Blocks
    eval: Blocks
    documents: int
    holdout: str  # "split" (the source's own), "eval-data" (--eval-data), "documents" or "tail"
    duplicates: int = 0  # exact repeats dropped before the split
    truncated: int = 0  # --line-by-line: lines cut at the longest example

    def summary(self) -> dict:
        return {
            "documents": self.documents,
            "duplicates_dropped": self.duplicates,
            "lines_truncated": self.truncated,
            "holdout": self.holdout,
            "train_examples": len(self.train),
            "train_tokens": self.train.num_tokens,
            "eval_examples": len(self.eval),
            "eval_tokens": self.eval.num_tokens,
            "train_fingerprint": fingerprint(self.train),
            "eval_fingerprint": fingerprint(self.eval),
        }


@dataclass
class Prepared:
    """Both sides cut into blocks, before --train-size and --eval-size draw from them: what one
    tokenization of the corpus gives, and what the cache keeps (data/cache.py)."""

    train: Blocks
    eval: Blocks
    documents: int
    holdout: str  # as Splits.holdout
    duplicates: int
    truncated: int
    tokens: int  # of every document, both sides
    split_holdout: str  # data/split's own: "split", "documents" or "tail"
    eval_documents: int  # the documents held out (0 for "tail")

    META = ("documents", "holdout", "duplicates", "truncated", "tokens", "split_holdout", "eval_documents")

    def meta(self) -> dict:
        return {name: getattr(self, name) for name in self.META}


def prepare_blocks(documents: Documents, tokenizer, *, chunk_size: int = 128, line_by_line: bool = False,
                   max_length: int | None = None, eval_fraction: float = 0.1, seed: int = 42,
                   eval_source: str = "split") -> Prepared:
    """Split the documents (data/split.py: repeats dropped, whole documents held out), tokenize them
    once and make blocks of each side (a source too small to hold out documents: the tail of its
    blocks is the evaluation part)."""
    split = split_documents(documents, eval_fraction=eval_fraction, seed=seed)
    texts = split.train + split.eval
    stats: dict = {}
    docs = tokenize(texts, tokenizer, truncate_to=max_length if line_by_line else None, stats=stats)

    def to_blocks(d: Blocks) -> Blocks:
        return d if line_by_line else cut(d, chunk_size)

    holdout = eval_source if split.holdout == "split" else split.holdout
    if split.holdout == "tail":
        blocks = to_blocks(docs)
        n_eval = max(1, round(eval_fraction * len(blocks)))
        train = blocks.take(np.arange(0, max(0, len(blocks) - n_eval)))
        eval_ = blocks.take(np.arange(max(0, len(blocks) - n_eval), len(blocks)))
    else:
        train = to_blocks(docs.take(np.arange(len(split.train))))
        eval_ = to_blocks(docs.take(np.arange(len(split.train), len(docs))))
    return Prepared(train, eval_, documents=len(texts), holdout=holdout, duplicates=split.duplicates,
                    truncated=stats.get("truncated", 0), tokens=docs.num_tokens, split_holdout=split.holdout,
                    eval_documents=len(split.eval))


def splits_of(prepared: Prepared, *, chunk_size: int = 128, line_by_line: bool = False,
              train_size: int | None = None, eval_size: int | None = None, eval_fraction: float = 0.1,
              seed: int = 42, eval_source: str = "split", need_train: bool = True) -> Splits:
    """The run's splits: both sides checked for a block at least, then downsampled. `need_train=False`
    (evaluate) asks for the evaluation set only, so an empty training part is no error."""
    train, eval_, holdout = prepared.train, prepared.eval, prepared.holdout
    unit = "lines" if line_by_line else f"blocks of {chunk_size} tokens"
    if (len(train) == 0 and need_train) or len(eval_) == 0:
        fix = "add text: at least 2 non-empty lines" if line_by_line else "add text or lower --chunk-size"
        if len(train) == 0 and holdout != "split" and eval_fraction >= 0.5:
            fix = f"lower --eval-fraction ({eval_fraction:g} holds out nearly everything; 0.1 is usual)"
        elif len(eval_) == 0 and prepared.split_holdout == "split" and not prepared.eval_documents:
            fix = ("the --eval-data text is all --data text too: give evaluation text that --data does not hold"
                   if eval_source == "eval-data" else
                   "the evaluation split holds only text that training holds too: choose another --eval-split")
        raise DataError(
            f"the corpus is too small: {prepared.tokens} tokens give {len(train)} training and "
            f"{len(eval_)} evaluation {unit}: {fix}"
        )
    return Splits(
        train=subsample(train, train_size, seed, 1),
        eval=subsample(eval_, eval_size, seed, 2),
        documents=prepared.documents,
        holdout=holdout,
        duplicates=prepared.duplicates,
        truncated=prepared.truncated,
    )


def prepare(documents: Documents, tokenizer, *, chunk_size: int = 128, line_by_line: bool = False,
            max_length: int | None = None, train_size: int | None = None, eval_size: int | None = None,
            eval_fraction: float = 0.1, seed: int = 42, eval_source: str = "split", need_train: bool = True) -> Splits:
    """prepare_blocks, then splits_of: `eval_source` names where `documents.eval` came from ("split" or
    "eval-data")."""
    prepared = prepare_blocks(documents, tokenizer, chunk_size=chunk_size, line_by_line=line_by_line,
                              max_length=max_length, eval_fraction=eval_fraction, seed=seed, eval_source=eval_source)
    return splits_of(prepared, chunk_size=chunk_size, line_by_line=line_by_line, train_size=train_size,
                     eval_size=eval_size, eval_fraction=eval_fraction, seed=seed, eval_source=eval_source,
                     need_train=need_train)


def check_lengths(cfg, max_positions: int) -> None:
    """--chunk-size / --max-length must fit the model's position table."""
    if not cfg.line_by_line and cfg.chunk_size > max_positions:
        raise ConfigError(
            f"--chunk-size {cfg.chunk_size} is above the {max_positions} positions the model takes: "
            f"use --chunk-size {max_positions} or less"
        )
    if cfg.line_by_line and cfg.max_length is not None and cfg.max_length > max_positions:
        raise ConfigError(
            f"--max-length {cfg.max_length} is above the {max_positions} positions the model takes: "
            f"use --max-length {max_positions} or less"
        )


def splits_from_config(cfg, tokenizer, max_positions: int, *, read_train: bool = True,
                       need_train: bool = True, documents=None, node_first=None, say=None,
                       look=None) -> Splits:
    """The recipe's data step: the prepared blocks from the cache (data/cache.py), or read --data (and
    --eval-data; `documents`: what documents_from_config read already), tokenize and cut them once and
    cache them; then `splits_of` with the config's options. `node_first(work)` runs `work` on one
    process per node and hands its answer to the others (training/prepare.py); `say` speaks, and says
    `look(documents)` too (a note on the text read, or None)."""
    check_lengths(cfg, max_positions)
    max_length = cfg.max_length or max_positions
    eval_source = "eval-data" if cfg.eval_data else "split"

    def compute() -> Prepared:
        docs = documents if documents is not None else documents_from_config(cfg, read_train=read_train)
        if say is not None:  # said where the text is read (not on a cache hit)
            for note in [*docs.notes, look(docs) if look is not None else None]:
                if note:
                    say(note)
        options = dict(chunk_size=cfg.chunk_size, line_by_line=cfg.line_by_line, max_length=max_length,
                       eval_fraction=cfg.eval_fraction, seed=cfg.seed, eval_source=eval_source)
        # Tokenized once per process for these documents (documents_from_config's are memoized too), this
        # tokenizer and these options (data/memo.py), also without a disk cache. The entry holds `docs`, so
        # its id names no other object while it is kept.
        key = (id(docs), tokenizer_fingerprint(tokenizer), tuple(sorted(options.items())))
        return _PREPARED.get(key, lambda: (docs, prepare_blocks(docs, tokenizer, **options)))[1]

    made: list[Prepared] = []

    def write() -> str:
        """The entry's path once it is complete ("" when there is no cache): on one process per node."""
        entry = blocks_entry(cfg, tokenizer, read_train=read_train, max_length=max_length)
        if entry is None:
            return ""
        if cache.load(entry) is not None:
            if say is not None:
                say(f"note: the prepared blocks of an earlier run of the same text, tokenizer and options, from "
                    f"{entry} (tokenized once; MLMTUNE_CACHE=off does without)")
            return str(entry)
        made.append(compute())
        problem = cache.save(entry, prepared_arrays(made[-1]), made[-1].meta())
        if problem is not None:
            if say is not None:
                say(f"note: the prepared blocks could not be cached in {entry.parent} ({problem}), so the next run "
                    "tokenizes again: free space there, or point MLMTUNE_CACHE at a folder you can write")
            return ""
        return str(entry)

    path = node_first(write) if node_first is not None else write()
    loaded = cache.load(Path(path)) if path else None
    prepared = prepared_from(*loaded) if loaded is not None else (made[0] if made else compute())
    return splits_of(prepared, chunk_size=cfg.chunk_size, line_by_line=cfg.line_by_line, train_size=cfg.train_size,
                     eval_size=cfg.eval_size, eval_fraction=cfg.eval_fraction, seed=cfg.seed,
                     eval_source=eval_source, need_train=need_train)


def blocks_entry(cfg, tokenizer, *, read_train: bool, max_length: int) -> Path | None:
    """Where the cache keeps the blocks this config and tokenizer make (None: no cache, or a source or
    tokenizer that cannot be hashed). The sources are hashed whole, so a changed file is a new entry."""
    if cache.cache_root() is None:
        return None
    split, eval_split = cfg.data_split, cfg.eval_split
    key = cache.entry_key(
        data_digest=cache.source_digest(list(cfg.data) if read_train else [], split=split, eval_split=eval_split),
        eval_data_digest=cache.source_digest(list(cfg.eval_data), split=split, eval_split=None),
        tokenizer_digest=cache.tokenizer_digest(tokenizer),
        chunk_size=cfg.chunk_size, line_by_line=cfg.line_by_line, max_length=max_length if cfg.line_by_line else None,
        lines_are_documents=lines_are_documents(cfg),
        eval_fraction=cfg.eval_fraction, seed=cfg.seed, data_split=split, eval_split=eval_split,
        text_column=cfg.text_column, encoding=cfg.encoding)
    return None if key is None else cache.entry_path(key)


def prepared_arrays(prepared: Prepared) -> dict[str, np.ndarray]:
    return {f"{side}_{name}": getattr(getattr(prepared, side), name)
            for side in ("train", "eval") for name in cache.ARRAYS}


def prepared_from(arrays: dict[str, np.ndarray], meta: dict) -> Prepared:
    """A cache entry as Prepared: the blocks memory-mapped (read-only, shared by the node's processes)."""
    train, eval_ = (Blocks(*(arrays[f"{side}_{name}"] for name in cache.ARRAYS)) for side in ("train", "eval"))
    return Prepared(train, eval_, **{name: meta[name] for name in Prepared.META})


_PREPARED = Memo()
