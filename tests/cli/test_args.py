"""The flags (cli/args.py): one per config field, each help saying its default once."""

from __future__ import annotations

import argparse

from mlmtune.cli import build_parser


def test_no_flag_shows_its_default_twice():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    seen = 0
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.help:
                assert action.help.count("(default:") <= 1, (name, action.option_strings, action.help)
                seen += 1
    assert seen > 60
    train = subparsers.choices["train"]
    eval_split = next(a for a in train._actions if "--eval-split" in a.option_strings)
    assert eval_split.help.endswith("(default: hold out documents)")
