"""TrainResult: what `mlmtune.train` returns, results.json's figures as a dict (every caller of the dict
before keeps working) with attribute access, a repr that tells the run's story in a line, and an HTML
table for notebooks (eval/results.py's Record)."""

from __future__ import annotations

from pathlib import Path

from ..eval.results import Record


class TrainResult(Record):
    headline = ("steps", "baseline_perplexity", "warm_start_perplexity", "eval_perplexity", "eval_accuracy",
                "train_seconds")

    def __init__(self, figures: dict, output_dir: str | Path | None = None):
        super().__init__(figures)
        self.output_dir = None if output_dir is None else str(output_dir)  # not a key: results.json has none

    def __repr__(self) -> str:
        where = f"{self.output_dir!r}: " if self.output_dir else ""
        return f"TrainResult({where}{self.summary()})"
