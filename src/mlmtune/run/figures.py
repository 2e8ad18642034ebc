"""A run's curves, drawn from metrics.jsonl: the training loss with the eval loss beside it, the eval
perplexity (each point labelled), the eval accuracy and the learning rate.

The report shows them as four figures of their own, each drawn at a phone's proportions with large
type, laid out two by two on a wide screen and one under another on a phone (a 2 x 2 image shrunk to a
phone's 358 px was unreadable). curves.png beside the report keeps the four in one image.

The eval panels plot the curve's points (run/verdict.curve): the same masks at every point, and for a
run that grew its head from the warm start on, never the random head, which would set the axis.
"""

from __future__ import annotations

import io
import math

from .formats import fmt
from .verdict import curve, curve_value, grew_head

PANELS = ("loss", "perplexity", "accuracy", "learning rate")
PANEL_SIZE = (4.8, 3.3)  # inches: shown ~530 px wide on a wide screen, ~360 px on a phone
PANEL_FONT = 12  # points: ~12 px on a phone's 360 px wide figure
PANEL_DPI = 200  # sharp on a phone's 2x or 3x screen

COLOURS = {"train": "#2563eb", "eval": "#db2777", "eval_text": "#831843", "accuracy": "#059669",
           "accuracy_text": "#065f46", "lr": "#7c3aed", "warm": "#f59e0b", "warm_text": "#92400e"}


def series(records: list[dict], kind: str, key: str, low: float) -> list[tuple[int, float]]:
    """(step, value) of the `kind` records whose `key` is a finite number >= low; a record without
    one (a hand edit, an eval whose perplexity was not finite) is left out of the curves."""
    return [(r["step"], v) for r in records if r.get("type") == kind and isinstance(v := r.get(key), (int, float))
            and not isinstance(v, bool) and math.isfinite(v) and v >= low]


def labelled(points: list[tuple[int, float]], most: int = 12) -> list[tuple[int, float]]:
    """The points to write a value beside: all of a few, else the first, the last and evenly between."""
    if len(points) <= most:
        return points
    step = (len(points) - 1) / (most - 1)
    return [points[round(i * step)] for i in range(most)]


class Curves:
    """What the four panels plot, read once from the records."""

    def __init__(self, records: list[dict], grown: bool | None = None):
        self.grown = grew_head(records) if grown is None else grown
        self.train = series(records, "train", "loss", 0)
        self.eval_loss = curve(records, "loss", grown=self.grown)
        self.perplexity = curve(records, "perplexity", grown=self.grown, low=1)  # exp(mean NLL) >= 1
        self.accuracy = curve(records, "accuracy", grown=self.grown)
        self.lr = series(records, "train", "lr", 0)
        warm = [r for r in records if r.get("type") == "warm_start" and r.get("step") == 0]
        value = curve_value(warm[0], "perplexity") if warm else None
        self.warm = [(0, value)] if value is not None and value >= 1 else []  # where a grown head's training began
        fresh = series(records, "eval", "perplexity", 1)
        self.fresh = fresh[0][1] if self.grown and fresh and fresh[0][0] == 0 else None


def draw_loss(ax, c: Curves, small: bool = False) -> None:
    ax.plot([s for s, _ in c.train], [v for _, v in c.train], color=COLOURS["train"], lw=1.6, label="training")
    ax.plot([s for s, _ in c.eval_loss], [v for _, v in c.eval_loss], "o-", color=COLOURS["eval"], lw=1.2, ms=5,
            label="eval (fixed masks)")
    ax.set(title="loss (cross-entropy per masked token)" if not small else "loss per masked token", ylabel="loss")
    if c.train or c.eval_loss:
        ax.legend(frameon=False)


