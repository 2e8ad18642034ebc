"""The run's evaluations: the fixed masks scored, printed, and recorded in metrics.jsonl.

Results before the output folder is the run's (the fresh head, the warm start) are kept and written
once it is (`attach`): phases before that write nothing. With --add-tokens every full evaluation also
scores the masked words (eval/words.py), the measure that does not depend on the vocabulary.

Two kinds of evaluation. A full one scores the whole evaluation set: before training, after the warm
start, and at the end (results.json, the report's side by side and `mlmtune evaluate` read those).
An interim one, while training (~8 times over the plan: training/budget.py), scores a fixed subset,
the first quarter of the evaluation batches (SUBSET_SHARE), so the curve costs a quarter of what full
evaluations would. Every record carries the subset's figures (`subset_perplexity`, `subset_loss`,
`subset_accuracy`, `subset_masked_tokens`; a full one computes them in the same pass, at no cost), so
the curve's points are all on the same masks; only full records carry `perplexity`, `loss`,
`accuracy` and `masked_tokens`.
"""

from __future__ import annotations

import math
import time

from ..eval import words as wordeval
from ..eval.metrics import EvalResult, evaluate_batches
from ..model.device import unwrap
from ..run.files import finite_json
from ..run.metrics_log import MetricsLog
from .step import TrainState

SUBSET_SHARE = 4  # interim evaluations score the first 1/SUBSET_SHARE of the evaluation batches


def subset_size(n_batches: int) -> int:
    """How many of a process's evaluation batches an interim evaluation scores (all of a small set)."""
    return min(n_batches, max(1, math.ceil(n_batches / SUBSET_SHARE)))


class Evaluations:
    def __init__(self, accelerator, batches: list, *, steps_per_epoch: int, words: wordeval.WordSet | None = None,
                 report_to: str = "none", say=print):
        self.accelerator, self.batches, self.steps_per_epoch = accelerator, batches, steps_per_epoch
        self.subset = subset_size(len(batches))  # the same on every process: eval_batches pads to equal counts
        self.words = words if words is not None and words.n_words else None
        self.report_to, self.say = report_to, say
        self.log: MetricsLog | None = None  # metrics.jsonl, once the folder is the run's
        self.pending: list[dict] = []  # records made before
        self.last: EvalResult | None = None  # the last full "eval" result (not a baseline), and its step
        self.last_step = -1
        self.last_word: dict | None = None  # the last masked-word measure

    def record(self, record: dict) -> None:
        self.pending.append(finite_json(record))
        if self.log is not None:
            for pending in self.pending:
                self.log.write(pending)
            self.pending = []

    def attach(self, log: MetricsLog) -> None:
        """The folder is the run's: write what was kept, and every record from now on."""
        self.log = log
        for record in self.pending:
            log.write(record)
        self.pending = []

    def __call__(self, objective, step: int, when: str, state: TrainState, *, kind: str = "eval",
                 log: bool = True, interim: bool = False) -> EvalResult:
        """Score the fixed evaluation masks at optimizer step `step`; `kind` names the record ("eval", or
        "warm_start" for the warm-started head before training); `log=False` prints without recording (a
        result logged already); `interim` scores the subset only. Returns the whole set's result (an
        interim evaluation: the subset's)."""
        accelerator = self.accelerator
        reduce = lambda t: accelerator.reduce(t, "sum")  # noqa: E731
        interim = interim and self.subset < len(self.batches)  # a small set is scored whole every time
        t0 = time.perf_counter()
        if interim:
            whole, subset = None, evaluate_batches(objective, self.batches[:self.subset], accelerator.device,
                                                   reduce=reduce)
        else:
            whole, subset = evaluate_batches(objective, self.batches, accelerator.device, reduce=reduce,
                                             subset=self.subset)
        seconds = time.perf_counter() - t0
        state.eval_seconds += seconds
        epoch = step / self.steps_per_epoch if self.steps_per_epoch else 0.0
        record = {"type": kind, "step": step, "epoch": round(epoch, 4), **(whole.as_dict() if whole else {}),
                  **{f"subset_{k}": v for k, v in subset.as_dict().items()}, "seconds": round(seconds, 3),
                  "time": time.time()}
        if self.words is not None and whole is not None:
            scored = wordeval.score(unwrap(accelerator, objective).model, self.words, accelerator.device,
                                    accelerator.autocast)
            self.last_word = scored.record()
            record.update(self.last_word)
        if log:
            self.record(record)
        if self.report_to != "none" and self.log is not None:
            shown = {"eval_subset/perplexity": subset.perplexity, "eval_subset/loss": subset.loss}
            if whole is not None:
                shown.update({"eval/perplexity": whole.perplexity, "eval/accuracy": whole.accuracy,
                              "eval/loss": whole.loss})
            accelerator.log(shown, step=step)
        shown = whole or subset
        words = (f"; masked words {record['word_bits_per_char']:.4f} bits/char, {record['word_accuracy']:.1%} exact"
                 if "word_bits_per_char" in record else "")
        part = " (the curve's subset: the first quarter of the evaluation set)" if interim else ""
        self.say(f"eval {when}: perplexity {shown.perplexity:,.2f}, accuracy {shown.accuracy:.1%} "
                 f"on {shown.masked_tokens:,} masked tokens{part}{words}")
        if kind == "eval" and whole is not None:
            self.last, self.last_step = whole, step
        return shown
