"""Domain vocabulary: how a tokenizer cuts a corpus into pieces, which words to add, and adding them
so the model's predictions do not jump.

- `count_words` / `analyse`: words as the tokenizer's own normalizer and pre-tokenizer see them
  (an uncased tokenizer lowercases and strips accents first), each distinct word cut once by the
  tokenizer's model: pieces per word, the share of words cut into 2, 3, 4+ pieces, the share of
  unknown tokens and the most frequent cut words (`mlmtune vocab`). A long document is read in
  windows (data/windows.py), so memory follows the window, not the document.
- `choose_words` (`--add-tokens N`) and `read_word_file` (`--add-tokens FILE`) pick the words;
  every unusable word is a ConfigError naming it.
- `add_to_tokenizer` adds them as ordinary tokens (never special) that match whole words only;
  `add_to_model` resizes the input embeddings, the tied decoder and the output bias and starts each
  new row as the mean of the rows of the pieces the word was cut into (the bias likewise).
- `NewRowsLearningRate` (`--new-token-lr`): the new rows learn at their own rate.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..config import ModelConfig
from ..data.sources import read_corpus
from ..data.windows import WINDOW_CHARS, same_in_windows, seam_for, windows
from ..errors import ConfigError, ModelError
from .load import resolve_model
from .normaliser import note as normaliser_note
from .tokenizer import TOKENIZER_FILES, load_tokenizer, tokenizer_difference
from .warmstart import output_bias

TOP = 50  # `mlmtune vocab --top`


def backend_of(tokenizer, what: str = "--add-tokens"):
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        raise ModelError(f"{what} needs a fast tokenizer (a tokenizer.json, Rust backend) to see words as the tokenizer "
                         f"does; {tokenizer.name_or_path!r} has only a slow one: convert it (AutoTokenizer.from_pretrained"
                         "(..., use_fast=True).save_pretrained(folder)) or use a model with a tokenizer.json")
    return backend


class WordCutter:
    """Normalise and pre-tokenize text with the tokenizer's own backend; cut each distinct word once."""

    def __init__(self, tokenizer, what: str = "--add-tokens"):
        self.tokenizer = tokenizer
        backend = backend_of(tokenizer, what)
        self.normalizer = backend.normalizer
        self.pre_tokenizer = backend.pre_tokenizer
        self.model = backend.model
        self.unk = tokenizer.unk_token
        # ordinary (not special) tokens added earlier, e.g. by an earlier --add-tokens: a word of their own
        special = set(tokenizer.all_special_tokens)
        self.added = {t for t in tokenizer.get_added_vocab() if t not in special}
        self._cache: dict[str, list[str]] = {}

    def normalize(self, text: str) -> str:
        return self.normalizer.normalize_str(text) if self.normalizer is not None else text

    def words(self, text: str) -> list[str]:
        text = self.normalize(text)
        if self.pre_tokenizer is None:
            return text.split()
        return [w for w, _ in self.pre_tokenizer.pre_tokenize_str(text)]

    @functools.cached_property
    def seam(self):
        """Where a long text may be cut so that its words come out as whole (data/windows.py), or None."""
        return seam_for(lambda seam: same_in_windows(self.words, seam))

    def parts(self, text: str, size: int = WINDOW_CHARS):
        """`text` in windows whose words are the text's words, or whole when it is short (or cannot be cut)."""
        if len(text) <= size or self.seam is None:
            return [text]
        return windows(text, size, self.seam)

    def pieces(self, word: str) -> list[str]:
        cut = self._cache.get(word)
        if cut is None:
            cut = [word] if word in self.added else [t.value for t in self.model.tokenize(word)]
            self._cache[word] = cut
        return cut


def count_words(cutter: WordCutter, texts: list[str], window_chars: int = WINDOW_CHARS) -> Counter:
    counts: Counter = Counter()
    for text in texts:
        for part in cutter.parts(text, window_chars):
            counts.update(cutter.words(part))
    return counts


@dataclass
class CutWord:
    word: str
    count: int
    pieces: list[str]

    def line(self) -> str:
        return f"{self.word!r:>24} {self.count:>7,} -> {' '.join(self.pieces)}"


