#!/usr/bin/env python
"""How long the command line takes to answer what needs no model: --help, --version, a command's
--help, a mistyped flag and --print-config (issue 20: each imported torch first, 7.8 s for --help on a
loaded machine). Each is a fresh `python -m mlmtune ...` process; the report gives the median of
--repeats runs beside that of a bare `python -c pass` (the interpreter's own start), and whether the
process imported torch. The goal is under 1 s on a quiet machine.

  python benchmarks/cli_startup.py --repeats 5 [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass": ["-c", "pass"],
    "mlmtune --help": ["-m", "mlmtune", "--help"],
    "mlmtune --version": ["-m", "mlmtune", "--version"],
    "mlmtune train --help": ["-m", "mlmtune", "train", "--help"],
    "mlmtune train --batch 8 (a typo)": ["-m", "mlmtune", "train", "--batch", "8"],
    "mlmtune train --print-config": ["-m", "mlmtune", "train", "--print-config"],
}
TORCH_CHECK = ("import atexit, runpy, sys\n"
               "atexit.register(lambda: sys.stderr.write('torch' if 'torch' in sys.modules else 'no torch'))\n"
               "runpy.run_module('mlmtune', run_name='__main__', alter_sys=True)\n")


def seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def imports_torch(args: list[str]) -> bool | None:
    if args[:2] != ["-m", "mlmtune"]:
        return None
    proc = subprocess.run([sys.executable, "-c", TORCH_CHECK, *args[2:]], capture_output=True, text=True)
    return proc.stderr.endswith("torch") and not proc.stderr.endswith("no torch")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for name, argv in CASES.items():
        times = [seconds(argv) for _ in range(args.repeats)]
        rows.append({"case": name, "median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
                     "imports_torch": imports_torch(argv)})
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            torch = "" if row["imports_torch"] is None else ("  imports torch" if row["imports_torch"] else "")
            print(f"{row['case']:<36} median {row['median_s']:.3f} s  min {row['min_s']:.3f} s{torch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
