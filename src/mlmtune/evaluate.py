"""`mlmtune evaluate`: the perplexity and masked-token accuracy of a model on the held-out part of a corpus.

It prepares the data exactly as `train` does (same split, same seed, same fixed masks), so the
number for a base model and for the model `train` wrote are directly comparable, and equal to the
evaluations in that run's metrics.jsonl.
"""

from __future__ import annotations

from .batching import eval_batches
from .chunking import splits_from_config
from .config import Config, build_config, validate
from .errors import DataError
from .masking import Masker, MaskingSpec
from .metrics import EvalResult, evaluate_batches
from .modeling import MaskedLMObjective, load_masked_lm, load_tokenizer, max_positions

# The options `evaluate` reads; the rest of a config (optimizer, schedule, output) is ignored.
EVALUATE_FIELDS = [
    "data", "data_split", "eval_split", "text_column", "encoding", "line_by_line", "chunk_size",
    "max_length", "eval_size", "eval_fraction", "eval_mlm_probability", "mask_replace_prob",
    "random_replace_prob", "whole_word_mask", "model", "tokenizer", "precision", "seed",
    "eval_batch_size", "batch_size",
]


def run_evaluation(cfg: Config, say=print) -> EvalResult:
    from .runtime import make_accelerator, shutdown

    validate(cfg, training=False)
    accelerator = make_accelerator(cfg)
    tokenizer = load_tokenizer(cfg.model, cfg.tokenizer)
    splits = splits_from_config(cfg, tokenizer, max_positions(cfg.model, tokenizer))
    loaded = load_masked_lm(cfg.model, seed=cfg.seed, tokenizer=tokenizer)
    if loaded.new_parameters and accelerator.is_main_process:
        say(f"note: {cfg.model} has no MLM head; scoring a new, untrained one (initialised from --seed {cfg.seed})")
    objective = accelerator.prepare(MaskedLMObjective(loaded.model))
    masker = Masker(tokenizer, MaskingSpec(cfg.eval_mlm_probability, cfg.mask_replace_prob,
                                           cfg.random_replace_prob, cfg.whole_word_mask))
    batches = eval_batches(splits.eval, masker, seed=cfg.seed, batch_size=cfg.eval_batch_size or 2 * cfg.batch_size,
                           pad_id=tokenizer.pad_token_id or 0, pad_to_multiple_of=8 if cfg.line_by_line else 1,
                           rank=accelerator.process_index, world=accelerator.num_processes)
    result = evaluate_batches(objective, batches, accelerator.device, reduce=lambda t: accelerator.reduce(t, "sum"))
    shutdown(accelerator)
    if result.masked_tokens == 0:  # perplexity and accuracy would be nan
        raise DataError(
            f"no token of the {splits.eval.num_tokens:,} evaluation tokens was masked "
            f"(--eval-mlm-probability {cfg.eval_mlm_probability:g}): raise --eval-mlm-probability "
            "(0.15 is the standard) or --eval-size"
        )
    return result


def evaluate(model: str = "minilm", data: str | list[str] = "bbc-news", **options) -> EvalResult:
    """Python API: `mlmtune.evaluate("runs/demo", "bbc-news", eval_size=500).perplexity`."""
    unknown = set(options) - set(EVALUATE_FIELDS)
    if unknown:
        from .errors import ConfigError

        raise ConfigError(f"evaluate does not take {', '.join(sorted(unknown))}")
    return run_evaluation(build_config({"model": model, "data": [data] if isinstance(data, str) else data, **options}))
