import numpy as np
import pytest

from mlmtune.data.blocks import Blocks, cut, prepare, tokenize
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
