"""Flags from the config dataclasses, and the argument types the commands share.

Every config field is one flag (`chunk_size` -> `--chunk-size`), so a flag, a YAML key and a run.json
entry are the same thing; argparse's own errors are one line and exit 2 (`Parser`)."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from ..config import FIELDS, GROUPS, _hint, build_config, config_layer, load_config_file


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


def config_from_args(args: argparse.Namespace, only: list[str] | None = None, *, file: dict | None = None):
    """Defaults <- --config file <- flags. `file`: the --config file's mapping when the caller read it already."""
    layers = []
    if getattr(args, "config", None):
        recover_run_folder(args.config)
        loaded = config_layer(file, args.config) if file is not None else load_config_file(args.config)
        if only is not None:  # evaluate reads a training config's relevant part; a typo still fails
            loaded = {k: v for k, v in loaded.items() if k in only or k not in FIELDS}
        layers.append(loaded)
    layers.append({k: v for k, v in vars(args).items() if k in FIELDS})
    return build_config(*layers)


def recover_run_folder(config: str | None) -> None:
    """`--config RUN/run.json`: a run that an interrupted --overwrite set aside in RUN (run.json included) is
    put back before the file is read, when no process holds RUN (run/ownership.recover_for_reading)."""
    if config and Path(config).name == "run.json" and Path(config).parent.is_dir():
        from ..run.ownership import recover_for_reading

        recover_for_reading(Path(config).parent, say=lambda m: print(m, file=sys.stderr))


def recover_model_folders(*models: str | None) -> None:
    """predict and serve of a run's folder: a run an interrupted --overwrite set aside there goes back first."""
    from ..run.ownership import recover_for_reading

    for model in models:
        if model and Path(model).is_dir():
            recover_for_reading(model, say=lambda m: print(m, file=sys.stderr))


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
