"""--add-tokens in a run: choose the words on the training documents, add them to the tokenizer, and
grow the model's rows for them; score the base on the masked words first (with its own tokenizer).

The words are chosen before the text is tokenized (the training text is cut with them), and on the
training documents only, so no evaluation text decides the vocabulary. The masked-word measure
(eval/words.py) is prepared for the old and the new tokenizer on the same held-out words.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..config import Config, parse_count
from ..data.sources import Documents, documents_from_config
from ..data.split import split_documents
from ..errors import CheckpointError
from ..eval import words as wordeval
from ..model import vocabulary as vocab
from ..model.tokenizer import load_tokenizer


@dataclass
class AddedVocabulary:
    """What run.json records under `vocabulary`, and the masked-word sets (base tokenizer, new tokenizer)."""

    words: list[str]
    pieces: list[list[int]]
    first_id: int
    pieces_per_word_before: float
    pieces_per_word_after: float
    word_sets: list = field(default_factory=list, repr=False)

    def record(self) -> dict:
        return {"words": self.words, "pieces": self.pieces, "first_id": self.first_id, "base_size": self.first_id,
                "pieces_per_word_before": round(self.pieces_per_word_before, 4),
                "pieces_per_word_after": round(self.pieces_per_word_after, 4)}

    @property
    def base_words(self) -> wordeval.WordSet:
        return self.word_sets[0]

    @property
    def tuned_words(self) -> wordeval.WordSet:
        return self.word_sets[1]


def add_vocabulary(cfg: Config, tokenizer, positions: int, *, saved_run: dict | None,
                   say=print) -> tuple[AddedVocabulary, Documents]:
    """Add the --add-tokens words to `tokenizer` (in place). Returns them and the documents read, which
    the data step then cuts (not read twice). Nothing is written; the model's rows follow in add_rows."""
    vocab.check_same_tokenizer(cfg.model, cfg.tokenizer, tokenizer)
    cutter = vocab.WordCutter(tokenizer)
    vocab.check_wordpiece(tokenizer, cfg.model)
    n = parse_count(cfg.add_tokens)
    chosen = None if n is not None else vocab.read_word_file(os.path.expanduser(cfg.add_tokens), cutter)
    documents = documents_from_config(cfg)  # --data, and --eval-data as its evaluation documents
    split = split_documents(documents, eval_fraction=cfg.eval_fraction, seed=cfg.seed)
    training, heldout = split.train, split.eval
    counts = vocab.count_words(cutter, training)
    if chosen is None:
        chosen = vocab.choose_words(cutter, counts, n, cfg.min_count)
    before = vocab.summarize(cutter, counts, model=cfg.model, documents=0, top=0, min_count=1).pieces_per_word
    after = vocab.summarize(cutter, counts, model=cfg.model, documents=0, top=0, min_count=1,
                            added={c.word for c in chosen}).pieces_per_word
    base_tokenizer = load_tokenizer(cfg.model, cfg.tokenizer)  # kept as it was: the base is scored with it
    added = vocab.add_to_tokenizer(tokenizer, chosen)
    if cfg.resume:
        check_same_words(saved_run, added.words)
    word_sets = wordeval.prepare(heldout, [base_tokenizer, tokenizer], seed=cfg.seed, max_length=positions,
                                 max_windows=wordeval.max_windows(cfg.eval_size))
    vocabulary = AddedVocabulary(added.words, added.pieces, added.first_id, before, after, word_sets)
    short = f" (only {len(chosen)} words of the {n} asked for are cut into pieces and seen at least " \
            f"{cfg.min_count} times)" if n is not None and len(chosen) < n else ""
    say(f"vocabulary: added {len(chosen)} words{short}; pieces per word of the training text "
        f"{before:.3f} -> {after:.3f} ({(before - after) / before:.1%} fewer tokens)")
    if not heldout or vocabulary.base_words.n_words == 0:
        say("note: no held-out whole documents, so no masked-word measure: its evaluation needs 10 documents or more")
    return vocabulary, documents


def check_same_words(saved_run: dict | None, words: list[str]) -> None:
    """--resume needs the same added words, in the same order, as run.json records."""
    recorded = (saved_run.get("vocabulary") if isinstance(saved_run, dict) else None) or {}
    saved = recorded.get("words") if isinstance(recorded, dict) else None
    if saved != words:
        differ = "no list" if saved is None else next(
            (f"word {i + 1} was {a!r}, now {b!r}" for i, (a, b) in enumerate(zip(saved, words)) if a != b),
            f"{len(saved)} words, now {len(words)}")
        raise CheckpointError(f"--resume with other added words than the run's (run.json: {differ}): resume with "
                              "the same --add-tokens words, or start a new run")


def add_rows(model, vocabulary: AddedVocabulary, vocab_size: int) -> None:
    """Grow the embeddings, the tied decoder and the bias by the new words, each row the mean of its pieces."""
    vocab.add_to_model(model, vocab.AddedWords(vocabulary.words, vocabulary.pieces, vocabulary.first_id), vocab_size)
