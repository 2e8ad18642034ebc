"""What the tokenizer's normaliser loses of a corpus (issue 21: minilm's uncased tokenizer stripped a
Vietnamese corpus's tones without a word): on a bounded sample of the text, the share of characters
whose letter changes (accents stripped, marks dropped), that the vocabulary cannot hold (the unknown
token) and, for a corpus whose case looks meaningful, capitals inside mixed-case words (camelCase,
iPhone: not a sentence's first letter, not an acronym) that are lowercased. `train`,
`vocab` and `evaluate` print `note()`'s line when the share is noticeable.

Each distinct character is normalised on its own (a normaliser works per character: NFD, accent
stripping, lowercasing; the spaces BERT's puts around CJK characters are not a change), so the cost
is one tokenizer call for the distinct characters of at most SAMPLE_CHARS characters.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

SAMPLE_CHARS = 200_000  # ~40 news articles: enough for a share of a percent, cheap to count
SAMPLE_DOCS = 200  # the sample's documents, spread over the corpus
NOTE_SHARE = 0.01  # a character in 100 changed (letter or unknown): a note
CASE_SHARE = 0.02  # of letters, capitals inside a mixed-case word (camelCase, iPhone) lowercased: a note
WORD = re.compile(r"[^\W\d_]+")  # a run of letters


@dataclass
class Normalised:
    characters: int  # of the sample, whitespace and control characters left out
    changed: int  # a letter turned into another (an accent stripped) or dropped (a combining mark)
    unknown: int  # the vocabulary holds no token for it
    case_inside: int  # capitals inside a mixed-case word, lowercased by the normaliser
    letters: int

    @property
    def share(self) -> float:
        return (self.changed + self.unknown) / self.characters if self.characters else 0.0

    @property
    def case_share(self) -> float:
        return self.case_inside / self.letters if self.letters else 0.0


def sample(texts: list[str], chars: int = SAMPLE_CHARS, docs: int = SAMPLE_DOCS) -> list[str]:
    """The starts of up to `docs` documents spread evenly over `texts`, `chars` characters in all."""
    if not texts:
        return []
    k = min(docs, len(texts))
    picked = sorted({round(i * (len(texts) - 1) / max(1, k - 1)) for i in range(k)})
    each = max(1, chars // len(picked))
    return [texts[i][:each] for i in picked]


def measure(tokenizer, texts: list[str]) -> Normalised | None:
    """What the normaliser of `tokenizer` (a fast one; None for a slow one) does to a sample of `texts`."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        return None
    part = sample(texts)
    counts = Counter(c for text in part for c in text if not c.isspace() and unicodedata.category(c)[0] != "C")
    normalizer = backend.normalizer
    chars = list(counts)
    normal = {c: (normalizer.normalize_str(c) if normalizer is not None else c).strip() for c in chars}
    unk = tokenizer.unk_token_id
    kept = [c for c in chars if normal[c]]
    ids = tokenizer([normal[c] for c in kept], add_special_tokens=False, verbose=False)["input_ids"] if kept else []
    unknown = {c for c, i in zip(kept, ids) if unk is not None and unk in i}
    changed = {c for c in chars if c not in unknown and normal[c] not in (c, c.lower())}
    lowered = {c for c in chars if c != normal[c] == c.lower()}
    inside = sum(sum(c in lowered for c in word[1:]) for text in part for word in WORD.findall(text)
                 if not word.isupper() and not word.islower())
    return Normalised(characters=sum(counts.values()), changed=sum(counts[c] for c in changed),
                      unknown=sum(counts[c] for c in unknown), case_inside=inside,
                      letters=sum(n for c, n in counts.items() if c.isalpha()))


def note(tokenizer, texts: list[str], model: str) -> str | None:
    """One line when the tokenizer of `model` loses a noticeable share of `texts`' characters, else None."""
    found = measure(tokenizer, texts)
    if found is None or (found.share < NOTE_SHARE and found.case_share < CASE_SHARE):
        return None
    what = []
    if found.changed:
        what.append(f"{found.changed / found.characters:.1%} changed (accents stripped, marks dropped)")
    if found.unknown:
        what.append(f"{found.unknown / found.characters:.1%} unknown to its vocabulary")
    if found.case_share >= CASE_SHARE:
        what.append(f"{found.case_share:.1%} of letters are capitals inside words, lowercased")
    return (f"note: the tokenizer of {model} loses characters of the corpus (a sample of {found.characters:,}): "
            f"{'; '.join(what)}; the model never sees them and predictions come out without them: a multilingual "
            "or cased model keeps them (--model, with --tokenizer if its tokenizer is not beside it)")
