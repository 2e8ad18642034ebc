"""What the Python API returns: results that are plain dicts (JSON as they are, `r["perplexity"]`, every
caller of the dicts before) with attribute access (`r.perplexity`), a one-line repr that says what
they measured, and an HTML table for notebooks (`_repr_html_`).

- ModelResult: one model's evaluation, named as `mlmtune evaluate --json` names it (`perplexity`,
  `accuracy`, `masked_tokens`, `loss`, `grown_head`, the masked-word measure `word_bits_per_char`,
  `word_accuracy`, `masked_words`, and `cloze_*` / `probe_*` on request).
- Comparison: a list of ModelResults on the same masks; its repr is `mlmtune evaluate`'s table.
- TrainResult (training/results.py) is results.json's figures.
"""

from __future__ import annotations

import html
import math
from typing import Any


def _shown(key: str, value: Any) -> str:
    """A figure as a reader wants it: 65.20, 32.0%, 5,685."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    if isinstance(value, float) and ("accuracy" in key or key.endswith("_top1") or key.endswith("_top5")):
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return ", ".join(map(str, value)) if len(value) <= 8 else f"{len(value)} items"
    return str(value)


class Record(dict):
    """A dict with attribute access, a repr of its headline figures and an HTML table of all of them."""

    headline: tuple[str, ...] = ()  # the keys the repr shows, in order (the rest: the HTML table, the dict)

    def __getattr__(self, name: str) -> Any:  # only for names that are not attributes of the object itself
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no {name!r}; its keys: {', '.join(self)}") from None

    def __dir__(self):
        return [*super().__dir__(), *self]

    def as_dict(self) -> dict:
        """A plain dict (what json.dumps and the command line print)."""
        return dict(self)

    def summary(self) -> str:
        return ", ".join(f"{k}={_shown(k, self[k])}" if not isinstance(self[k], str) else f"{k}={self[k]!r}"
                         for k in self.headline if k in self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.summary()})"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                       f"<td style='text-align:right'>{html.escape(_shown(k, v))}</td></tr>" for k, v in self.items())
        return f"<table><caption>{html.escape(type(self).__name__)}</caption>{rows}</table>"


class ModelResult(Record):
    """One model's scores on the fixed masks (`mlmtune.evaluate`, a row of `mlmtune.compare`)."""

    headline = ("model", "perplexity", "accuracy", "masked_tokens", "word_bits_per_char", "word_accuracy",
                "cloze_top1", "cloze_top5", "probe_accuracy", "grown_head")


class Comparison(list):
    """ModelResults on the same masks, in the order given; its repr is `mlmtune evaluate`'s table."""

    def __init__(self, rows: list[ModelResult], table: str = ""):
        super().__init__(rows)
        self.table = table

    def __repr__(self) -> str:
        return self.table or super().__repr__()

    def _repr_html_(self) -> str:
        keys = [k for k in ModelResult.headline if any(k in row for row in self)]
        head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
        body = "".join("<tr>" + "".join(f"<td style='text-align:{'left' if k == 'model' else 'right'}'>"
                                        f"{html.escape(_shown(k, row.get(k, '')) if k in row else '')}</td>"
                                        for k in keys) + "</tr>" for row in self)
        note = html.escape(self.table.split("\n", len(self) + 1)[-1]) if self.table else ""
        return f"<table><tr>{head}</tr>{body}</table>" + (f"<pre>{note}</pre>" if note else "")
