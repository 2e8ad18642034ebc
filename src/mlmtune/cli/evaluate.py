"""`mlmtune evaluate`: several models on the same fixed masks; a run's run.json scores its own model."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..config import EVALUATE_FIELDS, canonical_name, config_layer, is_run_record, read_config_file, run_folder_of
from ..errors import ConfigError
from ..run.files import read_json
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
    p.add_argument("--model_name_or_path", "--model-name-or-path", dest="models", action="append",
                   help=argparse.SUPPRESS)  # the Trainer's name for --model
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

    models = getattr(args, "models", None)  # --model, repeatable; else the run's own model, else the config's
    for folder in models or []:  # a run an interrupted --overwrite set aside goes back first
        if Path(folder).is_dir():
            recover_for_reading(folder, say=lambda m: print(m, file=sys.stderr))
    config = args.config
    run_given = None if config else first_run(models or [])
    if run_given is not None:  # --model OUT: the run's own evaluation set, as --config OUT/run.json gives it
        config = str(run_given / "run.json")
    recover_run_folder(config)
    file = read_config_file(config) if config else None  # read once
    run_folder = run_folder_of(config, file) if file is not None else None
    options = config_layer(file, config) if file is not None else {}
    cfg = config_from_args(args, only=EVALUATE_FIELDS, file=file, path=config)
    if run_given is not None:
        given = sorted(f"--{k.replace('_', '-')}" for k in vars(args) if canonical_name(k) in EVALUATE_FIELDS)
        print(f"note: scoring on the evaluation set of the run in {run_given} (its data, split, eval size "
              f"{cfg.eval_size}, masks and seed, from its run.json)"
              + (f", with {', '.join(given)} as given" if given else "") + "; --data or --config choose another",
              file=sys.stderr)
    if not models and run_folder is not None and has_model(run_folder):
        own = str(run_folder)
        print(f"note: scoring the run's own model in {own} (trained from {cfg.model}) on its evaluation set; "
              f"--model {cfg.model} scores the base", file=sys.stderr)
        models = [own]
    if run_folder is not None and options.get("streaming") and (run_given is not None or models == [str(run_folder)]):
        print("note: that run streamed and evaluated on the first documents of its stream; evaluate reads the "
              "text whole and draws its evaluation examples with --seed, so its numbers are not the run's",
              file=sys.stderr)
    elif not models and run_folder is not None:  # its run has not saved a model: scoring the base would mislead
        raise ConfigError(f"{run_folder} holds no finished model yet (no results.json): let the run finish or resume "
                          f"it (mlmtune train --config {config} --resume), or give --model {cfg.model} to score "
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


def first_run(models: list[str]) -> Path | None:
    """The first --model that is the folder of a finished mlmtune run (run.json, and its saved model)."""
    for model in models:
        folder = Path(os.path.expanduser(model))
        if folder.is_dir() and is_run_record(read_json(folder / "run.json")) and has_model(folder):
            return folder
    return None


def has_model(folder: Path) -> bool:
    """The run in `folder` saved its model (config.json and results.json, written last)."""
    return (folder / "config.json").is_file() and (folder / "results.json").is_file()