@dataclass
class VocabReport:
    model: str
    documents: int
    words: int  # running words
    distinct_words: int
    tokens: int  # pieces over all running words
    pieces_per_word: float
    share_1: float  # of running words: one piece
    share_2: float
    share_3: float
    share_4_plus: float
    unknown_share: float  # of tokens: the unknown token
    top: list[CutWord] = field(default_factory=list)
    note: str | None = None  # what the normaliser loses of the corpus (model/normaliser.py), when noticeable

    def as_dict(self) -> dict:
        record = asdict(self)
        record["top"] = [{"word": c.word, "count": c.count, "pieces": c.pieces} for c in self.top]
        return record

    def text(self, min_count: int) -> str:
        lines = [
            f"{self.model}: {self.words:,} words ({self.distinct_words:,} distinct) in {self.documents:,} documents "
            f"-> {self.tokens:,} tokens",
            f"pieces per word {self.pieces_per_word:.3f}; words in 1 piece {self.share_1:.1%}, 2 pieces "
            f"{self.share_2:.1%}, 3 pieces {self.share_3:.1%}, 4+ pieces {self.share_4_plus:.1%}; "
            f"unknown tokens {self.unknown_share:.2%}",
        ]
        if self.top:
            lines.append(f"the {len(self.top)} most frequent words cut into pieces (at least {min_count} times):")
            lines += [c.line() for c in self.top]
        else:
            lines.append(f"no word cut into pieces occurs at least {min_count} times")
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


def summarize(cutter: WordCutter, counts: Counter, *, model: str, documents: int, top: int, min_count: int,
              added: set[str] | frozenset = frozenset()) -> VocabReport:
    """The figures of `counts`; words in `added` count as one piece (the tokenizer after --add-tokens)."""
    n_words = sum(counts.values())
    by_len = Counter()
    unknown = 0
    for word, c in counts.items():
        pieces = [word] if word in added else cutter.pieces(word)
        by_len[min(len(pieces), 4)] += c
        by_len["tokens"] += c * len(pieces)
        unknown += c * sum(p == cutter.unk for p in pieces)
    tokens = by_len["tokens"]
    share = (lambda k: by_len[k] / n_words) if n_words else (lambda k: 0.0)
    return VocabReport(
        model=model, documents=documents, words=n_words, distinct_words=len(counts), tokens=tokens,
        pieces_per_word=tokens / n_words if n_words else 0.0, share_1=share(1), share_2=share(2), share_3=share(3),
        share_4_plus=share(4), unknown_share=unknown / tokens if tokens else 0.0,
        top=cut_words(cutter, counts, top, min_count, added),
    )


def cut_words(cutter: WordCutter, counts: Counter, n: int, min_count: int,
              added: set[str] | frozenset = frozenset()) -> list[CutWord]:
    """The `n` most frequent words cut into 2 or more pieces, none unknown, seen at least `min_count`
    times (ties: alphabetical, so the choice is the same in every run)."""
    chosen = []
    for word, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if c < min_count or len(chosen) >= n:
            break
        if word in added:
            continue
        pieces = cutter.pieces(word)
        if len(pieces) >= 2 and cutter.unk not in pieces:
            chosen.append(CutWord(word, c, pieces))
    return chosen


def analyse(model: str, data: list[str] | str, *, tokenizer: str | None = None, top: int = TOP,
            min_count: int | None = None, text_column: str = "text", encoding: str = "utf-8",
            split: str = "train") -> VocabReport:
    """`mlmtune vocab` and the Python API: how the tokenizer of `model` cuts the documents of `data`
    (min_count: the config's --min-count when None)."""

    data = [data] if isinstance(data, str) else list(data)
    min_count = ModelConfig().min_count if min_count is None else min_count

    if top < 1:
        raise ConfigError(f"--top must be at least 1, got {top}")
    if min_count < 1:
        raise ConfigError(f"--min-count must be at least 1, got {min_count}")
    tok = load_tokenizer(model, tokenizer)
    cutter = WordCutter(tok, "mlmtune vocab")
    documents = read_corpus(data, split=split, text_column=text_column, encoding=encoding)
    texts = documents.train + (documents.eval or [])
    report = summarize(cutter, count_words(cutter, texts), model=model, documents=len(texts), top=top,
                       min_count=min_count)
    report.note = normaliser_note(tok, texts, model)
    return report


