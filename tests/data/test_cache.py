"""Tokenize once (data/cache.py): the prepared blocks of a corpus are kept on disk, memory-mapped, and
read back by a rerun, a --resume and `evaluate` of the same data; a changed file, tokenizer or option
is a new entry; no cache (MLMTUNE_CACHE=off, or one that cannot be written) only costs the time."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_ok, eval_argv, run_cli

import mlmtune.data.blocks as blocks
from mlmtune.config import build_config
from mlmtune.data.blocks import fingerprint, splits_from_config
from mlmtune.data.sources import read_corpus


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("MLMTUNE_CACHE", str(root))
    return root


@pytest.fixture
def corpus(news_folder, tmp_path) -> Path:
    folder = tmp_path / "corpus"
    shutil.copytree(news_folder, folder)
    return folder


@pytest.fixture
def tokenize_calls(monkeypatch) -> list:
    """Every call of the corpus tokenizer (the work the cache saves). Each splits_from_config call here is
    a run in a new process: the in-process memo (data/memo.py) keeps nothing."""
    from mlmtune.data.memo import Memo

    monkeypatch.setattr(blocks, "_PREPARED", Memo(size=0))
    calls, real = [], blocks.tokenize

    def counted(texts, *args, **kwargs):
        calls.append(len(texts))
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(blocks, "tokenize", counted)
    return calls


def cfg(corpus, **extra):
    return build_config({"data": [str(corpus)], "chunk_size": 32, "eval_size": 8, "seed": 0, **extra})


def entries(root: Path) -> list[Path]:
    return sorted(p for p in (root / "blocks").iterdir() if not p.name.startswith(".")) if (root / "blocks").is_dir() else []


def test_the_second_preparation_reads_the_cache(cache, corpus, tokenizer, tokenize_calls):
    said = []
    first = splits_from_config(cfg(corpus), tokenizer, 512, say=said.append)
    assert tokenize_calls == [40] and len(entries(cache)) == 1 and not said
    again = splits_from_config(cfg(corpus), tokenizer, 512, say=said.append)
    assert tokenize_calls == [40]  # not tokenized again
    assert isinstance(again.train.tokens, np.memmap)  # read from disk, shared through the page cache
    assert again.summary() == first.summary()  # the same blocks: counts and fingerprints
    assert len(said) == 1 and str(entries(cache)[0]) in said[0]


def test_sizes_drawn_after_share_an_entry_and_other_options_do_not(cache, corpus, tokenizer, tokenize_calls):
    splits_from_config(cfg(corpus), tokenizer, 512)
    smaller = splits_from_config(cfg(corpus, eval_size=4, train_size=50), tokenizer, 512)
    assert tokenize_calls == [40] and len(smaller.eval) == 4 and len(smaller.train) == 50
    splits_from_config(cfg(corpus, chunk_size=16), tokenizer, 512)
    splits_from_config(cfg(corpus, seed=1), tokenizer, 512)  # another held-out draw
    assert len(tokenize_calls) == 3 and len(entries(cache)) == 3


def test_a_changed_file_is_a_new_entry(cache, corpus, tokenizer, tokenize_calls):
    before = splits_from_config(cfg(corpus), tokenizer, 512).summary()
    victim = sorted(corpus.glob("*.txt"))[0]
    # 200 more tokens: more blocks of 32 whichever side holds the file (a block's leftover is dropped)
    victim.write_text(victim.read_text(encoding="utf-8") + " One more sentence." * 50, encoding="utf-8")
    after = splits_from_config(cfg(corpus), tokenizer, 512).summary()
    assert len(tokenize_calls) == 2 and len(entries(cache)) == 2
    assert after["train_tokens"] + after["eval_tokens"] > before["train_tokens"] + before["eval_tokens"]


def test_another_tokenizer_is_a_new_entry(cache, corpus, tokenizer, tokenize_calls):
    splits_from_config(cfg(corpus), tokenizer, 512)
    grown = __import__("copy").deepcopy(tokenizer)
    grown.add_tokens(["zymurgist"])  # --add-tokens cuts the text with new words
    splits_from_config(cfg(corpus), grown, 512)
    assert len(tokenize_calls) == 2 and len(entries(cache)) == 2


@pytest.mark.parametrize("setting", ["off", "file"])
def test_no_cache_only_costs_the_time(monkeypatch, tmp_path, corpus, tokenizer, tokenize_calls, setting):
    target = tmp_path / "not-a-folder"
    target.write_text("a file where the cache folder would go")
    monkeypatch.setenv("MLMTUNE_CACHE", "off" if setting == "off" else str(target))
    said = []
    one = splits_from_config(cfg(corpus), tokenizer, 512, say=said.append).summary()
    two = splits_from_config(cfg(corpus), tokenizer, 512, say=said.append).summary()
    assert one == two and len(tokenize_calls) == 2
    if setting == "file":
        assert said and "could not be cached" in said[0] and "MLMTUNE_CACHE" in said[0]
    else:
        assert not said
    assert target.read_text() == "a file where the cache folder would go"


def test_a_killed_writers_leftovers_go_and_a_half_entry_is_never_read(cache, corpus, tokenizer, tokenize_calls):
    first = splits_from_config(cfg(corpus), tokenizer, 512)
    entry = entries(cache)[0]
    (entry / "meta.json").unlink()  # as if cut short before its last file: not an entry
    leftover = entry.parent / f".{entry.name}.killed"
    leftover.mkdir()
    shutil.rmtree(entry)
    again = splits_from_config(cfg(corpus), tokenizer, 512)
    assert len(tokenize_calls) == 2 and not leftover.exists()
    assert fingerprint(again.train) == fingerprint(first.train)


def test_evaluate_reads_what_train_prepared(capsys, cache, tiny_bert, corpus, tokenize_calls, tmp_path):
    from helpers import train_argv

    assert_ok(*run_cli(capsys, *train_argv(tiny_bert, corpus, tmp_path / "run"))[::2])
    assert len(tokenize_calls) == 1
    code, out, err = run_cli(capsys, *eval_argv(tiny_bert, corpus, "--json"))
    assert_ok(code, err)
    assert len(tokenize_calls) == 1  # evaluate of the same data: the blocks from the cache


def test_a_resume_does_not_tokenize_again(capsys, run_copy, monkeypatch):
    """finished_run prepared its blocks into this session's cache; its --resume reads them."""
    def refuse(*args, **kwargs):
        raise AssertionError("the corpus was tokenized again")

    monkeypatch.setattr(blocks, "tokenize", refuse)
    code, out, err = run_cli(capsys, "train", "--config", run_copy / "run.json", "--output-dir", run_copy, "--resume",
                             "--max-steps", 3)
    assert_ok(code, err)
    assert "from the cache" in out + err or "prepared blocks of an earlier run" in out + err


def test_a_table_leaves_no_arrow_copy_behind(monkeypatch, tmp_path):
    """datasets converts a .jsonl/.csv to Arrow in its cache before reading it into memory; that copy (as
    large as the file) was left there for good."""
    import datasets

    hf_cache = tmp_path / "hf-datasets"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hf_cache)
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(f'{{"text": "review number {i} of many"}}\n' for i in range(50)), encoding="utf-8")
    assert len(read_corpus([str(path)]).train) == 50
    assert not list(hf_cache.rglob("*.arrow")) if hf_cache.exists() else True
