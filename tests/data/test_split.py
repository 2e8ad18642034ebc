"""Repeated documents (data/split.py): exact repeats (also with CRLF, a BOM or trailing blanks) are
dropped before the split, so no evaluation text is training text."""

from __future__ import annotations

from pathlib import Path

from mlmtune.data.blocks import prepare
from mlmtune.data.sources import Documents, bbc_news_folder
from mlmtune.data.split import drop_duplicates


def test_repeated_documents_never_straddle_the_split(tokenizer, news_folder):
    texts = [p.read_text() for p in sorted(Path(news_folder).glob("*.txt"))]
    docs = Documents(train=texts + [t + "\n" for t in texts[:15]])  # 15 repeats, one with a trailing newline
    splits = prepare(docs, tokenizer, line_by_line=True, eval_fraction=0.3, seed=42, max_length=128)
    assert splits.duplicates == 15 and splits.summary()["duplicates_dropped"] == 15
    train = {tuple(splits.train.tokens[a:b]) for a, b in zip(splits.train.offsets[:-1], splits.train.offsets[1:])}
    evals = {tuple(splits.eval.tokens[a:b]) for a, b in zip(splits.eval.offsets[:-1], splits.eval.offsets[1:])}
    assert evals and not (train & evals)


def test_an_eval_split_drops_what_training_holds(tokenizer, news_folder):
    texts = [p.read_text() for p in sorted(Path(news_folder).glob("*.txt"))]
    splits = prepare(Documents(train=texts[:30], eval=texts[25:]), tokenizer, chunk_size=32, seed=0)
    assert splits.duplicates == 5 and splits.holdout == "split"


def test_bbc_news_holds_98_repeats():
    texts = [p.read_text(encoding="latin-1") for p in sorted(bbc_news_folder().rglob("*.txt"))]
    kept, dropped = drop_duplicates(texts)
    assert (len(texts), dropped) == (2225, 98) and len(set(kept)) == len(kept)


def test_crlf_and_bom_copies_are_repeats():
    kept, dropped = drop_duplicates(["one\ntwo", "one\r\ntwo", "\ufeffone\ntwo  ", "three"])
    assert (kept, dropped) == (["one\ntwo", "three"], 2)
