"""FillMask: load a masked LM once, then fill the masks of strings with top-k tokens and scores.

Shared by `mlmtune predict`, `mlmtune serve`, the report and the Python API. `[MASK]` is accepted
for any model and rewritten to the model's own mask token (`<mask>` for RoBERTa).

Answers come in the shape of transformers' fill-mask pipeline: per prediction `{"score", "token" (the
id), "token_str", "sequence"}`; one text with one mask gives a list of them, with several masks one
list per mask, and a list of texts one such answer per text (a list of one text: just its answer).
`sequence` is the text with that one mask filled, decoded by the tokenizer; where the pipeline writes
`[CLS] ... [SEP]` around the sequence of a text with several masks, this leaves them out (the other
masks stay, as there).

A text longer than the model's positions is cut to its first `max_length` tokens, which is harmless
while every mask is among them; a mask beyond them would go unanswered, so it is an InputError
naming the limit (never fewer answers than masks written).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import torch

from ..errors import InputError, ModelError
from .load import load_masked_lm, max_positions
from .objective import masked_logits, masked_positions_head
from .tokenizer import load_tokenizer
from .warmstart import set_unigram_bias

GENERIC_MASK = "[MASK]"
# The work of one step of FillMask.predict_steps, of the order of 0.1 s for minilm on 2 cores: a forward
# pass over a batch of at most ~1,000 padded tokens (two long texts, or sixteen sentences), or ~20,000
# tokens of decoding (~0.2 M tokens/s). Batches of one text were 3-4x slower per text than batches of 16
# on the shared machine (OpenMP barriers under contention), so short texts still share a batch.
STEP_FORWARD_TOKENS = 1024
STEP_DECODE_TOKENS = 20_000


@dataclass
class Prediction:
    """One filler of a mask, its fields named as the fill-mask pipeline's dict keys: `token` is the id."""

    score: float
    token: int  # the token id, as the pipeline's "token"
    token_str: str  # the tokenizer's own decoding, as the pipeline gives it (" happy" for RoBERTa, "##s")
    sequence: str = ""  # the text with this token in place of its mask

    @property
    def word(self) -> str:
        """The token as a reader sees it: decoded and stripped ("happy", "##s")."""
        return self.token_str.strip()

    @property
    def token_id(self) -> int:  # the id's name before `token` became the id, as in the pipeline
        return self.token

    def as_dict(self) -> dict:
        """The fill-mask pipeline's dict."""
        return {"score": self.score, "token": self.token, "token_str": self.token_str, "sequence": self.sequence}

    def __repr__(self) -> str:
        return f"Prediction({self.word!r}, score={self.score:.4f}, token={self.token})"


