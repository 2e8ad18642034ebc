"""Which documents train and which are held out for evaluation: one draw every reader takes.

Exact repeats are dropped first (BBC News holds 98 repeated articles: a document on both sides of
the split would flatter the model). Then the source's own evaluation documents (a Hub split or
--eval-data, less any training text), or a seeded draw of whole documents (--eval-fraction), or,
below MIN_DOCS_FOR_HOLDOUT documents, nothing here: the evaluation text is then the tail of the
token stream (data/blocks.py). Training (blocks.prepare), the vocabulary (--add-tokens, `mlmtune
vocab`) and the linear probe all call `split_documents`, so all agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sources import Documents

# Below this many documents, whole documents cannot make a sensible held-out share; the
# evaluation blocks are then the tail of the token stream (still no text in both splits).
MIN_DOCS_FOR_HOLDOUT = 10


def same_text(text: str) -> str:
    """What makes two documents the same text: line endings, a byte-order mark and surrounding
    whitespace do not count."""
    return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff").strip()


def first_occurrences(texts: list[str], seen: set[str]) -> list[int]:
    """Indices of the texts not seen before (same_text), in order; each kept text joins `seen`."""
    kept = []
    for i, text in enumerate(texts):
        key = same_text(text)
        if key not in seen:
            seen.add(key)
            kept.append(i)
    return kept


def drop_duplicates(texts: list[str], seen: set[str] | None = None) -> tuple[list[str], int]:
    """`texts` without exact repeats (after trimming surrounding whitespace), first occurrence kept;
    texts in `seen` count as repeats too. Returns the kept texts and how many were dropped."""
    kept = first_occurrences(texts, set() if seen is None else seen)
    return [texts[i] for i in kept], len(texts) - len(kept)


def document_holdout(n_docs: int, *, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The seeded draw of whole documents held out of `n_docs` distinct documents: (evaluation
    indices, training indices), each sorted; None when there are too few documents to hold any out."""
    if n_docs < MIN_DOCS_FOR_HOLDOUT:
        return None
    order = np.random.default_rng([seed, 0]).permutation(n_docs)
    n_eval = max(1, round(eval_fraction * n_docs))
    return np.sort(order[:n_eval]), np.sort(order[n_eval:])


@dataclass
class DocumentSplit:
    train: list[str]
    eval: list[str]  # [] when holdout is "tail"
    holdout: str  # "split": the source's own evaluation documents; "documents": drawn; "tail": too few
    duplicates: int  # exact repeats dropped (on both sides)
    train_labels: list  # each document's class, None where it has none
    eval_labels: list


def split_documents(documents: Documents, *, eval_fraction: float, seed: int) -> DocumentSplit:
    """The training and the held-out documents: exact repeats dropped, then the source's own
    evaluation part (less what training holds) or the seeded draw of whole documents; a source too
    small for that trains on all of them and holds out no whole document ("tail")."""
    seen: set[str] = set()
    kept = first_occurrences(documents.train, seen)
    train = [documents.train[i] for i in kept]
    labels = documents.labels or [None] * len(documents.train)
    train_labels = [labels[i] for i in kept]
    duplicates = len(documents.train) - len(kept)
    if documents.eval is not None:
        held = first_occurrences(documents.eval, seen)
        eval_labels = documents.eval_labels or [None] * len(documents.eval)
        return DocumentSplit(train, [documents.eval[i] for i in held], "split",
                             duplicates + len(documents.eval) - len(held), train_labels, [eval_labels[i] for i in held])
    drawn = document_holdout(len(train), eval_fraction=eval_fraction, seed=seed)
    if drawn is None:
        return DocumentSplit(train, [], "tail", duplicates, train_labels, [])
    held, rest = drawn
    return DocumentSplit([train[i] for i in rest], [train[i] for i in held], "documents", duplicates,
                         [train_labels[i] for i in rest], [train_labels[i] for i in held])


def training_texts(documents: Documents, *, eval_fraction: float, seed: int) -> list[str]:
    """The documents training reads, so no evaluation text decides the vocabulary."""
    return split_documents(documents, eval_fraction=eval_fraction, seed=seed).train


def heldout_texts(documents: Documents, *, eval_fraction: float, seed: int) -> list[str]:
    """The whole documents training holds out, or the source's own evaluation part ([] for "tail")."""
    return split_documents(documents, eval_fraction=eval_fraction, seed=seed).eval