def draw_perplexity(ax, c: Curves, small: bool = False) -> None:
    from matplotlib.ticker import AutoMinorLocator, FuncFormatter, LogLocator

    tick = FuncFormatter(lambda v, _: fmt(float(v)))
    points = c.perplexity
    ax.plot([s for s, _ in points], [v for _, v in points], "o-", color=COLOURS["eval"], lw=1.6)
    ax.set(title="eval perplexity (fixed masks)", ylabel="perplexity")
    if points and max(v for _, v in points) > 20 * min(v for _, v in points):
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=range(2, 10), numticks=100))
        # the minor ticks at 2x and 5x carry labels too: with values across decades, 10^3 and 10^4 alone say little
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: fmt(float(v)) if round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""))
    else:
        ax.yaxis.set_minor_locator(AutoMinorLocator())
    ax.yaxis.set_major_formatter(tick)
    if c.warm:  # a grown head's warm start, where training began
        ax.plot([s for s, _ in c.warm], [v for _, v in c.warm], "D", color=COLOURS["warm"], ms=6, label="warm start")
        ax.annotate(f"warm start {fmt(c.warm[0][1])}", c.warm[0], textcoords="offset points", xytext=(8, -3),
                    fontsize="small", color=COLOURS["warm_text"])
    if c.fresh is not None:  # off the axis on purpose: a random head's perplexity is near the vocabulary size
        ax.text(0.02, 0.03, f"fresh head: {fmt(c.fresh)} (off the axis)", transform=ax.transAxes, ha="left",
                va="bottom", fontsize="small", color="#6b7280")
    # a diverged run's perplexity near float's limit (1e300): a 12% margin on the log axis overflows to inf
    ax.margins(x=0.08, y=0.12 if max((v for _, v in points), default=1) < 1e200 else 0)
    for step, value in [p for p in labelled(points, 8 if small else 12) if p not in c.warm]:  # the warm start: above
        ax.annotate(fmt(value), (step, value), textcoords="offset points", xytext=(0, 7), ha="center",
                    fontsize="small", color=COLOURS["eval_text"])


def draw_accuracy(ax, c: Curves, small: bool = False) -> None:
    points = c.accuracy
    ax.plot([s for s, _ in points], [v * 100 for _, v in points], "o-", color=COLOURS["accuracy"], lw=1.6)
    ax.set(title="eval accuracy (masked tokens predicted exactly)" if not small else "eval accuracy (exact token)",
           ylabel="accuracy (%)")
    ax.margins(x=0.08, y=0.12)
    for step, value in labelled(points, 8 if small else 12):
        ax.annotate(f"{value:.1%}", (step, value * 100), textcoords="offset points", xytext=(0, 7), ha="center",
                    fontsize="small", color=COLOURS["accuracy_text"])


def draw_lr(ax, c: Curves, small: bool = False) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.plot([s for s, _ in c.lr], [v for _, v in c.lr], color=COLOURS["lr"], lw=1.6)
    ax.set(title="learning rate (pretrained parameters)" if not small else "learning rate (encoder)",
           ylabel="learning rate")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(float(v))))


DRAW = {"loss": draw_loss, "perplexity": draw_perplexity, "accuracy": draw_accuracy, "learning rate": draw_lr}


def finish_axes(ax, *, log_y: bool) -> None:
    from matplotlib.ticker import AutoMinorLocator, NullFormatter

    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3)
    ax.grid(which="minor", alpha=0.12)
    if not log_y:
        ax.yaxis.set_minor_locator(AutoMinorLocator())
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_minor_locator(AutoMinorLocator())
    ax.spines[["top", "right"]].set_visible(False)


def curves_figure(records: list[dict], grown: bool | None = None):
    """The four panels in one 2 x 2 figure (curves.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = Curves(records, grown)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), dpi=110)
    for ax, name in zip(axes.flat, PANELS):
        DRAW[name](ax, c)
        finish_axes(ax, log_y=name == "perplexity")
    fig.tight_layout()
    return fig


def panel_figure(records: list[dict], name: str, grown: bool | None = None):
    """One panel as a figure of its own, at a phone's proportions with large type (the report's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"font.size": PANEL_FONT, "axes.titlesize": PANEL_FONT + 1, "axes.titleweight": "bold",
                         "legend.fontsize": PANEL_FONT - 1}):
        fig, ax = plt.subplots(figsize=PANEL_SIZE, dpi=PANEL_DPI)
        DRAW[name](ax, Curves(records, grown), small=True)
        finish_axes(ax, log_y=name == "perplexity")
        fig.tight_layout()
    return fig


def png(fig) -> bytes:
    """A figure as PNG bytes (and closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def plot_curves(records: list[dict], grown: bool | None = None) -> bytes:
    """curves_figure as PNG bytes (curves.png)."""
    return png(curves_figure(records, grown))


def panel_pngs(records: list[dict], grown: bool | None = None) -> list[tuple[str, bytes]]:
    """(name, PNG bytes) of each panel on its own (the report's figures)."""
    return [(name, png(panel_figure(records, name, grown))) for name in PANELS]
