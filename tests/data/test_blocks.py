"""Documents -> token blocks (data/blocks.py): tokenize keeping word ids, hold out evaluation text
(whole documents, the tail of a small corpus, or all of --eval-data), concatenate and cut or take
lines, downsample; and what does not fit: a corpus too small, blocks longer than the model."""

import json
import random

import numpy as np
import pytest
from helpers import assert_clean_error, assert_ok, eval_argv, news_text, run_cli, texts_of, train_argv

from mlmtune.data.blocks import Blocks, cut, fingerprint, prepare, tokenize
from mlmtune.data.sources import Documents
from mlmtune.errors import DataError


def test_cut_keeps_every_token_in_order_and_drops_only_the_final_remainder(tokenizer):
    texts = ["first document here.", "a second, longer document with more words in it.", "third."]
    docs = tokenize(texts, tokenizer)
    flat = [t for text in texts for t in tokenizer(text)["input_ids"]]
    assert docs.tokens.tolist() == flat
    blocks = cut(docs, 7)
    assert len(blocks) == len(flat) // 7
    assert set(blocks.lengths.tolist()) == {7}
    assert blocks.tokens.tolist() == flat[: len(blocks) * 7]


def test_word_ids_follow_the_fast_tokenizer(tokenizer):
    texts = ["tokenization is unbelievable", "hello world"]
    docs = tokenize(texts, tokenizer)
    expected = [-1 if w is None else w for t in texts for w in tokenizer(t).word_ids()]
    assert docs.words.tolist() == expected
    assert (docs.words[np.isin(docs.tokens, tokenizer.all_special_ids)] == -1).all()
    blocks = cut(docs, 4)
    assert blocks.words.tolist() == expected[: len(blocks) * 4]


def test_take_and_batch_pad_on_the_right():
    b = Blocks(np.arange(1, 10, dtype=np.int32), np.arange(9, dtype=np.int32), np.array([0, 2, 7, 9]))
    part = b.take([2, 0])
    assert part.tokens.tolist() == [8, 9, 1, 2]
    batch = b.batch([1, 0], pad_id=0, pad_to_multiple_of=8)
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][0].tolist() == [3, 4, 5, 6, 7, 0, 0, 0]
    assert batch["attention_mask"].sum(1).tolist() == [5, 2]
    assert batch["word_ids"][1].tolist() == [0, 1] + [-1] * 6


def _docs(n):
    return Documents([f"document number {i} " + "word " * (20 + i) for i in range(n)])


def test_holdout_is_whole_documents_and_reproducible(tokenizer):
    a = prepare(_docs(30), tokenizer, chunk_size=16, seed=1)
    b = prepare(_docs(30), tokenizer, chunk_size=16, seed=1)
    c = prepare(_docs(30), tokenizer, chunk_size=16, seed=2)
    assert a.holdout == "documents"
    assert np.array_equal(a.eval.tokens, b.eval.tokens) and np.array_equal(a.train.tokens, b.train.tokens)
    assert not np.array_equal(a.eval.tokens, c.eval.tokens)
    # the "number i" token pairs identify documents: none is on both sides
    def numbers(blocks):
        text = tokenizer.decode(blocks.tokens)
        return {int(w) for w in text.split() if w.isdigit()}
    assert numbers(a.eval).isdisjoint(numbers(a.train))
    assert len(numbers(a.eval)) == 3  # 10% of 30 documents


def test_small_corpus_holds_out_the_tail(tokenizer):
    s = prepare(Documents(["one two three four five six " * 40]), tokenizer, chunk_size=16, eval_fraction=0.25)
    assert s.holdout == "tail"
    assert len(s.eval) == round(0.25 * (len(s.train) + len(s.eval)))


def test_downsampling_is_reproducible_and_sized(tokenizer):
    a = prepare(_docs(60), tokenizer, chunk_size=8, train_size=50, eval_size=5, seed=3)
    b = prepare(_docs(60), tokenizer, chunk_size=8, train_size=50, eval_size=5, seed=3)
    assert len(a.train) == 50 and len(a.eval) == 5
    assert np.array_equal(a.train.tokens, b.train.tokens)


def test_line_by_line_truncates_and_keeps_lines(tokenizer):
    docs = Documents([f"line {i} " + "x " * (i * 10) for i in range(12)])
    s = prepare(docs, tokenizer, line_by_line=True, max_length=16, seed=0)
    assert len(s.train) + len(s.eval) == 12
    assert s.train.lengths.max() == 16


