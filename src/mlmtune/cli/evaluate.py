"""`mlmtune evaluate`: several models on the same fixed masks; a run's run.json scores its own model."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..config import EVALUATE_FIELDS, config_layer, read_config_file, run_folder_of
from ..errors import ConfigError
from .args import add_config_flags, config_from_args, recover_run_folder


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="perplexity and accuracy on the held-out part of a corpus, fixed masks; "
                                        "several models side by side")
    p.add_argument("--config", help="YAML or run.json file (its data and masking options are used); the run.json "
                                    "of a finished run scores that run's own model unless --model is given")
    p.add_argument("--json", action="store_true",
                   help='one JSON object per model and line: {"model", "perplexity", "accuracy", "masked_tokens", ...}')
    p.add_argument("--model", dest="models", action="append", default=None, metavar="MODEL",
                   help="model folder or Hugging Face id, repeatable: every model is scored on the same masks, made "
                        "with the first one's tokenizer; a model with another tokenizer, or one given twice, is "
                        "refused (default: the config's model, minilm)")
    p.add_argument("--probes", metavar="FILE",
                   help="cloze TSV (a sentence with one [MASK], a tab, accepted answers separated by |; # comments): "
                        "adds top-1 and top-5 cloze accuracy, e.g. benchmarks/cloze_news.tsv")
    p.add_argument("--label-column", metavar="COLUMN",
                   help="adds a linear probe: 5-fold cross-validated logistic regression on mean-pooled features of "
                        "the held-out documents (at most 1,000) against this column (bbc-news: label, its topic)")
    add_config_flags(p, [f for f in EVALUATE_FIELDS if f != "model"])
    p.set_defaults(func=run)


def run(args) -> int:
    from ..eval.compare import format_table, run_comparison

    from ..run.ownership import recover_for_reading

    recover_run_folder(args.config)
    file = read_config_file(args.config) if args.config else None  # read once
    run_folder = run_folder_of(args.config, file) if file is not None else None
    options = config_layer(file, args.config) if file is not None else {}
    cfg = config_from_args(args, only=EVALUATE_FIELDS, file=file)
    models = getattr(args, "models", None)  # --model, repeatable; else the run's own model, else the config's
    for folder in models or []:  # a run an interrupted --overwrite set aside goes back first
        if Path(folder).is_dir():
            recover_for_reading(folder, say=lambda m: print(m, file=sys.stderr))
    if not models and run_folder is not None and has_model(run_folder):
        own = str(run_folder)
        print(f"note: scoring the run's own model in {own} (trained from {cfg.model}) on its evaluation set; "
              f"--model {cfg.model} scores the base", file=sys.stderr)
        models = [own]
        if options.get("streaming"):
            print("note: that run streamed and evaluated on the first documents of its stream; evaluate reads the "
                  "text whole and draws its evaluation examples with --seed, so its numbers are not the run's",
                  file=sys.stderr)
    elif not models and run_folder is not None:  # its run has not saved a model: scoring the base would mislead
        raise ConfigError(f"{run_folder} holds no finished model yet (no results.json): let the run finish or resume "
                          f"it (mlmtune train --config {args.config} --resume), or give --model {cfg.model} to score "
                          "the base model")
    models = models or [cfg.model]
    cfg = cfg.replace(model=models[0])  # a run.json's own paths were read where the run started (config.run_paths)
    # With --eval-data, --data is read only when it was given: its text is then dropped from the
    # evaluation set as train drops it; the default corpus is not read for nothing.
    data_given = "data" in vars(args) or "data" in options
    rows = run_comparison(cfg, models, probes=args.probes, label_column=args.label_column,
                          say=lambda m: print(m, file=sys.stderr), read_train=data_given or not cfg.eval_data)
    if os.environ.get("RANK", "0") != "0":
        return 0
    if args.json:  # one object per model, one per line
        for row in rows:
            print(json.dumps(row.as_dict()))
    else:
        print(format_table(rows))
    return 0


def has_model(folder: Path) -> bool:
    """The run in `folder` saved its model (config.json and results.json, written last)."""
    return (folder / "config.json").is_file() and (folder / "results.json").is_file()
