"""The linear probe: how well frozen features of the held-out documents predict their class.

As "Don't Stop Pretraining" (Gururangan et al., 2020) measures whether adaptation helped the
representations: a document's features are its last hidden states averaged over its tokens (padding
excluded), for whole held-out documents truncated to the model's positions; the figure is the 5-fold
stratified cross-validated accuracy of `LogisticRegression(max_iter=1000)` on standardized features.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter

import numpy as np

from ..data.blocks import tokenize
from ..data.split import MIN_DOCS_FOR_HOLDOUT, split_documents
from ..errors import DataError

PROBE_FOLDS = 5
PROBE_MAX_DOCUMENTS = 1000  # held-out documents the linear probe uses at most, drawn with --seed
PROBE_PURPOSE = 3  # the seed stream of that draw (chunking uses 0 for the split, 1 and 2 for sampling)


def heldout_documents(documents, *, eval_fraction: float, seed: int) -> tuple[list[str], list]:
    """The evaluation documents and their classes: the whole documents training holds out with the same
    options (data/split.py), or the source's own evaluation part. A corpus too small to hold out whole
    documents is a DataError."""
    split = split_documents(documents, eval_fraction=eval_fraction, seed=seed)
    if split.holdout == "tail":
        raise DataError(f"the corpus has {len(split.train)} distinct documents, fewer than {MIN_DOCS_FOR_HOLDOUT}, so "
                        "its evaluation text is the tail of the token stream, not whole documents: the linear probe "
                        "needs held-out documents; give a source with more documents")
    return split.eval, split.eval_labels


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

    docs = tokenize(texts, tokenizer, truncate_to=max_length, progress=False)  # a long document in windows
    enc = [docs.tokens[docs.offsets[i]:docs.offsets[i + 1]].tolist() for i in range(len(docs))]
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