def model_reference(value, what: str) -> str:
    """A model or tokenizer named as a folder or Hub name (a string or a path); anything else (None, a
    number, bytes) is one ModelError here rather than a bare TypeError from deep inside the loaders."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)  # a path of bytes stays bytes, and is refused below
    if not isinstance(value, str) or not value.strip():
        flag, example = ("--model", "FillMask('runs/demo')") if what == "model" else \
            ("--tokenizer", "FillMask('runs/demo', tokenizer='bert-base-uncased')")
        raise ModelError(f"the {what} must be a folder or a Hugging Face name, got {value!r}: name one, e.g. "
                         f"{flag} runs/demo, or {example} in Python")
    return value


class FillMask:
    """`FillMask("runs/demo")("The [MASK] is happy.", top_k=5)` -> what `pipeline("fill-mask")` returns;
    `.predict([texts], top_k)` -> per text, per mask, the top_k Predictions.

    Thread-safe: one forward pass at a time (torch already uses every core for one).
    """

    def __init__(self, model: str | os.PathLike, *, tokenizer: str | os.PathLike | None = None, seed: int = 0,
                 device: str | None = None):
        model = model_reference(model, "model")
        tokenizer = None if tokenizer is None else model_reference(tokenizer, "tokenizer")
        self.name = model
        self.tokenizer = load_tokenizer(model, tokenizer)
        loaded = load_masked_lm(model, seed=seed, tokenizer=self.tokenizer)
        self.grown_head = bool(loaded.new_parameters)  # the checkpoint has no MLM head: one was grown from `seed`
        # How a grown head starts: "random" (its predictions are noise) until warm_start() gives it the
        # unigram bias that training starts from ("warm"); None for a model with its own head.
        self.head_start: str | None = "random" if self.grown_head else None
        self.head_text: str | None = None  # the text whose unigram counts warm-started the head
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = loaded.model.to(self.device).eval()
        self.head = masked_positions_head(self.model)  # the vocabulary projection at mask positions only
        # The model's position table, not only the tokenizer's limit: a checkpoint with 128 positions
        # may carry a tokenizer saying 512, and a longer input would crash inside the embeddings.
        self.max_length = min(max_positions(model, self.tokenizer), 4096)
        self.batch_size = 32
        self._lock = threading.Lock()
        self._word_start: str | None = None  # the vocabulary's word-start mark ("Ġ", "▁"; "" for WordPiece)

    def __repr__(self) -> str:
        head = "a grown, untrained MLM head" if self.grown_head else "its own MLM head"
        return (f"FillMask({self.name!r}: {len(self.tokenizer):,} tokens, mask {self.tokenizer.mask_token!r}, "
                f"up to {self.max_length:,} tokens a text, {head}, on {self.device})")

    def warm_start(self, counts, text: str) -> None:
        """A grown head's output bias := the log unigram frequency of `counts` (token counts of `text`),
        exactly as training's warm start sets it (model/warmstart.py). A model's own head is left alone."""
        if self.grown_head and set_unigram_bias(self.model, counts, list(self.tokenizer.all_special_ids)):
            self.head_start, self.head_text = "warm", text

    @property
    def label(self) -> str:
        """The model's name as every view shows it, with how its head starts when it grew one:
        "minilm, warm-started head" or "minilm, untrained head"."""
        return self.name + {"warm": ", warm-started head", "random": ", untrained head"}.get(self.head_start or "", "")

    def normalise(self, text: str) -> str:
        mask = self.tokenizer.mask_token
        return text.replace(GENERIC_MASK, mask) if mask != GENERIC_MASK else text

    def check(self, text: str) -> str:
        require_utf8(text)
        text = self.normalise(text)
        if self.tokenizer.mask_token not in text:
            raise no_mask_error(text)
        return text

    def __call__(self, inputs: str | list[str], top_k: int = 5, targets: str | list[str] | None = None) -> list:
        """A text or a list of texts -> the fill-mask pipeline's answer (see the module's docstring).
        `targets` as the pipeline's: only these words are scored (their probabilities over the whole vocabulary)."""
        if isinstance(inputs, str):
            return pipeline_shape(self.predict([inputs], top_k, targets=targets)[0])
        if not isinstance(inputs, (list, tuple)) or not all(isinstance(t, str) for t in inputs):
            raise InputError(f"fill-mask takes a text or a list of texts, got {type(inputs).__name__}: "
                             "pass e.g. 'The [MASK] is happy.'")
        answers = [pipeline_shape(masks) for masks in self.predict(list(inputs), top_k, targets=targets)]
        return answers[0] if len(answers) == 1 else answers  # as the pipeline: a list of one is that one

    @torch.no_grad()
    def predict(self, texts: list[str], top_k: int = 5, *, sequences: bool = True,
                targets: str | list[str] | None = None) -> list[list[list[Prediction]]]:
        """texts -> per text, per mask (in order), the top_k predictions. `sequences=False` leaves each
        Prediction's sequence empty: one decode of the whole text per prediction saved (8 masks x top 50
        of a 2,000-character text: ~80 ms) where only the words are shown. `targets`: only these words
        compete (at most top_k of them are given), as the pipeline's `targets`."""
        if isinstance(texts, str):  # a string is not a list of one-character texts
            texts = [texts]
        if not texts:
            return []
        vocab = len(self.tokenizer)
        if isinstance(top_k, bool) or not isinstance(top_k, int):  # True is an int to Python, 2.0 is not to torch
            raise InputError(f"top-k must be a whole number, got {top_k!r}: pass e.g. top_k=5")
        if not 1 <= top_k <= vocab:
            raise InputError(f"top-k {top_k} is outside 1..{vocab} (the vocabulary size): "
                             f"pass a top-k between 1 and {vocab}, e.g. --top-k 5")
        texts = [self.check(t) for t in texts]
        if isinstance(targets, str):
            targets = [targets]
        if targets is not None and (not isinstance(targets, (list, tuple)) or not targets
                                    or not all(isinstance(t, str) for t in targets)):
            raise InputError(f"targets must be a word or a non-empty list of words, got {targets!r}: "
                             "pass e.g. targets=['happy', 'sad']")
        for target in targets or ():
            require_utf8(target, "the target")
        if len(texts) > self.batch_size:
            return [r for i in range(0, len(texts), self.batch_size)
                    for r in self.predict(texts[i:i + self.batch_size], top_k, sequences=sequences, targets=targets)]
        with self._lock:  # one forward at a time (torch uses every core for one); the tokenizer is not reentrant
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length)
            mask_id = self.tokenizer.mask_token_id
            at_mask = enc["input_ids"] == mask_id  # (B, L)
            # Truncation drops the masks past max_length silently: count them in the whole text.
            whole = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
            for i, text in enumerate(texts):
                written = whole[i].count(mask_id)
                lost = written - int(at_mask[i].sum())
                if lost:
                    which = "the mask" if written == 1 else f"{lost} of the {written} masks"
                    length = len(whole[i]) + self.tokenizer.num_special_tokens_to_add()
                    raise InputError(f"{which} in {text[:60]!r} {'lies' if lost == 1 else 'lie'} beyond the model's "
                                     f"{self.max_length} tokens (the text has {length}): shorten the text so that "
                                     f"every mask is within its first {self.max_length} tokens, or split it")
            ids, attention = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
            logits = masked_logits(self.model, self.head, ids, attention, at_mask.to(self.device)).float()  # (masks, V)
            probs = logits.softmax(-1)  # (masks, V): targets keep their share of the whole vocabulary, as the pipeline's
            chosen = None
            if targets is not None:
                chosen = torch.tensor(self._target_ids(targets, probs.shape[-1]), device=probs.device)
                probs = probs[:, chosen]  # (masks, T)
            k = min(top_k, probs.shape[-1])  # a tokenizer may count added tokens the head lacks
            scores, top_ids = probs.topk(k, dim=-1)  # (masks, k)
            if chosen is not None:
                top_ids = chosen[top_ids]
            scores, top_ids = scores.tolist(), top_ids.tolist()
            distinct = sorted({t for row in top_ids for t in row})
            word = dict(zip(distinct, self.tokenizer.batch_decode([[t] for t in distinct])))  # the pipeline's token_str
            out, row = [], 0
            for i, n in enumerate(at_mask.sum(1).tolist()):  # masks per text
                filled = self._sequences(whole[i], top_ids[row:row + n]) if sequences else [[""] * k] * n
                out.append([
                    [Prediction(float(s), t, word[t], seq)
                     for s, t, seq in zip(scores[r], top_ids[r], filled[r - row])]
                    for r in range(row, row + n)
                ])
                row += n
        return out

    def predict_steps(self, texts: list[str], top_k: int = 5, *, targets: str | list[str] | None = None,
                      forward_tokens: int = STEP_FORWARD_TOKENS, decode_tokens: int = STEP_DECODE_TOKENS):
        """`predict(texts, top_k, targets=targets)` as a generator of bounded steps, for a caller that shares
        the model between requests (`mlmtune serve` lets a small request in between two steps of a large
        one): each `next()` runs the forward pass of a batch of at most `forward_tokens` padded tokens (or
        of one longer text), or decodes about `decode_tokens` tokens of the answer's sequences. The
        generator returns predict's answer (StopIteration.value); a text predict refuses is refused at
        the first step, before any forward pass."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        checked = [self.check(t) for t in texts]
        with self._lock:  # the tokenizer is not reentrant
            whole = self.tokenizer(checked, add_special_tokens=False, verbose=False)["input_ids"] if texts else []
        extra = self.tokenizer.num_special_tokens_to_add()
        out: list[list[list[Prediction]]] = []
        for group in _batches([min(len(ids) + extra, self.max_length) for ids in whole], forward_tokens):
            out += self.predict([texts[i] for i in group], top_k, sequences=False, targets=targets)
            yield
        decoded = 0
        for ids, masks in zip(whole, out):
            where = [j for j, t in enumerate(ids) if t == self.tokenizer.mask_token_id][:len(masks)]
            todo = [(where[m], p) for m, mask in enumerate(masks) for p in mask]
            per_step = max(1, decode_tokens // max(1, len(ids)))
            for start in range(0, len(todo), per_step):
                part = todo[start:start + per_step]
                with self._lock:
                    filled = self._decode(ids, [(position, p.token_id) for position, p in part], several=len(masks) > 1)
                for (_, p), sequence in zip(part, filled):
                    p.sequence = sequence
                decoded += len(part) * len(ids)
                if decoded >= decode_tokens:
                    decoded = 0
                    yield
        return out

    def continues_word(self, token_id: int) -> bool:
        """Whether a token continues the word before it rather than starting one: WordPiece's "##s"; in a
        vocabulary that marks word starts (byte-level BPE's "Ġhappy", SentencePiece's "▁happy"), a token that
        begins with a letter or digit and lacks the mark ("ness"). token_str alone cannot tell a SentencePiece
        piece from a word: its decoding drops the mark."""
        if self._word_start is None:  # the fast tokenizer's decoder names its scheme: ByteLevel, Metaspace, WordPiece
            decoder = repr(getattr(getattr(self.tokenizer, "backend_tokenizer", None), "decoder", None))
            self._word_start = "Ġ" if "ByteLevel" in decoder else "▁" if "Metaspace" in decoder else ""
        token = self.tokenizer.convert_ids_to_tokens(token_id)
        if token is None or token_id in self.tokenizer.all_special_ids:
            return False
        if token.startswith("##") and len(token) > 2:
            return True
        return bool(self._word_start) and token[:1].isalnum() and not token.startswith(self._word_start)

    def _target_ids(self, targets: list[str], head_size: int) -> list[int]:
        """The pipeline's resolution of targets: a word of the vocabulary is its id, any other word its first
        token; a word that makes no token is left out, and none left is an InputError."""
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in targets:
            id_ = vocab.get(target)
            if id_ is None:
                pieces = self.tokenizer(target, add_special_tokens=False)["input_ids"]
                id_ = pieces[0] if pieces else None
            if id_ is not None and id_ < head_size and id_ not in ids:
                ids.append(id_)
        if not ids:
            raise InputError(f"none of the targets {targets[:5]!r} is a token of {self.name}: "
                             "pass words such as targets=['happy', 'sad']")
        return ids

    def _sequences(self, ids: list[int], top_ids: list[list[int]]) -> list[list[str]]:
        """The text (its ids without special tokens) with mask m filled by each of top_ids[m], decoded
        as the pipeline decodes it: special tokens dropped for one mask, kept (the other masks) for several."""
        where = [j for j, t in enumerate(ids) if t == self.tokenizer.mask_token_id][:len(top_ids)]
        decoded = self._decode(ids, [(position, t) for position, candidates in zip(where, top_ids) for t in candidates],
                               several=len(top_ids) > 1)
        k = len(top_ids[0]) if top_ids else 0
        return [decoded[m * k:(m + 1) * k] for m in range(len(top_ids))]

    def _decode(self, ids: list[int], fills: list[tuple[int, int]], *, several: bool) -> list[str]:
        """The text `ids` with the token at each (position, token) of `fills` put in, each decoded."""
        return self.tokenizer.batch_decode([ids[:position] + [t] + ids[position + 1:] for position, t in fills],
                                           skip_special_tokens=not several)


def _batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Consecutive indices of `lengths` in batches whose padded size (count x longest) is within `budget`;
    a longer one alone."""
    batches: list[list[int]] = []
    longest = 0
    for i, n in enumerate(lengths):
        if batches and (len(batches[-1]) + 1) * max(longest, n) <= budget:
            batches[-1].append(i)
            longest = max(longest, n)
        else:
            batches.append([i])
            longest = n
    return batches


