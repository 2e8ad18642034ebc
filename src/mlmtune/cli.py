"""The command line: subcommands -> config objects -> library calls.

Flags are generated from the config dataclasses (config.py), so a flag, a YAML key and a run.json
entry are the same thing. Every MlmtuneError becomes one `error: ...` line and its exit code (2
for bad input); argparse's own errors are reduced to one line too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from .config import GROUPS, build_config, load_config_file, to_yaml, validate, _hint
from .errors import ConfigError, InputError, MlmtuneError


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, only: list[str] | None = None) -> None:
    """One flag per config field (all default to 'not given', so the config file's value stands)."""
    for group, cls in GROUPS.items():
        chosen = [f for f in fields(cls) if only is None or f.name in only]
        if not chosen:
            continue
        g = parser.add_argument_group(group)
        for f in chosen:
            hint = _hint(f.name)
            default = f.default if f.default is not MISSING else f.default_factory()
            shown = ", ".join(default) if isinstance(default, list) else default
            if shown is None or shown == "":
                shown = "none"
            # a help text that says its default in words keeps those words, and gets no second one
            help_text = f.metadata["help"] if "(default:" in f.metadata["help"] else f"{f.metadata['help']} (default: {shown})"
            kwargs = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
            if hint is bool:
                g.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, **kwargs)
            elif "list" in str(hint):
                g.add_argument(_flag(f.name), action="append", metavar=f.metadata.get("metavar", "VALUE"), **kwargs)
            else:
                g.add_argument(_flag(f.name), choices=f.metadata.get("choices"),
                               metavar=None if f.metadata.get("choices") else f.metadata.get("metavar", f.name.upper()),
                               **kwargs)


def config_from_args(args: argparse.Namespace, only: list[str] | None = None):
    """Defaults <- --config file <- flags."""
    from .config import FIELDS

    layers = []
    if getattr(args, "config", None):
        loaded = load_config_file(args.config)
        if only is not None:  # evaluate reads a training config's relevant part; a typo still fails
            loaded = {k: v for k, v in loaded.items() if k in only or k not in FIELDS}
        layers.append(loaded)
    layers.append({k: v for k, v in vars(args).items() if k in FIELDS})
    return build_config(*layers)


# --- train -------------------------------------------------------------------------------------

def cmd_train(args) -> int:
    cfg = config_from_args(args)
    validate(cfg)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    from .train import fit

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


# --- evaluate ----------------------------------------------------------------------------------

def run_folder_model(config_path: str | None) -> str | None:
    """The output folder of a run, when `config_path` is that run's run.json and the folder holds
    its saved model (config.json and results.json, written last): what `evaluate --config` scores."""
    from pathlib import Path

    if not config_path:
        return None
    path = Path(config_path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(record, dict) and "config" in record and "versions" in record):
        return None
    folder = path.parent
    return str(folder) if (folder / "config.json").is_file() and (folder / "results.json").is_file() else None


def run_relative_paths(args, cfg) -> dict:
    """A run.json's relative paths (--data news) were relative to where the run was started, not to
    where evaluate runs: read from elsewhere, they named nothing, or another folder of that name (a
    silently different evaluation set). Where the run's folder shows where it started (run.json in
    OUTPUT, with OUTPUT relative), the run's paths that exist there are used; flags are as given."""
    from .outputs import is_run

    if not args.config or Path(args.config).name != "run.json" or not is_run(Path(args.config).parent):
        return {}
    output_dir = load_config_file(args.config).get("output_dir")
    if not isinstance(output_dir, str) or not output_dir or os.path.isabs(output_dir):
        return {}
    parts, folder = Path(os.path.normpath(output_dir)).parts, Path(args.config).resolve().parent.parts
    if ".." in parts or folder[len(folder) - len(parts):] != parts:
        return {}
    started = Path(*folder[:len(folder) - len(parts)])

    def rebased(value: str) -> str:
        return str(started / value) if not os.path.isabs(value) and (started / value).exists() else value

    changes = {}
    for name in ("data", "eval_data"):
        if name not in vars(args) and getattr(cfg, name):
            changes[name] = [rebased(v) for v in getattr(cfg, name)]
    if "tokenizer" not in vars(args) and cfg.tokenizer:
        changes["tokenizer"] = rebased(cfg.tokenizer)
    return changes


