"""Flags from the config dataclasses, and the argument types the commands share.

Every config field is one flag (`chunk_size` -> `--chunk-size`), so a flag, a YAML key and a run.json
entry are the same thing; argparse's own errors are one line and exit 2 (`Parser`)."""

from __future__ import annotations

import argparse
import difflib
import math
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from ..config import ALIASES, GROUPS, NOT_ALIASES, _hint, build_config, canonical_name, config_layer, load_config_file


class Parser(argparse.ArgumentParser):
    """One-line errors; no prefix abbreviations: `--batch 8` is an unknown flag, not --batch-size (an
    abbreviation that works today silently means another flag once a longer one is added)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # one line, exit 2, no usage dump
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")

    def unknown(self, extra: list[str]):
        """Arguments no flag of this command takes, with the flag each probably meant."""
        shown = [o for a in self._actions if a.help != argparse.SUPPRESS for o in a.option_strings if o[:2] == "--"]
        guesses = []
        for word in extra:
            name = word.split("=", 1)[0]
            if name.startswith("--"):
                flat = name.replace("_", "-")
                every = list(self._option_string_actions)  # the hidden Trainer names too
                close = ([o for o in shown if o.startswith(flat)] or [o for o in every if o.startswith(name)]
                         or difflib.get_close_matches(flat, shown, n=1) or difflib.get_close_matches(name, every, n=1))
                guesses += close[:1]
        hint = f" (did you mean {' or '.join(dict.fromkeys(guesses))}?)" if guesses else ""
        self.error(f"unrecognized arguments: {' '.join(extra)}{hint}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, only: list[str] | None = None,
                     helps: dict[str, str] | None = None) -> None:
    """One flag per config field (all default to 'not given', so the config file's value stands).
    `helps`: a command's own text for a flag whose config help speaks of options it lacks."""
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
            text = (helps or {}).get(f.name, f.metadata["help"])
            help_text = text if "(default:" in text else f"{text} (default: {shown})"
            kwargs = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
            if hint is bool:
                g.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, **kwargs)
            elif "list" in str(hint):
                g.add_argument(_flag(f.name), action="append", metavar=f.metadata.get("metavar", "VALUE"), **kwargs)
            else:
                g.add_argument(_flag(f.name), choices=f.metadata.get("choices"),
                               metavar=None if f.metadata.get("choices") else f.metadata.get("metavar", f.name.upper()),
                               **kwargs)
            add_other_spellings(g, f.name, hint)
    if only is None:  # train: the run_mlm names that mean no one option explain themselves
        for name in NOT_ALIASES:
            parser.add_argument(*_spellings(name), dest=name, nargs="?", const=True, default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS)


def _spellings(name: str) -> list[str]:
    return list(dict.fromkeys(["--" + name, _flag(name)]))


def add_other_spellings(group, field: str, hint) -> None:
    """Hidden flags for `field`: its name with `_` (--chunk_size, as HfArgumentParser takes it) and the
    Trainer / run_mlm names of config.ALIASES, each stored under the alias (config.canonical_layer
    translates it, and refuses a field set under two names). A boolean takes the Trainer's forms:
    `--line_by_line`, `--line_by_line true`."""

    def add(names: list[str], dest: str) -> None:
        names = [n for n in names if n not in group._option_string_actions]
        if not names:
            return
        kwargs = {"dest": dest, "default": argparse.SUPPRESS, "help": argparse.SUPPRESS}
        if hint is bool:
            group.add_argument(*names, nargs="?", const=True, metavar="BOOL", **kwargs)
        elif "list" in str(hint):
            group.add_argument(*names, action="append", **kwargs)
        else:
            group.add_argument(*names, **kwargs)

    add(["--" + field], field)
    for alias, target in ALIASES.items():
        if target == field:
            add(_spellings(alias), alias)


def config_from_args(args: argparse.Namespace, only: list[str] | None = None, *, file: dict | None = None,
                     path: str | Path | None = None):
    """Defaults <- --config file <- flags. `file`: the config file's mapping when the caller read it already,
    from `path` (else --config; evaluate --model OUT reads OUT/run.json without --config)."""
    layers = []
    path = path or getattr(args, "config", None)
    if file is not None or path:
        recover_run_folder(path)
        loaded = config_layer(file, path) if file is not None else load_config_file(path)
        if only is not None:  # evaluate reads a training config's relevant part; a typo still fails
            loaded = {k: v for k, v in loaded.items()
                      if not isinstance(k, str) or canonical_name(k) in only or canonical_name(k) is None}
        layers.append(loaded)
    layers.append({k: v for k, v in vars(args).items() if canonical_name(k) is not None or k in NOT_ALIASES})
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