def no_mask_error(text: str) -> InputError:
    return InputError(f"no mask token in {text[:60]!r}: write [MASK] where a word should be filled in")


def require_utf8(text: str, what: str = "the text") -> None:
    """A str that cannot be encoded as UTF-8 (undecodable bytes smuggled in by surrogateescape, or a
    lone surrogate) -> an InputError naming the first bad character, instead of the tokenizer's TypeError."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        bad = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"lone surrogate U+{code:04X}"
        raise InputError(f"{what} {text[:40]!r} is not valid UTF-8 ({bad} at character {exc.start + 1}): "
                         "pass UTF-8 text, e.g. convert a Latin-1 file with iconv -f latin1 -t utf-8") from None


def pipeline_shape(masks: list[list[Prediction]]) -> list:
    """One text's predictions -> the pipeline's answer: the list of dicts for one mask, a list per mask for several."""
    answer = [[p.as_dict() for p in mask] for mask in masks]
    return answer[0] if len(answer) == 1 else answer


def fill_mask(model: str, texts: str | list[str], top_k: int = 5, targets: str | list[str] | None = None) -> list:
    """Python API: what `pipeline("fill-mask", model=model)(texts, top_k=top_k, targets=targets)` returns."""
    return FillMask(model)(texts, top_k, targets)