def choose_words(cutter: WordCutter, counts: Counter, n: int, min_count: int) -> list[CutWord]:
    chosen = cut_words(cutter, counts, n, min_count)
    if not chosen:
        raise ConfigError(f"--add-tokens {n}: no word of the training text is cut into pieces and occurs at least "
                          f"{min_count} times (--min-count): lower --min-count, or give the words in a file")
    return chosen


def _examples(items: list[str]) -> str:
    return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")


def read_word_file(path: str | Path, cutter: WordCutter) -> list[CutWord]:
    """--add-tokens FILE: one word a line (blank lines skipped). Every word must be new to the vocabulary,
    one word to the pre-tokenizer, no special token, and given once (after the tokenizer's normalisation:
    `Ministers` and `ministers` are one word to an uncased tokenizer)."""
    path = Path(path)
    fix = "give a file with one word a line, or a number of words (e.g. --add-tokens 100)"
    if not path.exists():
        raise ConfigError(f"--add-tokens {path}: no such file (and not a whole number): {fix}")
    if not path.is_file():
        raise ConfigError(f"--add-tokens {path} is not a file: {fix}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--add-tokens {path} cannot be read ({exc.strerror}): {fix}") from None
    if b"\x00" in raw:
        raise ConfigError(f"--add-tokens {path} looks like a binary file (it holds NUL bytes): {fix}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--add-tokens {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at {exc.start}): "
                          "save it as UTF-8") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise ConfigError(f"--add-tokens {path} is empty: {fix}")
    special = set(cutter.tokenizer.all_special_tokens)
    problems: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    chosen = []
    for n, word in lines:
        where = f"{word!r} (line {n})"
        if any(ch.isspace() for ch in word):
            problems.setdefault("hold spaces (one word a line)", []).append(where)
            continue
        if word in special or re.fullmatch(r"\[[A-Z]+\]|<[/a-z]+>", word):
            problems.setdefault("are special tokens", []).append(where)
            continue
        normal = cutter.normalize(word)
        parts = cutter.words(word)
        if parts != [normal]:
            problems.setdefault("are cut into several words by the tokenizer's pre-tokenizer (punctuation)",
                                []).append(f"{where} -> {' '.join(parts)}")
            continue
        if normal in seen:
            problems.setdefault("are given twice", []).append(f"{where}, as on line {seen[normal]}")
            continue
        seen[normal] = n
        pieces = cutter.pieces(normal)
        if len(pieces) == 1 and pieces[0] != cutter.unk:
            problems.setdefault("are one token of the vocabulary already", []).append(where)
            continue
        longest = getattr(cutter.model, "max_input_chars_per_word", None)
        if pieces == [cutter.unk] and longest is not None and len(normal) > longest:
            problems.setdefault(f"are longer than the {longest} characters the tokenizer cuts into pieces (longer "
                                f"words become {cutter.unk})", []).append(where)
            continue
        if cutter.unk in pieces:
            problems.setdefault(f"hold characters the vocabulary lacks ({cutter.unk}: no pieces to start the new "
                                "row from)", []).append(where)
            continue
        chosen.append(CutWord(normal, 0, pieces))
    if problems:
        what = "; ".join(f"{_examples(items)} {reason}" for reason, items in problems.items())
        raise ConfigError(f"--add-tokens {path}: {what}: remove them from the file")
    return chosen


def check_wordpiece(tokenizer, model: str) -> None:
    """New words are added as whole-word tokens of the normalised text, which fits WordPiece; a byte-level
    BPE or Unigram word carries its leading space (`Ġword`, `▁word`), which an added token would not."""
    kind = type(backend_of(tokenizer).model).__name__
    if kind != "WordPiece":
        raise ConfigError(f"--add-tokens supports WordPiece tokenizers (BERT, DistilBERT, MiniLM, ...); the tokenizer "
                          f"of {model} is {kind}, whose words carry their spaces: drop --add-tokens")


def check_same_tokenizer(model: str, tokenizer_name: str | None, tokenizer) -> None:
    """--add-tokens starts each new row from the model's rows of its pieces: the pieces must be the
    model's own. A --tokenizer other than the one beside the model is refused."""
    if tokenizer_name is None:
        return

    source = Path(resolve_model(model))
    if source.is_dir() and not any((source / f).is_file() for f in TOKENIZER_FILES):
        return  # the model has no tokenizer of its own: --tokenizer is the one it was made with
    try:
        own = load_tokenizer(model)
    except ModelError:
        return
    why = tokenizer_difference(own, tokenizer)
    if why:
        raise ConfigError(f"--add-tokens with --tokenizer {tokenizer_name}, which differs from {model}'s own "
                          f"tokenizer ({why}): a new row starts as the mean of the model's rows of its pieces, so "
                          "the pieces must be the model's; drop --tokenizer or --add-tokens")


