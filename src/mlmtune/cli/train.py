"""`mlmtune train`: flags and config file -> the resolved config -> training.fit, then one line of results."""

from __future__ import annotations

import os

from ..config import ALIASES, check_resume_folder, resolve, to_yaml, validate
from .args import add_config_flags, config_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="adapt a masked LM to your text; writes the model, metrics, run.json",
                       epilog=ALIASES_EPILOG)
    p.add_argument("--config", help="YAML or run.json file; flags override its values")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    add_config_flags(p)
    p.set_defaults(func=run)


ALIASES_EPILOG = ("The names of transformers' TrainingArguments and run_mlm.py are understood as well, each as the "
                  "one option it means: " + ", ".join(
                      f"--{alias}{' OUTPUT/checkpoints/step-N' if alias == 'resume_from_checkpoint' else ''} "
                      f"(--{name.replace('_', '-')})" for alias, name in ALIASES.items())
                  + "; and every option with _ for - (--output_dir).")


def run(args) -> int:
    cfg = config_from_args(args)
    if cfg.resume and args.config:  # --resume continues the run whose run.json is given, or says why not
        check_resume_folder(args.config, cfg.output_dir)
    validate(cfg)
    cfg = resolve(cfg)  # --print-config shows what the run will use
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    from ..training.fit import fit

    results = fit(cfg)
    if os.environ.get("RANK", "0") == "0":
        print(done_line(results))
    return 0


def done_line(results: dict) -> str:
    """The last line of `mlmtune train`: perplexity before -> after, against the warm-started head
    too when one was grown (a gain against a random head alone is not an honest headline)."""
    fresh, warm, after = (results.get(k) for k in ("baseline_perplexity", "warm_start_perplexity", "eval_perplexity"))

    def ppl(value) -> str:
        return "n/a" if value is None else f"{value:,.2f}"

    def ratio(before, now) -> str:
        return f"{before / now:,.1f}x lower" if now <= before else f"{now / before:,.1f}x higher"

    if after and warm:
        change = (f"{ppl(fresh)} (fresh head) -> {ppl(warm)} (warm start) -> {ppl(after)} "
                  f"({ratio(warm, after)} than the warm start)")
    elif after and fresh:
        change = f"{ppl(fresh)} -> {ppl(after)} ({ratio(fresh, after)})"
    else:
        change = ppl(after)
    accuracy = results.get("eval_accuracy")
    words = ""
    if results.get("added_tokens") is not None and results.get("word_bits_per_char") is not None:
        base = results.get("base_word_bits_per_char")  # --add-tokens: the vocabulary-independent measure too
        words = (f", masked words {'n/a' if base is None else f'{base:.4f}'} (base, its own vocabulary) -> "
                 f"{results['word_bits_per_char']:.4f} bits/char")
    return (f"done: eval perplexity {change}, accuracy {'n/a' if accuracy is None else f'{accuracy:.1%}'}{words}, "
            f"{results['train_tokens_per_second']:,.0f} training tokens/s over {results['train_seconds']:,.0f} s, "
            f"{results['steps']} steps")
