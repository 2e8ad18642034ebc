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

import threading
from dataclasses import dataclass

import torch

from ..errors import InputError
from .load import load_masked_lm, max_positions
from .objective import masked_logits, masked_positions_head
from .tokenizer import load_tokenizer
from .warmstart import set_unigram_bias

GENERIC_MASK = "[MASK]"


@dataclass
class Prediction:
    token: str  # the token as a reader sees it: decoded and stripped ("happy", "##s")
    score: float
    token_id: int
    token_str: str = ""  # the tokenizer's own decoding, as the pipeline gives it (" happy" for RoBERTa)
    sequence: str = ""  # the text with this token in place of its mask

    def as_dict(self) -> dict:
        """The fill-mask pipeline's dict."""
        return {"score": self.score, "token": self.token_id, "token_str": self.token_str, "sequence": self.sequence}


class FillMask:
    """`FillMask("runs/demo")("The [MASK] is happy.", top_k=5)` -> what `pipeline("fill-mask")` returns;
    `.predict([texts], top_k)` -> per text, per mask, the top_k Predictions.

    Thread-safe: one forward pass at a time (torch already uses every core for one).
    """

    def __init__(self, model: str, *, tokenizer: str | None = None, seed: int = 0, device: str | None = None):
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
            raise InputError(f"no mask token in {text[:60]!r}: write [MASK] where a word should be filled in")
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
                    [Prediction(word[t].strip(), float(s), t, word[t], seq)
                     for s, t, seq in zip(scores[r], top_ids[r], filled[r - row])]
                    for r in range(row, row + n)
                ])
                row += n
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
        filled = []
        for position, candidates in zip(where, top_ids):
            for t in candidates:
                filled.append(ids[:position] + [t] + ids[position + 1:])
        decoded = self.tokenizer.batch_decode(filled, skip_special_tokens=len(top_ids) == 1)
        k = len(top_ids[0]) if top_ids else 0
        return [decoded[m * k:(m + 1) * k] for m in range(len(top_ids))]


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
