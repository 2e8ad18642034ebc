"""The run's evaluations: the fixed masks scored, printed, and recorded in metrics.jsonl.

Results before the output folder is the run's (the fresh head, the warm start) are kept and written
once it is (`attach`): phases before that write nothing. With --add-tokens every evaluation also
scores the masked words (eval/words.py), the measure that does not depend on the vocabulary.
"""

from __future__ import annotations

import time

from ..eval import words as wordeval
from ..eval.metrics import EvalResult, evaluate_batches
from ..model.device import unwrap
from ..run.files import finite_json
from ..run.metrics_log import MetricsLog
from .step import TrainState


class Evaluations:
    def __init__(self, accelerator, batches: list, *, steps_per_epoch: int, words: wordeval.WordSet | None = None,
                 report_to: str = "none", say=print):
        self.accelerator, self.batches, self.steps_per_epoch = accelerator, batches, steps_per_epoch
        self.words = words if words is not None and words.n_words else None
        self.report_to, self.say = report_to, say
        self.log: MetricsLog | None = None  # metrics.jsonl, once the folder is the run's
        self.pending: list[dict] = []  # records made before
        self.last: EvalResult | None = None  # the last "eval" result (not a baseline), and its step
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
                 log: bool = True) -> EvalResult:
        """Score the fixed evaluation masks at optimizer step `step`; `kind` names the record ("eval", or
        "warm_start" for the warm-started head before training); `log=False` prints without recording (a result logged already)."""
        accelerator = self.accelerator
        t0 = time.perf_counter()
        result = evaluate_batches(objective, self.batches, accelerator.device,
                                  reduce=lambda t: accelerator.reduce(t, "sum"))
        seconds = time.perf_counter() - t0
        state.eval_seconds += seconds
        epoch = step / self.steps_per_epoch if self.steps_per_epoch else 0.0
        record = {"type": kind, "step": step, "epoch": round(epoch, 4), **result.as_dict(),
                  "seconds": round(seconds, 3), "time": time.time()}
        if self.words is not None:
            scored = wordeval.score(unwrap(accelerator, objective).model, self.words, accelerator.device,
                                    accelerator.autocast)
            self.last_word = scored.record()
            record.update(self.last_word)
        if log:
            self.record(record)
        if self.report_to != "none" and self.log is not None:
            accelerator.log({"eval/perplexity": result.perplexity, "eval/accuracy": result.accuracy,
                             "eval/loss": result.loss}, step=step)
        words = (f"; masked words {record['word_bits_per_char']:.4f} bits/char, {record['word_accuracy']:.1%} exact"
                 if "word_bits_per_char" in record else "")
        self.say(f"eval {when}: perplexity {result.perplexity:,.2f}, accuracy {result.accuracy:.1%} "
                 f"on {result.masked_tokens:,} masked tokens{words}")
        if kind == "eval":
            self.last, self.last_step = result, step
        return result