def cmd_evaluate(args) -> int:
    from .evaluate import EVALUATE_FIELDS, format_table, run_comparison
    from .outputs import is_run

    cfg = config_from_args(args, only=EVALUATE_FIELDS)
    models = getattr(args, "models", None)  # --model, repeatable; else the run's own model, else the config's
    if not models and (own := run_folder_model(getattr(args, "config", None))):
        print(f"note: scoring the run's own model in {own} (trained from {cfg.model}) on its evaluation set; "
              f"--model {cfg.model} scores the base", file=sys.stderr)
        models = [own]
        if load_config_file(args.config).get("streaming"):
            print("note: that run streamed and evaluated on the first documents of its stream; evaluate reads the "
                  "text whole and draws its evaluation examples with --seed, so its numbers are not the run's",
                  file=sys.stderr)
    elif not models and args.config and Path(args.config).name == "run.json" and is_run(Path(args.config).parent):
        folder = Path(args.config).parent  # its run has not saved a model: scoring the base instead would mislead
        raise ConfigError(f"{folder} holds no finished model yet (no results.json): let the run finish or resume it "
                          f"(mlmtune train --config {args.config} --resume), or give --model {cfg.model} to score "
                          "the base model")
    models = models or [cfg.model]
    cfg = cfg.replace(model=models[0], **run_relative_paths(args, cfg))
    # With --eval-data, --data is read only when it was given: its text is then dropped from the
    # evaluation set as train drops it; the default corpus is not read for nothing.
    data_given = "data" in vars(args) or (bool(args.config) and "data" in load_config_file(args.config))
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


# --- predict -----------------------------------------------------------------------------------

def read_texts(texts: list[str]) -> list[str]:
    """The TEXT arguments, or stdin's non-blank lines for `-`; text that is not UTF-8 is an InputError."""
    from .predict import require_utf8

    named = [(f"TEXT {n}", text) for n, text in enumerate(texts, 1)]
    if texts == ["-"]:
        try:
            named = [(f"stdin line {n}", line.rstrip("\n")) for n, line in enumerate(sys.stdin, 1) if line.strip()]
        except UnicodeDecodeError as exc:
            raise InputError(f"stdin is not valid {exc.encoding.upper()} (byte 0x{exc.object[exc.start]:02x}): "
                             "pipe in UTF-8 text, e.g. iconv -f latin1 -t utf-8 FILE | mlmtune predict ... -") from None
    if not named:
        raise InputError("no text given: pass sentences with [MASK], or - to read them from stdin")
    for name, text in named:  # argv bytes that are not UTF-8 arrive as surrogate escapes, so may stdin's
        require_utf8(text, name)
    return [text for _, text in named]


def format_columns(text: str, columns: list[tuple[str, list[list]]]) -> str:
    """A text and, per mask, the predictions of each model side by side."""
    lines = [text]
    width = 28
    n_masks = len(columns[0][1])
    for m in range(n_masks):
        lines.append(f"  mask {m + 1}/{n_masks}:  " + "".join(f"{name[:width]:<{width}}" for name, _ in columns).rstrip())
        for rank in range(len(columns[0][1][m])):
            cells = []
            for _, masks in columns:
                p = masks[m][rank]
                cells.append(f"{p.token[:16]:<16} {p.score:>7.2%}".ljust(width))
            lines.append(f"  {rank + 1:>9}   " + "".join(cells).rstrip())
    return "\n".join(lines)


def cmd_predict(args) -> int:
    from .predict import GENERIC_MASK, FillMask

    texts = read_texts(args.texts)
    models = [FillMask(args.model)] + ([FillMask(args.compare)] if args.compare else [])
    for m in models:
        if m.grown_head:
            print(f"note: {m.name} has no MLM head; its predictions come from an untrained head", file=sys.stderr)
    asked = texts  # any model's own mask (<mask>) is a mask for each model, as in serve: [MASK] is understood by all
    for token in {m.tokenizer.mask_token for m in models} - {GENERIC_MASK}:
        asked = [t.replace(token, GENERIC_MASK) for t in asked]
    results = [m.predict(asked, top_k=args.top_k, sequences=args.json) for m in models]
    for i, text in enumerate(texts):
        if args.json:
            record = {"text": text, "masks": [[p.as_dict() for p in mask] for mask in results[0][i]]}
            if args.compare:
                record["compare"] = {"model": args.compare,
                                     "masks": [[p.as_dict() for p in mask] for mask in results[1][i]]}
            print(json.dumps(record))
        else:  # the base (--compare) on the left, so a row reads before -> after
            columns = [(m.name, r[i]) for m, r in zip(models, results)]
            print(format_columns(text, columns[::-1]))
    return 0


# --- vocab -------------------------------------------------------------------------------------

VOCAB_FIELDS = ["data", "data_split", "text_column", "encoding", "model", "tokenizer", "min_count"]


