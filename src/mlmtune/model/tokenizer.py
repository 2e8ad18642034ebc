"""Load a model's tokenizer (or --tokenizer), and tell whether two tokenizers read the same token ids."""

from __future__ import annotations

from pathlib import Path

from ..data.sources import looks_like_path
from ..errors import ModelError
from .load import check_config_json, check_masked_lm, load_failure, model_config, quiet_transformers, resolve_model

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def load_tokenizer(model: str, tokenizer: str | None = None):
    from transformers import AutoTokenizer

    quiet_transformers()
    source = resolve_model(tokenizer or model)
    if not Path(source).exists() and looks_like_path(source):
        raise ModelError(f"model {source!r} does not exist: check the path")
    check_config_json(source)
    if Path(resolve_model(model)).is_dir() and (config := model_config(model)) is not None:
        check_masked_lm(model, config)  # before its tokenizer's missing mask token: the model is the reason
    # transformers 5 builds an empty tokenizer (special tokens only) for a folder without vocabulary
    # files instead of failing; catch that here.
    if Path(source).is_dir() and not any((Path(source) / f).is_file() for f in TOKENIZER_FILES):
        raise ModelError(f"model folder {source} has no tokenizer (none of {', '.join(TOKENIZER_FILES[:3])}, ...): "
                         "copy the tokenizer files into it, or pass --tokenizer with the base model")
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ... for bad folders
        raise load_failure("tokenizer", source, exc) from None
    if not getattr(tok, "is_fast", False):
        raise ModelError(slow_tokenizer(source, tok))
    if len(tok) < 100:
        raise ModelError(f"the tokenizer of {source!r} has only {len(tok)} tokens: pass --tokenizer with the base model")
    if tok.mask_token is None:
        raise ModelError(f"the tokenizer of {source!r} has no mask token: use a masked-LM checkpoint")
    return tok


def slow_tokenizer(source: str, tok) -> str:
    """Why a tokenizer without a fast version is refused, and what to use instead."""
    name = type(tok).__name__
    instead = ("xlm-roberta-base, which reads Vietnamese as it is written" if "phobert" in name.lower()
               else "a model whose folder has a tokenizer.json")
    return (f"the tokenizer of {source!r} ({name}) has no fast version, which mlmtune needs (its word ids and "
            f"offsets mark whole words for masking, the masked-word measure and the pieces on the page): use "
            f"{instead}, or pass --tokenizer with a fast tokenizer of the same vocabulary")


# Tokenized by every model's tokenizer: a casing, accent or punctuation rule that differs shows here
# even when two vocabularies are the same.
TOKENIZER_SAMPLE = "The Quick brown Fox's naïve café in Zürich cost £3.14 -- don't STOP, O'Neill!\tNew\nline"


def tokenizer_difference(first, other) -> str | None:
    """Why `other` cannot read the token ids `first` made, or None when it can."""
    va, vb = first.get_vocab(), other.get_vocab()
    if va != vb:
        if len(va) != len(vb):
            return f"vocabularies of {len(va):,} and {len(vb):,} tokens"
        differ = sum(1 for token, i in va.items() if vb.get(token) != i)
        return f"vocabularies of {len(va):,} tokens, {differ:,} of them with other ids"
    if (first.mask_token_id, first.pad_token_id, sorted(first.all_special_ids)) != \
            (other.mask_token_id, other.pad_token_id, sorted(other.all_special_ids)):
        return "the same vocabulary but other special tokens"
    if first(TOKENIZER_SAMPLE)["input_ids"] != other(TOKENIZER_SAMPLE)["input_ids"]:
        return "the same vocabulary but another tokenization (casing, accents or punctuation)"
    return None


def added_words_only(first, other) -> bool:
    """True when one tokenizer is the other plus ordinary added words (train --add-tokens): the shared
    ids mean the same tokens, the extra ones are added, non-special tokens, the special tokens agree."""
    small, big = (first, other) if len(first) <= len(other) else (other, first)
    vs, vb = small.get_vocab(), big.get_vocab()
    extra = {t for t, i in vb.items() if i >= len(small)}
    added = set(big.get_added_vocab()) - set(big.all_special_tokens)
    return (len(big) > len(small) and all(vb.get(t) == i for t, i in vs.items()) and extra <= added
            and (first.mask_token_id, first.pad_token_id, sorted(first.all_special_ids))
            == (other.mask_token_id, other.pad_token_id, sorted(other.all_special_ids)))


def model_tokenizer(model: str, tokenizer_name: str | None):
    """The tokenizer `model` is scored with: --tokenizer, unless the model's folder holds that tokenizer plus
    words of its own (a run made with --tokenizer and --add-tokens), whose ids mean those words."""

    tok = load_tokenizer(model, tokenizer_name)
    source = Path(resolve_model(model))
    if tokenizer_name is None or not (source.is_dir() and any((source / f).is_file() for f in TOKENIZER_FILES)):
        return tok
    own = load_tokenizer(model)
    return own if len(own) > len(tok) and added_words_only(tok, own) else tok
