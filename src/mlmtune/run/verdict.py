"""What a run's curve says: still improving (and the command that trains further), converged, or rising.

The curve is the eval perplexity at each evaluation of metrics.jsonl, on the same masks throughout:
the curve's subset (`subset_perplexity`, training/evaluations.py; a run of an older mlmtune: the whole
set's `perplexity`). A run that grew its head starts its curve at the warm start, never at the random
head (which sits near the vocabulary size and would make any run look like progress).

The verdict compares the end of the curve with its middle, the second half of the run:

- rising: the last point is above the curve's lowest by more than RISING (2%): held-out perplexity went
  up while training went on (overfitting, or a learning rate too high);
- improving fast: it fell by FAST (10%) or more over the second half: train further, and the command
  that does (--resume with twice the plan: --max-time, --max-steps or --epochs);
- improving slowly: it fell by FLAT (2%) to FAST: training further buys a little (the same command);
- converged: it fell by less than FLAT: more of the same training gains little on this data.

The learning rate decays to 0 at the end of the plan, which flattens the last steps of any run; the
second half is long enough that a run still learning shows it anyway.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..config import parse_duration
from .files import read_json
from .formats import fmt
from .metrics_log import read_metrics

RISING, FAST, FLAT = 0.02, 0.10, 0.02
MIN_POINTS = 3  # the start, a middle and the end


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def curve_value(record: dict, key: str) -> float | None:
    """The curve's figure of an eval record: the subset's, else (an older run) the whole set's."""
    value = _number(record.get(f"subset_{key}"))
    return _number(record.get(key)) if value is None and f"subset_{key}" not in record else value


def grew_head(records: list[dict], run: dict | None = None) -> bool:
    """The run grew an MLM head (its step-0 evaluation is a random head's): a warm start was recorded,
    or run.json lists new parameters."""
    new = (run or {}).get("new_parameters")
    return any(r.get("type") == "warm_start" for r in records) or (isinstance(new, list) and bool(new))


def curve(records: list[dict], key: str, *, grown: bool, low: float = 0) -> list[tuple[int, float]]:
    """(step, value) of the evaluations in order: a grown head's curve starts at its warm start (step 0),
    without the random head's step-0 evaluation; values below `low` (or not numbers) are left out."""
    points = []
    for r in records:
        kind, step = r.get("type"), r.get("step")
        if kind not in ("eval", "warm_start") or isinstance(step, bool) or not isinstance(step, int):
            continue
        if kind == "warm_start" and step != 0 or grown and kind == "eval" and step == 0:
            continue
        value = curve_value(r, key)
        if value is not None and value >= low:
            points.append((step, value))
    # one point a step, the later record's (an interim evaluation that spent the rest of a budget is
    # followed by the final one at the same step); the warm start (step 0) first
    return sorted(dict(points).items())


@dataclass
class Verdict:
    kind: str  # "rising", "fast", "slow", "converged" or "unknown"
    text: str  # one or two sentences, plain text
    command: str | None = None  # trains further (fast and slow)

    def line(self) -> str:
        """The verdict as one line (train's last lines, the demo's summary)."""
        return self.text + (f": {self.command}" if self.command else "")


def on_subset(records: list[dict]) -> bool:
    """The curve's points score the subset of the eval set (a run of this mlmtune), not all of it."""
    return any(r.get("type") == "eval" and "subset_perplexity" in r for r in records)


def verdict(points: list[tuple[int, float]], config: dict, out: str | Path, *, subset: bool = False) -> Verdict:
    """The verdict of a perplexity curve (see the module's docstring); `config` is run.json's, `out`
    the run's folder as the command should name it; `subset`: the points score the curve's subset of the
    eval set, so the figures are not the whole set's final perplexity (say so)."""
    if len(points) < MIN_POINTS or points[-1][0] <= points[0][0]:
        return Verdict("unknown", f"Too few evaluations ({len(points)}) for a verdict on the curve: evaluate more "
                                  "often (--eval-every N) to see whether the run was still improving.")
    first_step, last_step = points[0][0], points[-1][0]
    end = points[-1][1]
    middle_step = first_step + (last_step - first_step) / 2
    middle = min(points[:-1], key=lambda p: (abs(p[0] - middle_step), p[0]))
    lowest = min(points[:-1], key=lambda p: p[1])
    if end > lowest[1] * (1 + RISING):
        return Verdict("rising", f"Rising: eval perplexity went up from {fmt(lowest[1])} at step {lowest[0]:,} (its "
                                 f"lowest) to {fmt(end)} at step {last_step:,}, while training went on. The model "
                                 "fits the training text at the cost of held-out text (overfitting), or the learning "
                                 "rate is too high: train less, lower --lr, or add text.")
    fell = (middle[1] - end) / middle[1]
    span = f"{fmt(middle[1])} at step {middle[0]:,} to {fmt(end)} at step {last_step:,}" + \
        (", on the curve's subset of the eval set" if subset else "")
    if fell >= FAST:
        return Verdict("fast", f"Still improving fast: eval perplexity fell {fell:.0%} over the second half of the run "
                               f"({span}). Train further", further(config, out))
    if fell >= FLAT:
        return Verdict("slow", f"Still improving, slowly: eval perplexity fell {fell:.0%} over the second half of the "
                               f"run ({span}); training further buys a little", further(config, out))
    return Verdict("converged", f"Converged on this data: eval perplexity changed by less than {FLAT:.0%} over the "
                                f"second half of the run ({span}). More of the same training gains little; more text "
                                "or a larger model would.")


def further(config: dict, out: str | Path) -> str:
    """The command that trains the run in `out` on to twice its plan: a budget by time, steps or epochs
    (the plan it was made with; README: Training further)."""
    words = ["mlmtune", "train", "--config", str(Path(out) / "run.json"), "--resume"]
    steps, budget, epochs = (config.get(k) for k in ("max_steps", "max_time", "epochs"))
    if isinstance(steps, int) and not isinstance(steps, bool):
        words += ["--max-steps", str(2 * steps)]
    if isinstance(budget, str):
        words += ["--max-time", twice(budget)]
    if not isinstance(steps, int) and not isinstance(budget, str):
        words += ["--epochs", str(2 * (epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else 3))]
    return shlex.join(words)


def twice(duration: str) -> str:
    """A --max-time doubled, in the unit that writes it whole: 270s -> 540s, 6m -> 12m, 1.5h -> 3h."""
    seconds = 2 * parse_duration(duration)
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def run_verdict(out: str | Path) -> Verdict:
    """The verdict of the run in folder `out`, from its run.json and metrics.jsonl."""
    run = read_json(Path(out) / "run.json")
    run = run if isinstance(run, dict) else {}
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    records = read_metrics(Path(out) / "metrics.jsonl")
    return records_verdict(records, config, out, grown=grew_head(records, run))


def records_verdict(records: list[dict], config: dict, out: str | Path, *, grown: bool) -> Verdict:
    """The verdict of the perplexity curve in a run's metrics records (the report's and run_verdict's)."""
    return verdict(curve(records, "perplexity", grown=grown, low=1), config, out, subset=on_subset(records))
