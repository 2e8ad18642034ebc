"""What `make demo` reached, in lines the README can quote: the CPU it ran on, perplexity and accuracy
from the fresh head to the tuned model, the steps and time, the evaluations and what they cost, the
tuned model's word for the demo's sentence, and the verdict with the command that trains further.

    python examples/demo_reached.py runs/demo
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mlmtune.model.fill_mask import FillMask
from mlmtune.run.formats import duration, fmt
from mlmtune.run.metrics_log import read_metrics
from mlmtune.run.verdict import run_verdict

SENTENCE = "Shares in the company [MASK] sharply after the report."


def cpu_kind(precision: str | None) -> str:
    """The CPU as `lscpu` names its kind: native bf16 (AVX512-BF16 or AMX) or not, and the cores used."""
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    kind = ("AVX512-BF16" if "avx512_bf16" in flags else "AMX" if "amx_bf16" in flags
            else "AVX2 only, no native bf16" if "avx2" in flags else "unknown flags")
    computed = {"bf16": "bf16", "no": "fp32"}.get(precision or "", precision or "?")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"CPU with {kind} ({computed}), {cores} cores"


def evaluations(records: list[dict]) -> str:
    """The evaluations made while training: how many, on what, and their seconds."""
    during = [r for r in records if r.get("type") == "eval" and (r.get("step") or 0) > 0]
    interim = [r for r in during if "perplexity" not in r]
    seconds = sum(r.get("seconds") or 0 for r in interim)
    final = sum(r.get("seconds") or 0 for r in during if "perplexity" in r)
    return (f"{len(interim)} interim evaluations on the curve's subset ({duration(seconds)}, counted in the budget) "
            f"and the final one on the whole set ({duration(final)})")


def main(out: str) -> int:
    folder = Path(out)
    results = json.loads((folder / "results.json").read_text())
    records = read_metrics(folder / "metrics.jsonl")
    word = FillMask(str(folder)).predict([SENTENCE], top_k=1)[0][0][0]
    print(f"demo reached, on a {cpu_kind(results.get('precision'))}: eval perplexity "
          f"{fmt(results['baseline_perplexity'])} (fresh head) -> {fmt(results['warm_start_perplexity'])} (warm start) "
          f"-> {fmt(results['eval_perplexity'])}, masked accuracy {results['eval_accuracy']:.1%}, "
          f"after {results['steps']:,} steps in {duration(results['train_seconds'])} of training; "
          f"{evaluations(records)}; \"{SENTENCE}\" -> {word.word} ({word.score:.1%})")
    print(f"verdict: {run_verdict(folder).line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/demo"))
