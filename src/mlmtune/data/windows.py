"""Long documents in windows: tokenize a document of any length with memory bounded by the window,
and get the tokens the whole document gives.

A fast tokenizer holds a document's whole encoding at once (its normalised copy with an alignment per
byte, every token's string, offsets and word index) and transformers turns it into Python lists: one
~100 MB line took 5.3 GB in `vocab` (issue 21). A document longer than WINDOW_CHARS is therefore cut
into windows just before a run of whitespace, so every word (and the run of spaces before it) lies
whole in one window, and tokenized a few windows per call; the windows' tokens are concatenated, the
word indices shifted by the words before, the special tokens put around once.

Whether a tokenizer gives the same tokens window by window is checked once per tokenizer, on PROBE cut
at every seam (spaces, runs of them, newlines, tabs, punctuation, accents, CJK, digits, contractions):
first with seams before any space, tab or newline, then (for a tokenizer that marks the start of an
input unless it begins with a space: byte-level BPE with add_prefix_space, a Metaspace without a
whitespace normaliser) before spaces only. A tokenizer for which neither holds (a normaliser that
prepends a word mark to every input it is given) tokenizes long documents whole, as before. A document without whitespace for longer than a window (a 20 MB base64
blob) cannot be cut without splitting a word: that stretch is one window.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator

import numpy as np

WINDOW_CHARS = 100_000  # ~20,000 tokens of English; news articles (bbc-news: at most 25,485) are whole
CALL_CHARS = 2_000_000  # characters tokenized per call, in windows: about one batch of 1,000 news articles

# A seam: a space, tab or newline right after a character that is not whitespace (str.isspace, which
# counts more characters as whitespace than the tokenizers do, so a seam is whitespace to all of them);
# failing that for a tokenizer, a space only.
SEAMS = (re.compile(r"(?<=\S)[ \t\n\r]"), re.compile(r"(?<=\S) "))

PROBE = ("The Quick brown fox's naïve café -- don't STOP!  Two  spaces,\tthen a tab,\nnew lines\n\n"
         "and   more: 3.14, 1,000 and 42%. Ménage à trois; Zürich. 東京 は 日本 の 首都 です。 "
         "Hà Nội là thủ đô của Việt Nam.  \t \n mixed runs end here... (quoted) [braces] <tags> "
         "https://example.org/a_b?c=d e-mail@example.org \u00a0no-break\u3000ideographic space end")


def windows(text: str, size: int = WINDOW_CHARS, seam: re.Pattern = SEAMS[0]) -> Iterator[str]:
    """`text` in consecutive windows of about 3/4 `size` characters or more, each but the first starting at
    a seam (before a whole run of whitespace), so no word is split; the windows join to `text`."""
    start = 0
    while len(text) - start > size:
        found = seam.search(text, start + max(1, size * 3 // 4))
        if found is None:
            break
        yield text[start:found.start()]
        start = found.start()
    yield text[start:]


def seam_for(holds: Callable[[re.Pattern], bool]) -> re.Pattern | None:
    """The first of SEAMS for which `holds(seam)` (windows cut there give what the whole text gives), or None."""
    return next((seam for seam in SEAMS if holds(seam)), None)


def same_in_windows(split: Callable[[str], list], seam: re.Pattern) -> bool:
    """Whether `split` (text -> a list) gives for PROBE the concatenation of what it gives for PROBE's
    windows, with a seam at every word."""
    return split(PROBE) == [x for part in windows(PROBE, 2, seam) for x in split(part)]


def _batches(parts: Iterator[str], chars: int) -> Iterator[list[str]]:
    batch, size = [], 0
    for part in parts:
        batch.append(part)
        size += len(part)
        if size >= chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


class WindowedEncoder:
    """Token ids and word indices of long documents, window by window, as `tokenizer(text)` gives them
    whole (with its special tokens, truncated to `truncate_to` as truncation=True would)."""

    def __init__(self, tokenizer, size: int = WINDOW_CHARS, call_chars: int = CALL_CHARS):
        self.tokenizer, self.size, self.call_chars = tokenizer, size, call_chars
        self.fast = bool(getattr(tokenizer, "is_fast", False))  # only fast tokenizers give word indices

    @functools.cached_property
    def specials(self) -> tuple[list[int], list[int]] | None:
        """The special tokens before and after a text's tokens ([CLS], [SEP]; <s>, </s>), or None when
        they do not simply surround the text."""
        around = self.tokenizer("a")["input_ids"]
        inner = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        for k in range(len(around) - len(inner) + 1):
            if around[k:k + len(inner)] == inner:
                return around[:k], around[k + len(inner):]
        return None

    @functools.cached_property
    def seam(self) -> re.Pattern | None:
        """Where windows of this tokenizer may be cut (checked on PROBE), None when nowhere: tokenize whole."""
        if self.specials is None:
            return None
        whole = self.tokenizer(PROBE)
        words = [-1 if w is None else w for w in whole.word_ids()] if self.fast else None

        def holds(seam: re.Pattern) -> bool:
            ids, windowed_words, _ = self._encode(PROBE, None, 2, seam)
            return ids.tolist() == whole["input_ids"] and (words is None or windowed_words.tolist() == words)

        return seam_for(holds)

    def encode(self, text: str, truncate_to: int | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
        """(token ids, word indices (-1: special token), whether truncation cut tokens off) of `text`;
        only for a tokenizer whose `seam` is not None."""
        return self._encode(text, truncate_to, self.size, self.seam)

    def _encode(self, text: str, truncate_to: int | None, size: int,
                seam: re.Pattern) -> tuple[np.ndarray, np.ndarray, bool]:
        before, after = self.specials
        room = None if truncate_to is None else max(0, truncate_to - len(before) - len(after))
        ids_parts: list[np.ndarray] = []
        word_parts: list[np.ndarray] = []
        tokens = words_before = 0
        call_chars = 1 if room is not None else self.call_chars  # truncating: one window at a time, few needed
        for batch in _batches(windows(text, size, seam), call_chars):
            enc = self.tokenizer(batch, add_special_tokens=False, return_attention_mask=False,
                                 return_token_type_ids=False, verbose=False)
            for i, ids in enumerate(enc["input_ids"]):
                ids_parts.append(np.asarray(ids, dtype=np.int32))
                if self.fast:
                    words = np.array([-1 if w is None else w for w in enc.word_ids(i)], dtype=np.int32)
                    word_parts.append(np.where(words >= 0, words + words_before, -1).astype(np.int32))
                    words_before += int(words.max()) + 1 if len(words) else 0
                else:
                    word_parts.append(np.full(len(ids), -1, dtype=np.int32))
                tokens += len(ids)
            if room is not None and tokens > room:  # enough to know it is cut
                break
        ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int32)
        words = np.concatenate(word_parts) if word_parts else np.zeros(0, np.int32)
        truncated = room is not None and len(ids) > room
        if truncated:
            ids, words = ids[:room], words[:room]
        return (np.concatenate([np.asarray(before, np.int32), ids, np.asarray(after, np.int32)]),
                np.concatenate([np.full(len(before), -1, np.int32), words, np.full(len(after), -1, np.int32)]),
                truncated)
