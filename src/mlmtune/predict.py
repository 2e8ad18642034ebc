"""FillMask: load a masked LM once, then fill the masks of strings with top-k tokens and scores.

Shared by `mlmtune predict`, `mlmtune serve`, the report and the Python API. `[MASK]` is accepted
for any model and rewritten to the model's own mask token (`<mask>` for RoBERTa).

A text longer than the model's positions is cut to its first `max_length` tokens, which is harmless
while every mask is among them; a mask beyond them would go unanswered, so it is an InputError
naming the limit (never fewer answers than masks written).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from .errors import InputError
from .modeling import masked_positions_head, load_masked_lm, load_tokenizer, max_positions

GENERIC_MASK = "[MASK]"


@dataclass
class Prediction:
    token: str
    score: float
    token_id: int

    def as_dict(self) -> dict:
        return {"token": self.token, "score": self.score}


class FillMask:
    """`FillMask("runs/demo")(["The [MASK] is happy."], top_k=5)` -> one list of predictions per mask.

    Thread-safe: one forward pass at a time (torch already uses every core for one).
    """

    def __init__(self, model: str, *, tokenizer: str | None = None, seed: int = 0, device: str | None = None):
        self.name = model
        self.tokenizer = load_tokenizer(model, tokenizer)
        loaded = load_masked_lm(model, seed=seed, tokenizer=self.tokenizer)
        self.grown_head = bool(loaded.new_parameters)  # predictions of an untrained head are noise
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = loaded.model.to(self.device).eval()
        self.head = masked_positions_head(self.model)  # the vocabulary projection at mask positions only
        # The model's position table, not only the tokenizer's limit: a checkpoint with 128 positions
        # may carry a tokenizer saying 512, and a longer input would crash inside the embeddings.
        self.max_length = min(max_positions(model, self.tokenizer), 4096)
        self.batch_size = 32
        self._lock = threading.Lock()

    def normalise(self, text: str) -> str:
        mask = self.tokenizer.mask_token
        return text.replace(GENERIC_MASK, mask) if mask != GENERIC_MASK else text

    def check(self, text: str) -> str:
        require_utf8(text)
        text = self.normalise(text)
        if self.tokenizer.mask_token not in text:
            raise InputError(f"no mask token in {text[:60]!r}: write [MASK] where a word should be filled in")
        return text

    @torch.no_grad()
    def __call__(self, texts: list[str], top_k: int = 5) -> list[list[list[Prediction]]]:
        """texts -> per text, per mask (in order), the top_k predictions."""
        vocab = len(self.tokenizer)
        if not 1 <= top_k <= vocab:
            raise InputError(f"top-k {top_k} is outside 1..{vocab} (the vocabulary size): "
                             f"pass a top-k between 1 and {vocab}, e.g. --top-k 5")
        texts = [self.check(t) for t in texts]
        if len(texts) > self.batch_size:
            return [r for i in range(0, len(texts), self.batch_size) for r in self(texts[i:i + self.batch_size], top_k)]
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
            if self.head is not None:
                hidden = self.model.base_model(input_ids=ids, attention_mask=attention)[0]  # (B, L, H)
                logits = self.head(hidden[at_mask.to(self.device)]).float()  # (masks, V), in text order
            else:
                logits = self.model(input_ids=ids, attention_mask=attention).logits[at_mask.to(self.device)].float()
        k = min(top_k, logits.shape[-1])  # a tokenizer may count added tokens the head lacks
        scores, top_ids = logits.softmax(-1).topk(k, dim=-1)  # (masks, k)
        out, row = [], 0
        for n in at_mask.sum(1).tolist():  # masks per text
            out.append([
                [Prediction(self.tokenizer.decode([t]).strip(), round(float(s), 6), int(t))
                 for s, t in zip(scores[r].tolist(), top_ids[r].tolist())]
                for r in range(row, row + n)
            ])
            row += n
        return out


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


def fill_mask(model: str, texts: str | list[str], top_k: int = 5) -> list[list[list[dict]]]:
    """Python API: per text (a single string gives just its list), per mask, top_k {"token", "score"} dicts."""
    single = isinstance(texts, str)
    result = [[[p.as_dict() for p in mask] for mask in text] for text in FillMask(model)([texts] if single else texts, top_k)]
    return result[0] if single else result
