from __future__ import annotations

import numpy as np

# Below this many documents, whole documents cannot make a sensible held-out share; the
# evaluation blocks are then the tail of the token stream (still no text in both splits).
MIN_DOCS_FOR_HOLDOUT = 10


def same_text(text: str) -> str:
    """What makes two documents the same text: line endings, a byte-order mark and surrounding
    whitespace do not count."""
    return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff").strip()


def drop_duplicates(texts: list[str], seen: set[str] | None = None) -> tuple[list[str], int]:
    """`texts` without exact repeats (after trimming surrounding whitespace), first occurrence kept;
    texts in `seen` count as repeats too. Returns the kept texts and how many were dropped."""
    seen = set() if seen is None else seen
    kept = []
    for text in texts:
        key = same_text(text)
        if key not in seen:
            seen.add(key)
            kept.append(text)
    return kept, len(texts) - len(kept)


def document_holdout(n_docs: int, *, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The draw of whole documents `prepare` holds out of `n_docs` distinct documents: (evaluation
    indices, training indices), each sorted; None when there are too few documents to hold any out
    (the evaluation text is then the tail of the token stream). Every reader of the held-out part
    (vocab, probes) takes this one draw, so all agree with training."""
    if n_docs < MIN_DOCS_FOR_HOLDOUT:
        return None
    order = np.random.default_rng([seed, 0]).permutation(n_docs)
    n_eval = max(1, round(eval_fraction * n_docs))
    return np.sort(order[:n_eval]), np.sort(order[n_eval:])


def split_texts(documents, *, eval_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts) as `chunking.prepare` splits them: exact repeats dropped, then
    the source's own evaluation part (less what training holds) or the same draw of whole documents.
    A source too small to hold out whole documents (its evaluation text is the tail of the token
    stream) trains on all of them and holds out no whole document ([])."""

    train, _ = drop_duplicates(documents.train)
    if documents.eval is not None:
        return train, drop_duplicates(documents.eval, {same_text(t) for t in train})[0]
    split = document_holdout(len(train), eval_fraction=eval_fraction, seed=seed)
    if split is None:
        return train, []
    held, kept = split
    return [train[i] for i in kept], [train[i] for i in held]


def training_texts(documents, *, eval_fraction: float, seed: int) -> list[str]:
    """The documents training reads, so no evaluation text decides the vocabulary (see split_texts)."""
    return split_texts(documents, eval_fraction=eval_fraction, seed=seed)[0]


def heldout_texts(documents, *, eval_fraction: float, seed: int) -> list[str]:
    """The whole documents training holds out, or the source's own evaluation part (see split_texts)."""
    return split_texts(documents, eval_fraction=eval_fraction, seed=seed)[1]
