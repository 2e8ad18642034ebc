"""A measure that does not depend on the vocabulary: masked words, chosen in word space.

Perplexity per token depends on the tokenization: with `ministers` one token instead of three, a run
predicts other (fewer, harder) tokens, so its perplexity cannot be ranked against one without it.
Here the masks are chosen on the text, not on tokens:

- Words are runs of letters and digits (`[^\\W_]+`) in the held-out documents, cut into windows of
  WINDOW_WORDS words; a seeded draw per (seed, document, window) picks MASK_SHARE of each window's
  words (at least one). The same words are masked for every tokenizer.
- Each tokenizer cuts the window; all the pieces of a masked word become the mask token. A word is
  kept only when, for every tokenizer compared, its pieces cover exactly its characters and none is
  unknown, and a window only when it fits every model (so all see the same words).
- A word's NLL is the sum of its pieces' NLLs (every piece masked at once, as whole-word masking
  trains). Reported: **bits per character** of the masked words (total NLL / ln 2 / their
  characters) and **masked-word accuracy** (every piece predicted exactly).

One bias remains and is stated: the model sees how many pieces a masked word has (as many masks),
which tells a tokenizer that cuts a word more a little about it.
"""

from __future__ import annotations

import itertools
import math
import re
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..model.objective import masked_logits, masked_positions_head

WORD = re.compile(r"[^\W_]+")
WINDOW_WORDS = 64
MASK_SHARE = 0.15
MAX_WINDOWS = 256  # ~16k words, ~2,400 masked: a second or two of forward passes for minilm


def max_windows(eval_size: int | None) -> int:
    """How many windows the measure scores: at most --eval-size (a window of 64 words is about a block
    of text), and never more than MAX_WINDOWS. Training and `evaluate` both take it from here, so the
    two give the same figures for one config."""
    return MAX_WINDOWS if eval_size is None else max(1, min(MAX_WINDOWS, int(eval_size)))


@dataclass
class Window:
    text: str
    words: list[tuple[int, int]]  # character spans of the masked words in `text`


@dataclass
class WordResult:
    bits_per_char: float
    word_accuracy: float
    masked_words: int
    masked_chars: int

    def as_dict(self) -> dict:
        return asdict(self)

    def record(self) -> dict:
        """The fields a metrics.jsonl eval record carries."""
        return {"word_bits_per_char": self.bits_per_char, "word_accuracy": self.word_accuracy,
                "masked_words": self.masked_words}


def windows(texts: list[str], *, seed: int, max_windows: int = MAX_WINDOWS, words_per_window: int = WINDOW_WORDS,
            share: float = MASK_SHARE) -> list[Window]:
    """Windows of whole words of `texts` with their masked words: a pure function of the text and seed.
    The windows are counted first and only the max_windows drawn are made, so a long document costs
    a pass over its words, not a copy of it in windows."""
    total = sum(1 for text in texts for part in _word_groups(text, words_per_window) if len(part) >= 8)
    keep = None
    if total > max_windows:
        keep = set(np.random.default_rng([seed, 8]).choice(total, size=max_windows, replace=False).tolist())
    out: list[Window] = []
    index = 0
    for d, text in enumerate(texts):
        for w, part in enumerate(_word_groups(text, words_per_window)):
            if len(part) < 8:  # a scrap at a document's end: too little context
                continue
            index += 1
            if keep is not None and index - 1 not in keep:
                continue
            begin, end = part[0][0], part[-1][1]
            rng = np.random.default_rng([seed, 7, d, w])
            picked = np.flatnonzero(rng.random(len(part)) < share)
            if len(picked) == 0:
                picked = np.array([int(rng.integers(len(part)))])
            out.append(Window(text[begin:end], [(part[i][0] - begin, part[i][1] - begin) for i in picked]))
    return out


def _word_groups(text: str, size: int):
    """The character spans of `text`'s words, `size` at a time (lazily: a 100 MB document's spans as one
    list would take GBs)."""
    found = WORD.finditer(text)
    while part := [m.span() for m in itertools.islice(found, size)]:
        yield part


@dataclass
class Encoded:
    """One tokenizer's view of the windows: token ids and, per masked word, its token positions."""

    input_ids: list[list[int]]
    words: list[list[list[int]]]  # window -> masked word -> positions of its pieces (None: not aligned)
    chars: list[list[int]]


