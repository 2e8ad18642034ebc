"""Long documents in windows (data/windows.py, issue 21: memory grew with the longest document): the cuts
never split a word, a document cut in windows gives the tokens and word ids it gives whole (bbc-news,
a long synthetic line, truncation), the tokenizer never sees more than a window at once, and a tokenizer
whose tokens would change at a seam is found and tokenizes whole. The memory itself is measured by
benchmarks/long_document.py, not here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import bbc_files

from mlmtune.data.blocks import fingerprint, tokenize
from mlmtune.data.windows import PROBE, SEAMS, WINDOW_CHARS, WindowedEncoder, windows

WHOLE = 10 ** 12  # a window longer than any text: tokenized whole, the path short documents take


@pytest.fixture(scope="module")
def bbc_texts() -> list[str]:
    return [p.read_text(encoding="latin-1") for p in bbc_files(300, seed=1)]


def long_line(texts: list[str], chars: int) -> str:
    """The texts on one line (newlines kept as they are, spaces doubled now and then), `chars` long or more."""
    out, size = [], 0
    while size < chars:
        for text in texts:
            out.append(text.replace(". ", ".  "))
            size += len(text) + 1
    return " ".join(out)


def same_blocks(a, b) -> None:
    assert fingerprint(a) == fingerprint(b)
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.words, b.words)
    assert np.array_equal(a.offsets, b.offsets)


@pytest.mark.parametrize("text", [PROBE, "no-spaces-at-all" * 50, "  leading and trailing  \n", "a\tb\nc  d" * 30, ""])
def test_windows_join_to_the_text_and_cut_only_before_whitespace(text):
    for size in (2, 7, 40):
        parts = list(windows(text, size))
        assert "".join(parts) == text
        for before, part in zip(parts, parts[1:]):
            assert part[0] in " \t\n\r" and not before[-1].isspace()  # a whole run of whitespace starts the window


def test_a_text_without_whitespace_is_one_window():
    assert list(windows("x" * 1000, 10)) == ["x" * 1000]
    text = "y" * 500 + " tail " + "z" * 500
    assert list(windows(text, 10)) == ["y" * 500, " tail " + "z" * 500]  # a window is at least 3/4 of the size


def test_bbc_news_in_windows_gives_the_same_blocks(tokenizer, bbc_texts):
    """Every article cut in windows of ~300 characters: the same tokens, word ids and fingerprint as whole."""
    whole = tokenize(bbc_texts, tokenizer, progress=False, window_chars=WHOLE)
    assert whole.num_tokens > 100_000
    same_blocks(tokenize(bbc_texts, tokenizer, progress=False, window_chars=300), whole)
    same_blocks(tokenize(bbc_texts, tokenizer, progress=False), whole)  # the default: articles stay whole


def test_a_long_line_gives_the_same_tokens_in_windows(tokenizer, bbc_texts):
    line = long_line(bbc_texts, 3 * WINDOW_CHARS)
    whole = tokenize([line, "a short one."], tokenizer, progress=False, window_chars=WHOLE)
    same_blocks(tokenize([line, "a short one."], tokenizer, progress=False), whole)


def test_truncation_in_windows_is_the_tokenizers(tokenizer, bbc_texts):
    """--line-by-line cuts a long line at --max-length: the same tokens, and the same count of cut lines."""
    texts = bbc_texts[:40] + ["short line", long_line(bbc_texts[:5], 5000)]
    expected, got = {}, {}
    whole = tokenize(texts, tokenizer, progress=False, truncate_to=128, stats=expected, window_chars=WHOLE)
    windowed = tokenize(texts, tokenizer, progress=False, truncate_to=128, stats=got, window_chars=300)
    same_blocks(windowed, whole)
    assert got == expected and expected["truncated"] == 41


def test_the_tokenizer_never_sees_more_than_a_window(tokenizer, bbc_texts):
    """The memory of tokenizing follows the longest input the tokenizer is given: a window, not the document."""
    longest = []

    class Watched:
        def __getattr__(self, name):
            return getattr(tokenizer, name)

        def __call__(self, texts, *args, **kwargs):
            longest.append(max(map(len, [texts] if isinstance(texts, str) else texts), default=0))
            return tokenizer(texts, *args, **kwargs)

    line = long_line(bbc_texts, 3 * WINDOW_CHARS)
    blocks = tokenize([line], Watched(), progress=False)
    assert blocks.num_tokens > 50_000 and max(longest) <= WINDOW_CHARS


def test_each_tokenizer_gets_the_seams_that_keep_its_tokens(tiny_roberta, bbc_texts):
    """Byte-level BPE: seams before any whitespace; with add_prefix_space (a space put before an input
    that lacks one): before spaces only; a normaliser that prepends a mark to every input: no seam, so
    its long documents are tokenized whole. Each way, the tokens are the whole text's."""
    from tokenizers import normalizers
    from transformers import AutoTokenizer, RobertaTokenizerFast

    plain = AutoTokenizer.from_pretrained(tiny_roberta)
    folder = plain.save_pretrained(tiny_roberta + "-copy")[0].rsplit("/", 1)[0]
    spaced = RobertaTokenizerFast.from_pretrained(folder, add_prefix_space=True)
    marked = AutoTokenizer.from_pretrained(folder)
    marked.backend_tokenizer.normalizer = normalizers.Prepend("▁")
    line = long_line(bbc_texts[:20], 2500)
    for tok, seam in ((plain, SEAMS[0]), (spaced, SEAMS[1]), (marked, None)):
        assert WindowedEncoder(tok).seam is seam
        whole = tokenize([line], tok, progress=False, window_chars=WHOLE)
        same_blocks(tokenize([line], tok, progress=False, window_chars=200), whole)
    assert json.loads(spaced.backend_tokenizer.to_str())["pre_tokenizer"]["add_prefix_space"] is True