def cmd_vocab(args) -> int:
    from .vocab import analyse

    cfg = config_from_args(args, only=VOCAB_FIELDS)
    if not cfg.data:
        raise InputError("--data needs at least one source")
    report = analyse(cfg.model, cfg.data, tokenizer=cfg.tokenizer, top=args.top, min_count=cfg.min_count,
                     text_column=cfg.text_column, encoding=cfg.encoding, split=cfg.data_split)
    print(json.dumps(report.as_dict()) if args.json else report.text(cfg.min_count))
    return 0


# --- serve and report (issue: see it) -----------------------------------------------------------

def cmd_serve(args) -> int:
    from .serve import run_server

    return run_server(args.model, compare=args.compare, host=args.host, port=args.port,
                      timeout_keep_alive=args.timeout_keep_alive, timeout_request=args.timeout_request,
                      max_connections=args.max_connections)


def cmd_report(args) -> int:
    from .report import write_report

    path = write_report(args.output_dir, base_model=args.base_model, probes=args.probe or None, cloze=args.probes,
                        say=lambda m: print(m, file=sys.stderr))
    print(path)
    from .card import write_card

    if (args.output_dir and (Path(args.output_dir) / "results.json").is_file()):  # a finished run: its card too
        write_card(args.output_dir, say=lambda m: print(m, file=sys.stderr))
    return 0


def cmd_push(args) -> int:
    from .hub import push

    push(args.output_dir, args.repo, private=args.private, checkpoints=args.checkpoints, say=print)
    return 0


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: give one such as 5") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1: give a whole number of at least 1")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:  # the OS would take 99999 modulo 65536 and -1 as a lookup failure
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give a number from 0 to 65535 (0 picks a free one)")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: give a number of seconds above 0, e.g. 10")
    return value


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
`mlmtune COMMAND --help` lists a command's options."""


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = Parser(prog="mlmtune", description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mlmtune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("train", help="adapt a masked LM to your text; writes the model, metrics, run.json")
    p.add_argument("--config", help="YAML or run.json file; flags override its values")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    add_config_flags(p)
    p.set_defaults(func=cmd_train)

    from .evaluate import EVALUATE_FIELDS

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
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="top-k fillers for each [MASK] in TEXT")
    p.add_argument("--model", required=True, help="model folder or Hugging Face id (minilm: the offline encoder)")
    p.add_argument("--compare", metavar="BASE", help="a second model shown beside the first, e.g. the base")
    p.add_argument("--top-k", type=positive_int, default=5, help="predictions per mask (default: 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per text")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="sentences with [MASK]; - reads one per line from stdin")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("vocab", help="how the tokenizer cuts a corpus: pieces per word, unknown tokens, the most "
                                     "frequent words it cuts (candidates for train --add-tokens)")
    p.add_argument("--top", type=positive_int, default=50, metavar="N", help="cut words to list (default: 50)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the text")
    add_config_flags(p, VOCAB_FIELDS)
    p.set_defaults(func=cmd_vocab)

    p = sub.add_parser("serve", help="fill-mask web page and JSON API")
    p.add_argument("--model", required=True, help="model folder or Hugging Face id")
    p.add_argument("--compare", metavar="BASE", help="a second model shown beside it (e.g. the base model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=port_number, default=8000, help="port, 0 to 65535; 0 picks a free one (default: 8000)")
    p.add_argument("--timeout-request", type=seconds, default=10, metavar="SECONDS",
                   help="close a connection whose request (headers and body) is not all in after this long (default: 10)")
    p.add_argument("--timeout-keep-alive", type=seconds, default=5, metavar="SECONDS",
                   help="close an idle connection between requests after this long (default: 5)")
    p.add_argument("--max-connections", type=positive_int, default=256, metavar="N",
                   help="connections served at once; a request beyond them gets 503 (default: 256)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("report", help="write OUTPUT/report.html: curves, config, results, before/after")
    p.add_argument("output_dir", metavar="OUTPUT", help="a folder written by mlmtune train")
    p.add_argument("--base-model", help="model to compare against (default: the run's --model)")
    p.add_argument("--probe", action="append", metavar="TEXT", help="sentence with [MASK], repeatable")
    p.add_argument("--probes", metavar="FILE", help="cloze TSV (as for mlmtune evaluate --probes): adds the cloze "
                                                    "accuracy of the base and the tuned model to the side by side")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("push", help="upload a finished run (model, tokenizer, model card, report) to the Hugging Face Hub")
    p.add_argument("output_dir", metavar="OUTPUT", help="a folder written by mlmtune train")
    p.add_argument("repo", metavar="REPO", help="Hub model repository, owner/name (created if missing)")
    p.add_argument("--private", action="store_true", default=None,
                   help="create the repository as private (an existing one keeps its visibility)")
    p.add_argument("--checkpoints", action="store_true", help="also upload checkpoints/ (full training states)")
    p.set_defaults(func=cmd_push)
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
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MlmtuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mlmtune predict ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
