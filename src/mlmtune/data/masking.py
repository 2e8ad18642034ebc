"""Choosing and corrupting the tokens a masked LM learns to predict.

A mask is a pure function of (seed, stream, example index, position): no random state is carried
between batches. That one decision buys three things: the evaluation masks are identical in every
call and every run (stream EVAL_STREAM), a resumed run draws exactly the masks it would have drawn,
and 2 processes x batch 8 see the same masks as 1 process x batch 16. Training uses stream = epoch,
so each epoch sees fresh masks (dynamic masking, as transformers' collator does).

Per chosen token (or, with whole-word masking, per chosen word): with `mask_replace_prob` it
becomes the mask token, with `random_replace_prob` a random non-special token, otherwise it is
kept. Labels are the original ids at chosen positions and -100 elsewhere. Special and pad tokens
are never chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError

IGNORE_INDEX = -100
EVAL_STREAM = 0x7FFF_FFFF  # training streams are epoch numbers, far below this

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_PURPOSE_SELECT, _PURPOSE_ACTION, _PURPOSE_TOKEN = 1, 2, 3


def _splitmix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 whose outputs pass as independent uniforms."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def uniforms(seed: int, stream: int, purpose: int, sample_ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Floats in [0, 1) for every (sample, position) pair, fixed by the five inputs alone. (B, L)."""
    with np.errstate(over="ignore"):
        key = np.uint64(seed & 0xFFFF_FFFF_FFFF_FFFF)
        for part in (stream, purpose):
            key = _splitmix(np.asarray(key ^ (np.uint64(part) * _GOLDEN) + _GOLDEN, dtype=np.uint64))
        rows = _splitmix(key + np.asarray(sample_ids, dtype=np.uint64)[:, None] * _GOLDEN)
        bits = _splitmix(rows ^ (np.asarray(positions, dtype=np.uint64) * _M2 + _GOLDEN))
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


@dataclass(frozen=True)
class MaskingSpec:
    probability: float = 0.15
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    whole_word: bool = False


def check_word_boundaries(tokenizer) -> None:
    """Whole-word masking reads the tokenizer's word ids, which its pre-tokenizer makes (BERT's splits at
    spaces and punctuation, byte-level BPE's and SentencePiece's at spaces). A tokenizer.json without one
    makes every text a single word, and whole-word masking would mask a block whole or not at all."""
    words = {w for w in tokenizer("one two three", add_special_tokens=False).word_ids() if w is not None}
    if len(words) < 3:
        raise ConfigError(
            f"--whole-word-mask needs word boundaries, and the tokenizer of {tokenizer.name_or_path!r} has none "
            "(no pre-tokenizer in its tokenizer.json splits 'one two three' into words): drop --whole-word-mask"
        )


class Masker:
    """Masks padded numpy batches for one tokenizer."""

    def __init__(self, tokenizer, spec: MaskingSpec):
        if tokenizer.mask_token_id is None:
            raise DataError(f"tokenizer {tokenizer.name_or_path!r} has no mask token: use a masked-LM tokenizer")
        if spec.whole_word and not getattr(tokenizer, "is_fast", False):
            raise ConfigError(
                f"--whole-word-mask needs word ids, and the tokenizer of {tokenizer.name_or_path!r} is not a fast "
                "tokenizer, which alone gives them: drop --whole-word-mask or use a model with a tokenizer.json"
            )
        if spec.whole_word:
            check_word_boundaries(tokenizer)
        self.spec = spec
        self.mask_id = int(tokenizer.mask_token_id)
        self.special_ids = np.array(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)
        vocab = np.arange(len(tokenizer), dtype=np.int64)
        self.random_candidates = vocab[~np.isin(vocab, self.special_ids)]  # never draw [CLS], [PAD], ...

    def maskable_share(self, tokens: np.ndarray, sample: int = 1 << 20) -> float:
        """The share of `tokens` that may be chosen (not special), from its first `sample` tokens."""
        head = np.asarray(tokens[:sample])
        return float(np.isin(head, self.special_ids, invert=True).mean()) if len(head) else 0.0

    def special_mask(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return np.isin(input_ids, self.special_ids) | ~attention_mask.astype(bool)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, sample_ids: np.ndarray,
                 *, seed: int, stream: int, word_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B, L) ids -> (corrupted ids, labels). Does not modify its inputs."""
        spec = self.spec
        special = self.special_mask(input_ids, attention_mask)
        positions = np.arange(input_ids.shape[1])
        # Where a token's decision is drawn: its own position, or with whole words the position of
        # the word's first piece, so every piece of the word shares one draw.
        anchor = np.broadcast_to(positions, input_ids.shape)
        if spec.whole_word:
            if word_ids is None:
                raise DataError("--whole-word-mask needs word ids, which only fast tokenizers give")
            prev = np.concatenate([np.full((len(word_ids), 1), -2, word_ids.dtype), word_ids[:, :-1]], axis=1)
            prev_special = np.concatenate([np.ones((len(special), 1), bool), special[:, :-1]], axis=1)
            starts = (word_ids != prev) | special | prev_special
            anchor = np.maximum.accumulate(np.where(starts, positions, 0), axis=1)

        def draw(purpose: int) -> np.ndarray:
            u = uniforms(seed, stream, purpose, sample_ids, positions)
            return np.take_along_axis(u, anchor, axis=1) if spec.whole_word else u

        chosen = (draw(_PURPOSE_SELECT) < spec.probability) & ~special
        action = draw(_PURPOSE_ACTION)
        to_mask = chosen & (action < spec.mask_replace_prob)
        to_random = chosen & ~to_mask & (action < spec.mask_replace_prob + spec.random_replace_prob)

        labels = np.where(chosen, input_ids, IGNORE_INDEX)
        corrupted = np.where(to_mask, self.mask_id, input_ids)
        if to_random.any():
            pick = uniforms(seed, stream, _PURPOSE_TOKEN, sample_ids, positions)[to_random]
            idx = np.minimum((pick * len(self.random_candidates)).astype(np.int64), len(self.random_candidates) - 1)
            corrupted[to_random] = self.random_candidates[idx]
        return corrupted, labels
