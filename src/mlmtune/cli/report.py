"""`mlmtune report`: (re)write a run's report.html and its model card."""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write OUTPUT/report.html: curves, config, results, before/after")
    p.add_argument("output_dir", metavar="OUTPUT", help="a folder written by mlmtune train")
    p.add_argument("--base-model", help="model to compare against (default: the run's --model)")
    p.add_argument("--probe", action="append", metavar="TEXT", help="sentence with [MASK], repeatable")
    p.add_argument("--probes", metavar="FILE", help="cloze TSV (as for mlmtune evaluate --probes): adds the cloze "
                                                    "accuracy of the base and the tuned model to the side by side")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..run.card import write_card
    from ..run.ownership import run_folder_lock
    from ..run.report import write_report

    say = lambda m: print(m, file=sys.stderr)  # noqa: E731
    with run_folder_lock(args.output_dir, "report", say):  # the report and the card under one hold of the lock
        path = write_report(args.output_dir, base_model=args.base_model, probes=args.probe or None, cloze=args.probes,
                            say=say)
        print(path)
        if (args.output_dir and (Path(args.output_dir) / "results.json").is_file()):  # a finished run: its card too
            write_card(args.output_dir, say=say)
    return 0
