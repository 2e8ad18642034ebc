"""Documents -> token blocks: tokenize, hold out evaluation text, concatenate-and-cut or line by
line, downsample.

Everything after tokenization is numpy on flat arrays, so concatenating and cutting is linear in
the number of tokens (the seed's `sum(lists, [])` is quadratic).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError
from .memo import Memo, tokenizer_fingerprint
from .sources import Documents, documents_from_config
from .split import split_documents


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
             progress: bool = True, stats: dict | None = None) -> Blocks:
    """One sequence per text, with special tokens and word ids, through the tokenizer in batched `datasets.map`.
    With `stats` (and `truncate_to`), stats["truncated"] is how many texts were cut at `truncate_to`."""
    import datasets

    fast = getattr(tokenizer, "is_fast", False)  # only fast tokenizers give word ids

    def encode(batch):
        enc = tokenizer(
            batch["text"], truncation=truncate_to is not None, max_length=truncate_to,
            return_attention_mask=False, return_token_type_ids=False,
        )
        if fast:
            words = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(batch["text"]))]
        else:  # no word ids: -1 everywhere (whole-word masking refuses such a tokenizer up front)
            words = [[-1] * len(ids) for ids in enc["input_ids"]]
        out = {"input_ids": enc["input_ids"], "word_ids": words}
        if counting:  # a fast tokenizer keeps what it cut off; a slow one: a full-length row may be cut
            out["truncated"] = ([bool(e.overflowing) for e in enc.encodings] if fast and enc.encodings
                                else [len(ids) >= truncate_to for ids in enc["input_ids"]])
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


def prepare(documents: Documents, tokenizer, *, chunk_size: int = 128, line_by_line: bool = False,
            max_length: int | None = None, train_size: int | None = None, eval_size: int | None = None,
            eval_fraction: float = 0.1, seed: int = 42, eval_source: str = "split", need_train: bool = True) -> Splits:
    """Split the documents (data/split.py: repeats dropped, whole documents held out), tokenize them
    once, make blocks of each side (a source too small to hold out documents: the tail of its blocks
    is the evaluation part) and downsample each side. `eval_source` names where `documents.eval` came from ("split" or "eval-data"); `need_train=False`
    (evaluate) asks for the evaluation set only, so an empty training part is no error."""
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

    unit = "lines" if line_by_line else f"blocks of {chunk_size} tokens"
    if (len(train) == 0 and need_train) or len(eval_) == 0:
        fix = "add text: at least 2 non-empty lines" if line_by_line else "add text or lower --chunk-size"
        if len(train) == 0 and holdout != "split" and eval_fraction >= 0.5:
            fix = f"lower --eval-fraction ({eval_fraction:g} holds out nearly everything; 0.1 is usual)"
        elif len(eval_) == 0 and split.holdout == "split" and not split.eval:
            fix = ("the --eval-data text is all --data text too: give evaluation text that --data does not hold"
                   if eval_source == "eval-data" else
                   "the evaluation split holds only text that training holds too: choose another --eval-split")
        raise DataError(
            f"the corpus is too small: {docs.num_tokens} tokens give {len(train)} training and "
            f"{len(eval_)} evaluation {unit}: {fix}"
        )
    return Splits(
        train=subsample(train, train_size, seed, 1),
        eval=subsample(eval_, eval_size, seed, 2),
        documents=len(texts),
        holdout=holdout,
        duplicates=split.duplicates,
        truncated=stats.get("truncated", 0),
    )


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
                       need_train: bool = True, documents=None) -> Splits:
    """The recipe's data step: read --data (and --eval-data), unless `documents` already holds what
    documents_from_config read, then `prepare` with the config's options."""
    check_lengths(cfg, max_positions)
    if documents is None:
        documents = documents_from_config(cfg, read_train=read_train)
    options = dict(chunk_size=cfg.chunk_size, line_by_line=cfg.line_by_line, max_length=cfg.max_length or max_positions,
                   train_size=cfg.train_size, eval_size=cfg.eval_size, eval_fraction=cfg.eval_fraction, seed=cfg.seed,
                   eval_source="eval-data" if cfg.eval_data else "split", need_train=need_train)
    # Tokenized once per process for these documents, this tokenizer and these options (data/memo.py). The
    # entry holds `documents`, so its id names no other object while it is cached.
    key = (id(documents), tokenizer_fingerprint(tokenizer), tuple(sorted(options.items())))
    return _SPLITS.get(key, lambda: (documents, prepare(documents, tokenizer, **options)))[1]


_SPLITS = Memo()
