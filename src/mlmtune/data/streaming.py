"""--streaming: training text read lazily through a datasets IterableDataset, for corpora larger than memory.

Documents stream in, are tokenized in batches, concatenated and cut (or taken line by line), and
pass a seeded shuffle buffer of blocks. The first documents of the stream are held out as the
evaluation set (whole documents, kept in memory and masked once, like the in-memory path); the
training stream starts after them and repeats epoch after epoch, so --max-steps is required.

With several processes each one tokenizes only its share of the documents: after the seeded document
shuffle (the same in every process), process r of W takes documents r, r + W, r + 2W, ... (every process
reads the text, which is cheap; tokenizing is not), concatenates and cuts them, and shuffles its own
blocks. Its block k is sample k * W + r of the stream (masks are drawn from that id), the same in every
run with the same seed and number of processes; a resumed run regenerates its share and skips the blocks
it has already trained on. The evaluation documents are tokenized once, by the first process, and
handed to the others (`held_out`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import DataError
from .blocks import Blocks, concat_blocks, cut, tokenize
from .sources import (
    BUILTIN_CORPORA,
    TABLE_FORMATS,
    TEXT_SUFFIXES,
    bbc_news_folder,
    looks_like_path,
    missing_source_error,
    quiet_datasets,
    read_text_file,
    split_documents,
    table_error,
    table_options,
)
from .split import same_text

SHUFFLE_DOCUMENTS = 1000  # documents in the datasets shuffle buffer
SHUFFLE_BLOCKS = 2048  # blocks in our own shuffle buffer (blocks of one document would else sit together)
TOKENIZE_BATCH = 256  # documents tokenized at a time
HOLDOUT_BATCH = 8  # documents tokenized at a time while filling the evaluation set (few extra are held out)


def _text_files(files: list[str], encoding: str, line_by_line: bool):
    for f in files:
        for doc in split_documents(read_text_file(Path(f), encoding), line_by_line):
            yield {"text": doc}


def _sniff(files: list[str], encoding: str) -> None:
    """A binary file among the text files fails now, not mid-training: the first 8 kB of each are read
    (text with NUL bytes, UTF-16/32 without --encoding, gets read_text_file's message)."""
    for f in files:
        with open(f, "rb") as fh:
            head = fh.read(8192)
        if b"\x00" in head:
            read_text_file(Path(f), encoding)  # raises a DataError naming the file, unless --encoding fits it


def _open_source(source: str, *, split: str, text_column: str, encoding: str, line_by_line: bool):
    import datasets

    path = Path(os.path.expanduser(source))
    files = None
    if source in BUILTIN_CORPORA and not path.exists():
        files, encoding = sorted(str(p) for p in bbc_news_folder().rglob("*.txt")), "latin-1"
    elif path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise DataError(f"folder {path} holds no .txt files: point --data at a folder of .txt files")
    elif path.is_file() and path.suffix.lower() not in TABLE_FORMATS:
        files = [str(path)]
    if files is not None:
        _sniff(files, encoding)
        return datasets.IterableDataset.from_generator(
            _text_files, gen_kwargs={"files": files, "encoding": encoding, "line_by_line": line_by_line})
    if not path.is_file() and (path.exists() or looks_like_path(source)):
        raise missing_source_error(source)
    try:
        with quiet_datasets():
            if path.is_file():
                stream = datasets.load_dataset(TABLE_FORMATS[path.suffix.lower()], data_files=str(path),
                                               split="train", streaming=True, **table_options(path))
            else:
                stream = datasets.load_dataset(source, split=split, streaming=True)
            first = next(iter(stream), None)
    except Exception as exc:
        if path.is_file():
            raise table_error(path, exc) from None
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(f"cannot stream dataset {source!r} from the Hugging Face Hub ({first_line}): check the "
                        "name and your network, or use a local file or the offline corpus bbc-news") from None
    if first is None:
        raise DataError(f"--data {source} holds no text: give a source with text")
    if text_column not in first:
        raise DataError(f"{source} has no column {text_column!r} (columns: {', '.join(first)}): "
                        "pass --text-column with the name of the text column")
    return stream.select_columns([text_column]).rename_column(text_column, "text") if text_column != "text" \
        else stream.select_columns(["text"])


def open_documents(sources: list[str], *, split: str = "train", text_column: str = "text", encoding: str = "utf-8",
                   line_by_line: bool = False):
    """All sources as one IterableDataset of non-empty {"text"} documents."""
    import datasets

    parts = [_open_source(s, split=split, text_column=text_column, encoding=encoding, line_by_line=line_by_line)
             for s in sources]
    docs = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    return docs.filter(lambda ex: isinstance(ex["text"], str) and bool(ex["text"].strip()))


class StreamingData:
    """The held-out evaluation blocks, and a generator of training blocks by stream index."""

    def __init__(self, documents, tokenizer, *, chunk_size: int, line_by_line: bool, max_length: int,
                 eval_size: int, seed: int, eval_stream=None, share: int = 0, shares: int = 1,
                 held_out: tuple | None = None):
        """`eval_stream` (--eval-data): the evaluation documents come from it, and training reads all
        of `documents` (except copies of evaluation text). `share` of `shares`: the documents this
        process tokenizes for training. `held_out`: another process's `held_out()`, so the evaluation
        documents are not tokenized again here."""
        self.documents = documents
        self.eval_stream = eval_stream
        self.tokenizer = tokenizer
        self.chunk_size = chunk_size
        self.line_by_line = line_by_line
        self.max_length = max_length
        self.seed = seed
        self.eval_size = eval_size
        self.share, self.shares = share, shares
        self.eval, self.eval_documents, self.eval_texts = held_out if held_out is not None else self._hold_out()
        self.skip_documents = 0 if eval_stream is not None else self.eval_documents  # held out of the stream's head
        if next(iter(self.documents.skip(self.skip_documents)), None) is None:
            raise DataError(f"the stream has no text left for training after the {self.eval_documents} documents "
                            "held out for evaluation: add text or lower --eval-size")

    def _blocks(self, texts: list[str]) -> Blocks:
        return tokenize(texts, self.tokenizer, truncate_to=self.max_length if self.line_by_line else None,
                        batch_size=len(texts) or 1, progress=False)

    def held_out(self) -> tuple[Blocks, int, set[bytes]]:
        """What another process's StreamingData takes as `held_out`: the evaluation blocks, the number of
        documents they came from, and the keys of those documents' text."""
        return self.eval, self.eval_documents, self.eval_texts

    def unshared(self) -> "StreamingData":
        """The same stream whole, as one process reads it (the warm start's sample: the same everywhere)."""
        return StreamingData(self.documents, self.tokenizer, chunk_size=self.chunk_size, line_by_line=self.line_by_line,
                             max_length=self.max_length, eval_size=self.eval_size, seed=self.seed,
                             eval_stream=self.eval_stream, held_out=self.held_out())

    def _hold_out(self) -> tuple[Blocks, int, set[bytes]]:
        """Whole documents from the head of the stream until they give eval_size blocks."""
        parts, n_docs, n_blocks, pending = [], 0, 0, []
        eval_texts: set[bytes] = set()  # training skips any later copy of these (no eval text in training)
        for example in (self.eval_stream if self.eval_stream is not None else self.documents):
            n_docs += 1
            pending.append(example["text"])
            eval_texts.add(text_key(example["text"]))
            if len(pending) == HOLDOUT_BATCH:
                parts.append(self._blocks(pending))
                pending = []
                n_blocks = self._count(parts)
                if n_blocks >= self.eval_size:
                    break
        if pending:
            parts.append(self._blocks(pending))
        docs = concat_blocks(parts) if parts else None
        blocks = docs if (docs is None or self.line_by_line) else cut(docs, self.chunk_size)
        if blocks is None or len(blocks) == 0:
            raise DataError("the stream holds too little text for an evaluation set: add text or lower --chunk-size")
        return blocks.take(np.arange(min(len(blocks), self.eval_size))), n_docs, eval_texts

    def _count(self, parts: list[Blocks]) -> int:
        if self.line_by_line:
            return sum(len(p) for p in parts)
        return sum(p.num_tokens for p in parts) // self.chunk_size

    def _epoch_blocks(self, epoch: int) -> Iterator[Blocks]:
        """Training blocks of one pass, in groups (one group per tokenized batch of documents)."""
        held_out, share, shares = self.eval_texts, self.share, self.shares
        train = (self.documents.skip(self.skip_documents)
                 .filter(lambda ex: text_key(ex["text"]) not in held_out)
                 .shuffle(seed=self.seed, buffer_size=SHUFFLE_DOCUMENTS))
        train.set_epoch(epoch)
        if shares > 1:  # this process's documents (the shuffled order is the same in every process)
            train = train.filter(lambda ex, i: i % shares == share, with_indices=True)
        carry = Blocks(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(2, np.int64))
        for batch in train.iter(batch_size=TOKENIZE_BATCH):
            docs = self._blocks(batch["text"])
            if self.line_by_line:
                yield docs
                continue
            joined = concat_blocks([carry, docs])
            blocks = cut(joined, self.chunk_size)
            start = len(blocks) * self.chunk_size  # the remainder waits for the next documents
            carry = Blocks(joined.tokens[start:], joined.words[start:],
                           np.array([0, joined.num_tokens - start], np.int64))
            yield blocks

    def train_blocks(self, start: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(index, tokens, word ids) of every training block of this share from its `start`-th on, forever.
        The index is the block's sample id in the whole stream: k * shares + share for its k-th block."""
        index, epoch = 0, 0
        while True:
            rng = np.random.default_rng([self.seed, 2000 + epoch] + ([self.share] if self.shares > 1 else []))
            buffer: list[tuple[np.ndarray, np.ndarray]] = []
            produced = 0
            for group in self._epoch_blocks(epoch):
                for i in range(len(group)):
                    a, b = group.offsets[i], group.offsets[i + 1]
                    buffer.append((group.tokens[a:b], group.words[a:b]))
                    if len(buffer) >= SHUFFLE_BLOCKS:
                        j = int(rng.integers(len(buffer)))
                        buffer[j], buffer[-1] = buffer[-1], buffer[j]
                        item = buffer.pop()
                        if index >= start:
                            yield (index * self.shares + self.share, *item)
                        index += 1
                        produced += 1
            rng.shuffle(buffer)
            for item in buffer:
                if index >= start:
                    yield (index * self.shares + self.share, *item)
                index += 1
                produced += 1
            if produced == 0:
                raise DataError("the stream holds no training text after the evaluation documents: add text")
            epoch += 1


def stream_batches(data: StreamingData, *, start_block: int, batch_size: int):
    """Micro-batches of `batch_size` consecutive blocks of this process's share, from its `start_block`-th
    block on; yields (Blocks, sample ids)."""
    pending: list[tuple[int, np.ndarray, np.ndarray]] = []
    for item in data.train_blocks(start_block):
        pending.append(item)
        if len(pending) == batch_size:
            lengths = np.array([len(t) for _, t, _ in pending])
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            yield (Blocks(np.concatenate([t for _, t, _ in pending]), np.concatenate([w for _, _, w in pending]),
                          offsets),
                   np.array([i for i, _, _ in pending], dtype=np.int64))
            pending = []


def text_key(text: str) -> bytes:
    """What identifies a held-out document's text (split.same_text, hashed: the keys travel between processes)."""
    return hashlib.blake2b(same_text(text).encode("utf-8", "surrogatepass"), digest_size=16).digest()
