"""Two probes beside perplexity, for `mlmtune evaluate` and the report.

Cloze: a TSV of sentences with one [MASK] and the accepted answers
(`The Chancellor will set out his plans in the [MASK] next month.<TAB>budget`, answers separated by
`|`, lines starting with # are comments). An item is a hit at k when any accepted answer, compared
case-insensitively after stripping, is among the k tokens the model ranks highest at the mask.

Linear probe: logistic regression on frozen features, as "Don't Stop Pretraining" (Gururangan et
al., 2020) measures whether adaptation helped the representations. The features of a document are
its last hidden states averaged over its tokens (weighted by the attention mask), for whole
held-out documents truncated to the model's positions; the figure is the 5-fold stratified
cross-validated accuracy of `LogisticRegression(max_iter=1000)` on standardized features.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..model.fill_mask import GENERIC_MASK
from ..model.objective import masked_logits

CLOZE_K = (1, 5)


FORMAT = "one item per line: a sentence with one [MASK], a tab, then the accepted answers separated by |"


# --- the cloze file ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ClozeItem:
    sentence: str  # with exactly one [MASK]
    answers: tuple[str, ...]  # stripped, non-empty
    line: int  # in its file, for messages


def read_cloze_file(path: str | Path) -> list[ClozeItem]:
    """Parse a cloze TSV; every problem is a DataError naming the file, the line and the fix."""
    path = Path(path)
    flag = f"--probes {path}"
    if not path.exists():
        raise DataError(f"{flag}: no such file; give a TSV file, {FORMAT} (see benchmarks/cloze_news.tsv)")
    if not path.is_file():
        raise DataError(f"{flag} is not a regular file: give a TSV file, {FORMAT}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{flag} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except OSError as exc:
        raise DataError(f"{flag} cannot be read ({exc.strerror}): check its permissions") from None
    return parse_cloze(text, str(path))


def parse_cloze(text: str, where: str = "the probes") -> list[ClozeItem]:
    items = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.startswith("#"):
            continue
        at = f"line {number} of {where}"
        if "\t" not in line:
            raise DataError(f"{at} has no tab: write the sentence, a tab, then the accepted answers "
                            "separated by | (e.g. 'The [MASK] rose.<TAB>price|cost')")
        sentence, answers_text = line.split("\t", 1)
        if "\t" in answers_text.rstrip("\t "):
            raise DataError(f"{at} has {line.count(chr(9))} tabs: put one tab between the sentence and the answers, "
                            "and separate answers with |")
        masks = sentence.count(GENERIC_MASK)
        if masks != 1:
            problem = "no [MASK]" if masks == 0 else f"{masks} [MASK]s"
            raise DataError(f"{at} has {problem} in its sentence {sentence.strip()[:60]!r}: a cloze item has "
                            "exactly one [MASK], where the answer goes")
        answers = tuple(a.strip() for a in answers_text.split("|") if a.strip())
        if not answers:
            raise DataError(f"{at} has no answer after its tab: give the accepted answers separated by |")
        items.append(ClozeItem(sentence.strip(), answers, number))
    if not items:
        raise DataError(f"{where} holds no cloze items (it is empty or only comments): add lines, {FORMAT}")
    return items


# --- cloze scoring -----------------------------------------------------------------------------

def normalise(token: str) -> str:
    return token.strip().casefold()


def cloze_hit(predicted: list[str], answers, k: int) -> bool:
    """Whether any accepted answer is among the first k predicted tokens (case-insensitive, stripped)."""
    accepted = {normalise(a) for a in answers}
    return any(normalise(p) in accepted for p in predicted[:k])


def cloze_accuracy(predictions: list[list[str]], items: list[ClozeItem], k: int) -> float:
    """The share of items hit at k, given each item's predicted tokens, best first."""
    if len(predictions) != len(items):
        raise ValueError(f"{len(predictions)} predictions for {len(items)} items")
    if not items:
        return math.nan
    return sum(cloze_hit(p, item.answers, k) for p, item in zip(predictions, items)) / len(items)


def answerable(items: list[ClozeItem], tokenizer) -> list[bool]:
    """Per item: whether one of its answers is a single token of the vocabulary (as decoded and
    compared for scoring). An item with none can never be hit by any model of this tokenizer."""
    vocabulary = {normalise(t) for t in tokenizer.batch_decode([[i] for i in range(len(tokenizer))])}
    return [any(normalise(a) in vocabulary for a in item.answers) for item in items]


def _model_texts(items: list[ClozeItem], tokenizer) -> list[str]:
    """The sentences with [MASK] written as the tokenizer's own mask token (<mask> for RoBERTa)."""
    mask = tokenizer.mask_token
    return [item.sentence.replace(GENERIC_MASK, mask) if mask != GENERIC_MASK else item.sentence for item in items]


def check_cloze_fits(items: list[ClozeItem], tokenizer, max_length: int) -> None:
    """Every item must hold exactly one mask token within the model's first `max_length` tokens."""
    enc = tokenizer(_model_texts(items, tokenizer), truncation=True, max_length=max_length)["input_ids"]
    for item, ids in zip(items, enc):
        n = ids.count(tokenizer.mask_token_id)
        if n != 1:
            why = (f"its [MASK] lies beyond the model's {max_length} tokens: shorten the sentence" if n == 0
                   else f"it holds {n} mask tokens: keep only the one [MASK]")
            raise DataError(f"the cloze item on line {item.line} cannot be scored ({why})")


def cloze_predictions(model, head, tokenizer, items: list[ClozeItem], *, device, max_length: int, top_k: int = 5,
                      batch_size: int = 32, autocast=contextlib.nullcontext) -> list[list[str]]:
    """The top_k tokens at each item's mask, best first: batched forward passes, the vocabulary
    projection at the mask positions only (`head`, or the full logits when the family has none)."""
    import torch

    check_cloze_fits(items, tokenizer, max_length)
    texts = _model_texts(items, tokenizer)
    out: list[list[str]] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(texts), batch_size):
            part = texts[start:start + batch_size]
            enc = tokenizer(part, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
            at_mask = enc["input_ids"] == tokenizer.mask_token_id  # one per row (checked above)
            ids, attention = enc["input_ids"].to(device), enc["attention_mask"].to(device)
            picked = at_mask.to(device)
            with torch.no_grad(), autocast():
                logits = masked_logits(model, head, ids, attention, picked)
            top = logits.float().topk(min(top_k, logits.shape[-1]), dim=-1).indices.tolist()  # one row per item
            out.extend([tokenizer.decode([t]) for t in row] for row in top)
    finally:
        model.train(was_training)
    return out