def encode(tokenizer, wins: list[Window], max_length: int) -> Encoded:
    if not wins:  # nothing held out (a corpus of fewer than 10 documents): a fast tokenizer fails on []
        return Encoded([], [], [])
    enc = tokenizer([w.text for w in wins], return_offsets_mapping=True, return_attention_mask=False,
                    return_token_type_ids=False)
    unk = tokenizer.unk_token_id
    ids_all, words_all, chars_all = [], [], []
    for i, win in enumerate(wins):
        ids, offsets = enc["input_ids"][i], enc["offset_mapping"][i]
        fits = len(ids) <= max_length
        words, chars = [], []
        for start, end in win.words:
            pos = [t for t, (a, b) in enumerate(offsets) if b > a and a < end and b > start]  # special: (0, 0)
            ok = (fits and pos and offsets[pos[0]][0] == start and offsets[pos[-1]][1] == end
                  and all(a >= start and b <= end for a, b in (offsets[t] for t in pos))
                  and pos == list(range(pos[0], pos[-1] + 1)) and unk not in [ids[t] for t in pos])
            words.append(pos if ok else None)
            chars.append(end - start)
        ids_all.append(ids)
        words_all.append(words)
        chars_all.append(chars)
    return Encoded(ids_all, words_all, chars_all)


def shared(encodings: list[Encoded]) -> list[Encoded]:
    """Keep a masked word only where every tokenizer aligns it; the same words for all."""
    out = [Encoded(e.input_ids, [list(ws) for ws in e.words], e.chars) for e in encodings]
    for i in range(len(out[0].words)):
        for j in range(len(out[0].words[i])):
            if any(e.words[i][j] is None for e in out):
                for e in out:
                    e.words[i][j] = None
    return out


@dataclass
class WordSet:
    """A ready evaluation set for one model: batches of (input_ids, attention_mask, labels, word index)."""

    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
    chars: np.ndarray  # characters of each kept masked word
    n_words: int


def word_set(enc: Encoded, tokenizer, batch_size: int = 32) -> WordSet:
    mask_id, pad_id = tokenizer.mask_token_id, tokenizer.pad_token_id or 0
    rows, chars = [], []
    for ids, words, lengths in zip(enc.input_ids, enc.words, enc.chars):
        if all(pos is None for pos in words):  # nothing to score (or too long for a model): not run at all
            continue
        ids = list(ids)
        labels = [-100] * len(ids)
        word_of = [-1] * len(ids)
        for pos, n_chars in zip(words, lengths):
            if pos is None:
                continue
            for t in pos:
                labels[t], ids[t], word_of[t] = ids[t], mask_id, len(chars)
            chars.append(n_chars)
        rows.append((ids, labels, word_of))
    batches = []
    for b in range(0, len(rows), batch_size):
        part = rows[b:b + batch_size]
        width = max(len(r[0]) for r in part)
        ids = torch.full((len(part), width), pad_id, dtype=torch.long)
        att = torch.zeros((len(part), width), dtype=torch.long)
        lab = torch.full((len(part), width), -100, dtype=torch.long)
        wid = torch.full((len(part), width), -1, dtype=torch.long)
        for r, (i, l, w) in enumerate(part):
            ids[r, :len(i)], att[r, :len(i)] = torch.tensor(i), 1
            lab[r, :len(l)], wid[r, :len(w)] = torch.tensor(l), torch.tensor(w)
        batches.append((ids, att, lab, wid))
    return WordSet(batches, np.asarray(chars, dtype=np.int64), len(chars))


def prepare(texts: list[str], tokenizers: list, *, seed: int, max_length: int, max_windows: int = MAX_WINDOWS) -> list[WordSet]:
    """One WordSet per tokenizer, over the same masked words."""
    wins = windows(texts, seed=seed, max_windows=max_windows)
    encodings = shared([encode(t, wins, max_length) for t in tokenizers])
    return [word_set(e, t) for e, t in zip(encodings, tokenizers)]


@torch.no_grad()
def score(model: torch.nn.Module, words: WordSet, device, autocast=None) -> WordResult:
    """Bits per character and accuracy of the masked words (every process computes it whole)."""

    if words.n_words == 0:
        return WordResult(float("nan"), float("nan"), 0, 0)
    head = masked_positions_head(model)
    was_training = model.training
    model.eval()
    nll = torch.zeros(words.n_words, dtype=torch.float64)
    wrong = torch.zeros(words.n_words, dtype=torch.long)
    try:
        for ids, att, lab, wid in words.batches:
            ids, att = ids.to(device), att.to(device)
            picked = lab != -100
            with autocast() if autocast is not None else nullcontext():
                logits = masked_logits(model, head, ids, att, picked.to(device))
            targets = lab[picked].to(device)
            token_nll = F.cross_entropy(logits.float(), targets, reduction="none").double().cpu()
            token_wrong = (logits.argmax(-1) != targets).long().cpu()
            index = wid[picked]
            nll.index_add_(0, index, token_nll)
            wrong.index_add_(0, index, token_wrong)
    finally:
        model.train(was_training)
    chars = int(words.chars.sum())
    total = float(nll.sum())
    return WordResult(total / math.log(2) / chars, float((wrong == 0).double().mean()), words.n_words, chars)
