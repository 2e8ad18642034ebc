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
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

GENERIC_MASK = "[MASK]"
CLOZE_K = (1, 5)
PROBE_FOLDS = 5
PROBE_MAX_DOCUMENTS = 1000  # held-out documents the linear probe uses at most, drawn with --seed
PROBE_PURPOSE = 3  # the seed stream of that draw (chunking uses 0 for the split, 1 and 2 for sampling)
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
                if head is not None:
                    hidden = model.base_model(input_ids=ids, attention_mask=attention)[0]
                    logits = head(hidden[picked])
                else:
                    logits = model(input_ids=ids, attention_mask=attention).logits[picked]
            top = logits.float().topk(min(top_k, logits.shape[-1]), dim=-1).indices.tolist()  # one row per item
            out.extend([tokenizer.decode([t]) for t in row] for row in top)
    finally:
        model.train(was_training)
    return out


def autocast_for(precision: str, device):
    """A context factory running the matmuls in the precision `precision` (--precision) resolves to,
    as Accelerate does for `mlmtune evaluate`: bf16 or fp16 autocast, or nothing for fp32."""
    import torch

    from .modeling import resolve_precision

    mixed = resolve_precision(precision)
    if mixed == "no":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if mixed == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=torch.device(device).type, dtype=dtype)


# --- the linear probe --------------------------------------------------------------------------

def heldout_documents(documents, *, eval_fraction: float, seed: int) -> tuple[list[str], list]:
    """The evaluation documents and their classes: the whole documents `chunking.prepare` holds out
    with the same options (exact repeats dropped first, then the same draw from --seed), or the
    source's own evaluation split. A corpus too small to hold out whole documents is a DataError."""
    from .chunking import MIN_DOCS_FOR_HOLDOUT, document_holdout, same_text

    def first_occurrences(texts: list[str], seen: set[str]) -> list[int]:  # as chunking.drop_duplicates keeps them
        kept = []
        for i, text in enumerate(texts):
            key = same_text(text)
            if key not in seen:
                seen.add(key)
                kept.append(i)
        return kept

    seen: set[str] = set()
    train = first_occurrences(documents.train, seen)
    labels = documents.labels or [None] * len(documents.train)
    if documents.eval is not None:
        keep = first_occurrences(documents.eval, seen)
        eval_labels = documents.eval_labels or [None] * len(documents.eval)
        return [documents.eval[i] for i in keep], [eval_labels[i] for i in keep]
    split = document_holdout(len(train), eval_fraction=eval_fraction, seed=seed)
    if split is None:
        raise DataError(f"the corpus has {len(train)} distinct documents, fewer than {MIN_DOCS_FOR_HOLDOUT}, so its "
                        "evaluation text is the tail of the token stream, not whole documents: the linear probe "
                        "needs held-out documents; give a source with more documents")
    picked = [train[i] for i in split[0]]
    return [documents.train[i] for i in picked], [labels[i] for i in picked]


def probe_documents(texts: list[str], labels: list, *, label_column: str, seed: int,
                    cap: int = PROBE_MAX_DOCUMENTS, folds: int = PROBE_FOLDS, say=print) -> tuple[list[str], list[str]]:
    """The labelled held-out documents the probe uses (at most `cap`, drawn with `seed`), checked:
    at least 2 classes and `folds` documents of each, else a DataError naming the class."""
    flag = f"--label-column {label_column}"
    unlabelled = sum(label is None for label in labels)
    pairs = [(t, str(label)) for t, label in zip(texts, labels) if label is not None]
    if not pairs:
        raise DataError(f"{flag}: none of the {len(texts):,} evaluation documents has a class: fill the column, "
                        "or pass --label-column with the column that holds each document's class")
    if unlabelled:
        say(f"note: {unlabelled:,} of the {len(texts):,} evaluation documents have no {label_column!r} and are "
            "left out of the linear probe")
    if len(pairs) > cap:
        keep = np.sort(np.random.default_rng([seed, PROBE_PURPOSE]).choice(len(pairs), size=cap, replace=False))
        pairs = [pairs[i] for i in keep]
    counts = Counter(label for _, label in pairs)
    if len(counts) < 2:
        (only, _), = counts.items()
        raise DataError(f"{flag}: the {len(pairs):,} evaluation documents all have the class {only!r}, and a probe "
                        "needs at least 2 classes: pass a column with several classes, or data with more of them")
    rare = sorted((n, c) for c, n in counts.items() if n < folds)
    if rare:
        n, cls = rare[0]
        raise DataError(f"{flag}: class {cls!r} has {n} of the {len(pairs):,} evaluation documents, and the {folds}-fold "
                        f"stratified cross-validation needs at least {folds} of each class: raise --eval-fraction, "
                        "add documents of that class, or merge or drop the rare classes")
    return [t for t, _ in pairs], [label for _, label in pairs]


def mean_pooled_features(model, tokenizer, texts: list[str], *, device, max_length: int, batch_size: int = 16,
                         autocast=contextlib.nullcontext) -> np.ndarray:
    """(documents, hidden) float32: the encoder's last hidden states averaged over each document's
    tokens (padding excluded), the documents truncated to `max_length` tokens and batched by length."""
    import torch

    enc = tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]
    order = sorted(range(len(enc)), key=lambda i: -len(enc[i]))  # similar lengths together: little padding
    pad = tokenizer.pad_token_id or 0
    features: list = [None] * len(enc)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            width = max(len(enc[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                ids[row, :len(enc[i])] = torch.tensor(enc[i])
                attention[row, :len(enc[i])] = 1
            ids, attention = ids.to(device), attention.to(device)
            with torch.no_grad(), autocast():
                hidden = model.base_model(input_ids=ids, attention_mask=attention)[0]
            weights = attention.unsqueeze(-1).float()
            pooled = (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1)
            for row, i in enumerate(chunk):
                features[i] = pooled[row].cpu().numpy()
    finally:
        model.train(was_training)
    return np.stack(features).astype(np.float32)


def linear_probe(features: np.ndarray, labels: list, *, seed: int, folds: int = PROBE_FOLDS) -> dict:
    """5-fold stratified cross-validated accuracy of logistic regression on standardized features:
    {"accuracy": mean over folds, "accuracy_std", "folds"}."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # an unconverged fold is still a fold's accuracy; say nothing on stderr
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(classifier, np.asarray(features, dtype=np.float64), np.asarray(labels),
                                 cv=split, scoring="accuracy")
    return {"accuracy": float(scores.mean()), "accuracy_std": float(scores.std()), "folds": folds}
