"""The masked-word measure (eval/words.py): the same words masked for two tokenizers, scored word by
word."""

from __future__ import annotations

import math

import torch
from helpers import fresh_tokenizer

from mlmtune.data.sources import read_corpus
from mlmtune.eval import words as wordeval
from mlmtune.model import vocabulary as vocab
from mlmtune.model.load import load_masked_lm


def test_masked_words_are_the_same_for_two_tokenizers_and_scored_word_by_word(tiny_bert, news_folder):
    texts = read_corpus([news_folder]).train[:6]
    base = fresh_tokenizer()
    extended = fresh_tokenizer()
    cutter = vocab.WordCutter(extended)
    chosen = vocab.cut_words(cutter, vocab.count_words(cutter, texts), 30, 1)
    vocab.add_to_tokenizer(extended, chosen)
    a, b = wordeval.prepare(texts, [base, extended], seed=3, max_length=128)
    assert a.n_words == b.n_words > 50 and (a.chars == b.chars).all()
    assert sum(int((lab != -100).sum()) for _, _, lab, _ in b.batches) < \
        sum(int((lab != -100).sum()) for _, _, lab, _ in a.batches)  # fewer pieces for the same words
    again = wordeval.prepare(texts, [base, extended], seed=3, max_length=128)[0]
    assert (again.chars == a.chars).all()  # a pure function of the text and the seed
    alone = wordeval.prepare(texts, [base], seed=3, max_length=128)[0]
    assert alone.n_words >= a.n_words  # a word either tokenizer cannot align is left out for both
    # the score equals the words' summed NLL computed here from the full logits
    model = load_masked_lm(tiny_bert).model
    result = wordeval.score(model, a, "cpu")
    nll, correct = torch.zeros(a.n_words, dtype=torch.float64), torch.ones(a.n_words, dtype=torch.bool)
    with torch.no_grad():
        for ids, att, lab, wid in a.batches:
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=att).logits.double(), -1)
            for r, c in zip(*torch.nonzero(lab != -100, as_tuple=True)):
                nll[wid[r, c]] -= logp[r, c, lab[r, c]]
                correct[wid[r, c]] &= bool(logp[r, c].argmax() == lab[r, c])
    assert math.isclose(result.bits_per_char, float(nll.sum()) / math.log(2) / int(a.chars.sum()), rel_tol=1e-4)
    assert math.isclose(result.word_accuracy, float(correct.double().mean()))


def test_no_held_out_text_gives_an_empty_set(tokenizer):
    """A corpus of fewer than 10 documents holds none out: prepare([]) died in tokenizer([])."""
    from mlmtune.eval.words import prepare, score

    (empty,) = prepare([], [tokenizer], seed=0, max_length=128)
    assert empty.n_words == 0 and empty.batches == []
    assert score(None, empty, "cpu").masked_words == 0
