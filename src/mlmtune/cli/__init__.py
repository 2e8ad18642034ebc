"""The command line: one module per command, each `add_parser(sub)` and `run(args) -> exit code`.

A command parses its flags into a config (cli/args.py), makes one library call, and prints. Every
MlmtuneError becomes one `error: ...` line and its exit code (2 for bad input); argparse's own errors
are one line too. The library stages are imported inside `run`, so `--help`, `--version` and a
mistyped flag answer without loading torch.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import MlmtuneError
from ..version import __version__
from . import evaluate, predict, push, report, serve, train, vocab
from .args import Parser

COMMANDS = (train, evaluate, predict, vocab, serve, report, push)

DESCRIPTION = """\
Adapt a BERT-style masked language model (BERT, RoBERTa, MiniLM, ...) to your own text, see how much
better it got, and fill in blanks with it. `train` prepares and masks your text, trains, measures
perplexity before and after on fixed masks, and saves a model transformers' fill-mask pipeline loads."""

EPILOG = """\
examples:
  mlmtune train --model bert-base-uncased --data notes.txt --eval-data held_out.txt --output-dir runs/notes
  mlmtune train --config runs/notes/run.json --resume --max-steps 2000     train further
  mlmtune evaluate --config runs/notes/run.json                             score the run's own model
  mlmtune predict --model runs/notes --compare bert-base-uncased "The [MASK] is happy."
  mlmtune serve --model runs/notes --compare bert-base-uncased
`mlmtune COMMAND --help` lists a command's options. The train flags most runs need: --model, --data,
--eval-data, --output-dir, --epochs, --max-steps, --max-time, --batch-size, --lr, --chunk-size,
--line-by-line, --resume, --overwrite. The Trainer's and run_mlm.py's names are understood too
(--learning_rate, --per_device_train_batch_size, --num_train_epochs, --output_dir, --model_name_or_path,
--train_file, --resume_from_checkpoint ...): `mlmtune train --print-config` shows what they set."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mlmtune", description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mlmtune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    parser.commands = sub.choices  # name -> its parser: an unknown flag is answered by the command's own
    return parser


def quiet_progress_when_piped() -> None:
    """datasets' progress bars (reading a table, tokenizing) are for a terminal. Piped into a log
    they are noise, and they would turn the one `error:` line of bad input into several."""
    if sys.stderr.isatty() or os.environ.get("HF_DATASETS_DISABLE_PROGRESS_BARS") is not None:
        return
    if "datasets" in sys.modules:
        from datasets.utils import disable_progress_bars

        disable_progress_bars()
    else:
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"


def main(argv: list[str] | None = None) -> int:
    quiet_progress_when_piped()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.commands.get(getattr(args, "command", None), parser).unknown(extra)
    try:
        return args.func(args)
    except MlmtuneError as exc:
        if not getattr(exc, "quiet", False):  # a refusal every process of a job reaches: said once
            print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mlmtune predict ... | head`
        return 0