@dataclass
class AddedWords:
    words: list[str]
    pieces: list[list[int]]  # ids of the pieces each word was cut into by the tokenizer before
    first_id: int  # id of words[0]; the rest follow

    @property
    def ids(self) -> list[int]:
        return list(range(self.first_id, self.first_id + len(self.words)))


def add_to_tokenizer(tokenizer, chosen: list[CutWord]) -> AddedWords:
    """Ordinary tokens (never special) that match whole words of the normalised text only
    (`single_word`), so `ministers` is not found inside `subministers`."""
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    pieces = [[vocab[p] for p in c.pieces] for c in chosen]
    before = len(tokenizer)
    tokenizer.add_tokens([AddedToken(c.word, single_word=True, normalized=True, special=False) for c in chosen])
    if len(tokenizer) != before + len(chosen):  # pragma: no cover - a word the checks let through as known
        raise ModelError(f"the tokenizer took {len(tokenizer) - before} of {len(chosen)} new words")
    first = tokenizer.convert_tokens_to_ids(chosen[0].word)
    return AddedWords([c.word for c in chosen], pieces, first)


@torch.no_grad()
def add_to_model(model: torch.nn.Module, added: AddedWords, vocab_size: int) -> None:
    """Resize the input embeddings, the (tied) decoder and the output bias to `vocab_size`; each new
    row is the mean of the rows of its pieces, and so is its output bias."""

    model.resize_token_embeddings(vocab_size, mean_resizing=False)
    inputs = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    tables = [inputs]
    if output is not None and output.weight is not inputs:  # an untied decoder has rows of its own
        tables.append(output.weight)
    bias = output_bias(model)
    for row, pieces in zip(added.ids, added.pieces):
        index = torch.tensor(pieces, device=inputs.device)
        for table in tables:
            table[row] = table[index].mean(0)
        if bias is not None and bias.shape[0] == vocab_size:
            bias[row] = bias[index].mean()


class NewRowsLearningRate:
    """--new-token-lr: the rows of the added words learn at their own rate.

    AdamW's update does not depend on the scale of a gradient (m / sqrt(v) cancels it), so a hook that
    scaled the new rows' gradients would change nothing. The scale is put on the update instead: an
    optimizer step pre-hook keeps the new rows, a post-hook moves them `factor` times as far as the
    step did (factor = new-token lr / the lr of the row's parameter group; the schedule scales both
    alike). Weight decay, part of the step, scales with it. One loop, two small hooks."""

    def __init__(self, optimizer: torch.optim.Optimizer, model: torch.nn.Module, ids: list[int], lr: float):

        group_lr = {id(p): g.get("initial_lr", g["lr"]) for g in optimizer.param_groups for p in g["params"]}
        params = [model.get_input_embeddings().weight]
        output = model.get_output_embeddings()
        if output is not None and output.weight is not params[0]:
            params.append(output.weight)
        bias = output_bias(model)
        if bias is not None:
            params.append(bias)
        self.rows = slice(ids[0], ids[-1] + 1)
        self.targets = [(p, lr / group_lr[id(p)]) for p in params if id(p) in group_lr and group_lr[id(p)] > 0]
        self.targets = [(p, f) for p, f in self.targets if f != 1.0]
        self.saved: list[torch.Tensor] = []
        self.handles = []
        if self.targets:
            self.handles = [optimizer.register_step_pre_hook(self._before),
                            optimizer.register_step_post_hook(self._after)]

    @property
    def factors(self) -> list[float]:
        return [f for _, f in self.targets]

    def _before(self, optimizer, args, kwargs) -> None:
        self.saved = [p.detach()[self.rows].clone() for p, _ in self.targets]

    @torch.no_grad()
    def _after(self, optimizer, args, kwargs) -> None:
        for (p, factor), old in zip(self.targets, self.saved):
            rows = p[self.rows]
            rows.copy_(old + factor * (rows - old))
        self.saved = []

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