def test_too_small_corpus_is_an_error(tokenizer):
    with pytest.raises(DataError, match="too small"):
        prepare(Documents(["just a few words"]), tokenizer, chunk_size=128)


def test_cut_of_two_million_tokens_in_many_documents_is_the_concatenation(tokenizer):
    """The scale of a real corpus (the speed against sum(lists, []) is measured in
    benchmarks/prepare_throughput.py, not here)."""
    n = 2_000_000
    tokens = np.arange(n, dtype=np.int64).astype(np.int32)
    docs = Blocks(tokens, tokens % 97, np.arange(0, n + 1, 100, dtype=np.int64))  # 20,000 documents
    blocks = cut(docs, 128)
    assert len(blocks) == n // 128 and blocks.num_tokens == (n // 128) * 128
    assert np.array_equal(blocks.tokens, tokens[: (n // 128) * 128])
    assert np.array_equal(blocks.words, tokens[: (n // 128) * 128] % 97)
    assert np.array_equal(blocks.lengths, np.full(n // 128, 128))


# --- a 10 MB line, a corpus too small, blocks longer than the model -------------------------------

@pytest.mark.slow
def test_one_10mb_line_evaluates(capsys, tiny_bert, news_folder, tmp_path):
    words = news_text(news_folder, 10).split()
    rng = random.Random(0)
    pieces, size = [], 0
    while size < 10_000_000:
        w = rng.choice(words)
        pieces.append(w)
        size += len(w.encode("utf-8")) + 1
    data = tmp_path / "one-line.txt"
    data.write_text(" ".join(pieces))  # one line, no newline
    assert data.stat().st_size >= 10_000_000
    code, out, err = run_cli(capsys, *eval_argv(tiny_bert, data, "--chunk-size", "64", "--json"))
    assert_ok(code, err)
    result = json.loads(out)
    assert result["masked_tokens"] > 0 and result["perplexity"] > 0


def test_corpus_too_small(capsys, tiny_bert, tmp_path):
    (tmp_path / "tiny.txt").write_text("Just one short sentence.")
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, tmp_path / "tiny.txt", tmp_path / "out"))
    assert_clean_error(code, err, "too small", "--chunk-size")
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, tmp_path / "tiny.txt", tmp_path / "out", "--line-by-line"))
    assert_clean_error(code, err, "too small", "lines")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["1000", "2"])
def test_max_length_out_of_range(capsys, tiny_bert, news_folder, tmp_path, value):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--line-by-line", "--max-length", value))
    line = assert_clean_error(code, err, "--max-length")
    if value == "1000":
        assert "128" in line
    assert not out.exists()


def test_eval_fraction_near_one_names_eval_fraction(capsys, tmp_path, tiny_bert, news_folder):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "o", "--eval-fraction", "0.999"))
    assert_clean_error(code, err, "lower --eval-fraction")


# --- --eval-data ----------------------------------------------------------------------------------

def test_eval_data_is_the_whole_eval_set_and_nothing_is_held_out_of_data(eval_data_run, split_news, tokenizer):
    train, valid = split_news
    data = json.loads((eval_data_run / "run.json").read_text())["data"]
    assert data["holdout"] == "eval-data"
    assert data["eval_fingerprint"] == fingerprint(cut(tokenize(texts_of(valid), tokenizer, progress=False), 64))
    all_train = cut(tokenize(texts_of(train), tokenizer, progress=False), 64)
    assert (data["train_examples"], data["train_fingerprint"]) == (len(all_train), fingerprint(all_train))
    assert json.loads((eval_data_run / "run.json").read_text())["config"]["eval_data"] == [valid]


def test_eval_data_drops_repeats_and_training_text_and_is_capped_by_eval_size(split_news, tokenizer, tmp_path):
    from mlmtune.config import build_config
    from mlmtune.data.blocks import splits_from_config

    train, valid = split_news
    copy = tmp_path / "valid-plus.txt"  # one validation article twice, one training article
    copy.write_text(texts_of(valid)[0], encoding="utf-8")
    leak = tmp_path / "leak.txt"
    leak.write_text(texts_of(train)[0], encoding="utf-8")
    cfg = build_config({"data": [train], "eval_data": [valid, str(copy), str(leak)], "chunk_size": 64,
                        "eval_size": None})
    splits = splits_from_config(cfg, tokenizer, 512)
    assert splits.duplicates == 2
    assert fingerprint(splits.eval) == fingerprint(cut(tokenize(texts_of(valid), tokenizer, progress=False), 64))
    capped = splits_from_config(cfg.replace(eval_size=7), tokenizer, 512)
    assert len(capped.eval) == 7
