"""OUTPUT/report.html: loss and perplexity curves, the run's config and results, the base and the
tuned model side by side, and fill-mask before/after for probe sentences. One self-contained file
(plots embedded as PNG); the plot is also written to OUTPUT/curves.png.

The side by side shows what `mlmtune evaluate --config OUT/run.json --model BASE --model OUT` shows:
perplexity and accuracy on the run's own fixed evaluation masks, read from metrics.jsonl (the base
as training scored it at step 0, the tuned model at the final step), so writing the report costs no
evaluation; with a cloze file (`mlmtune report OUT --probes FILE`) the cloze accuracy of both.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path

from ..config import DEFAULT_PROBES, build_config
from ..errors import ConfigError
from ..eval.cloze import cloze_accuracy, cloze_predictions, read_cloze_file
from ..model.device import autocast_for
from ..model.fill_mask import GENERIC_MASK, FillMask
from .files import atomic_write_bytes, atomic_write_text, read_json_object
from .metrics_log import read_metrics
from .ownership import run_folder_lock


def series(records: list[dict], kind: str, key: str, low: float) -> list[tuple[int, float]]:
    """(step, value) of the `kind` records whose `key` is a finite number >= low; a record without
    one (a hand edit, an eval whose perplexity was not finite) is left out of the curves."""
    return [(r["step"], v) for r in records if r.get("type") == kind and isinstance(v := r.get(key), (int, float))
            and not isinstance(v, bool) and math.isfinite(v) and v >= low]


def _labelled(points: list[tuple[int, float]], most: int = 12) -> list[tuple[int, float]]:
    """The points to write a value beside: all of a few, else the first, the last and evenly between."""
    if len(points) <= most:
        return points
    step = (len(points) - 1) / (most - 1)
    return [points[round(i * step)] for i in range(most)]


def curves_figure(records: list[dict]):
    """Four panels against the optimizer step: training loss with the eval loss beside it, eval
    perplexity (each point labelled with its value), eval accuracy and the learning rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import AutoMinorLocator, FuncFormatter, LogLocator, NullFormatter

    train = series(records, "train", "loss", 0)
    eval_loss = series(records, "eval", "loss", 0)
    evals = series(records, "eval", "perplexity", 1)  # exp(mean NLL) >= 1
    accuracy = series(records, "eval", "accuracy", 0)
    lr = series(records, "train", "lr", 0)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), dpi=110)
    (loss_ax, ppl_ax), (acc_ax, lr_ax) = axes
    tick = FuncFormatter(lambda v, _: _fmt(float(v)))

    loss_ax.plot([s for s, _ in train], [v for _, v in train], color="#2563eb", lw=1.6, label="training")
    loss_ax.plot([s for s, _ in eval_loss], [v for _, v in eval_loss], "o-", color="#db2777", lw=1.2, ms=5,
                 label="eval (fixed masks)")
    loss_ax.set(title="loss (cross-entropy per masked token)", ylabel="loss")
    if train or eval_loss:
        loss_ax.legend(frameon=False)

    ppl_ax.plot([s for s, _ in evals], [v for _, v in evals], "o-", color="#db2777", lw=1.6)
    ppl_ax.set(title="eval perplexity (fixed masks)", ylabel="perplexity")
    if evals and max(v for _, v in evals) > 20 * min(v for _, v in evals):
        ppl_ax.set_yscale("log")
        ppl_ax.yaxis.set_minor_locator(LogLocator(base=10, subs=range(2, 10), numticks=100))
        # the minor ticks at 2x and 5x carry labels too: with values across decades, 10^3 and 10^4 alone say little
        ppl_ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: _fmt(float(v)) if round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""))
        ppl_ax.yaxis.set_major_formatter(tick)
    else:
        ppl_ax.yaxis.set_minor_locator(AutoMinorLocator())
        ppl_ax.yaxis.set_major_formatter(tick)
    warm = series(records, "warm_start", "perplexity", 1)
    if warm:  # a grown head's warm start, where training began
        ppl_ax.plot([s for s, _ in warm], [v for _, v in warm], "D", color="#f59e0b", ms=6, label="warm start")
        ppl_ax.annotate(f"warm start {_fmt(warm[0][1])}", warm[0], textcoords="offset points", xytext=(8, -3),
                        fontsize=8, color="#92400e")
    # a diverged run's perplexity near float's limit (1e300): a 12% margin on the log axis overflows to inf
    ppl_ax.margins(x=0.08, y=0.12 if max((v for _, v in evals + warm), default=1) < 1e200 else 0)
    acc_ax.margins(x=0.08, y=0.12)
    for step, value in _labelled(evals):
        ppl_ax.annotate(_fmt(value), (step, value), textcoords="offset points", xytext=(0, 7), ha="center",
                        fontsize=8, color="#831843")

    acc_ax.plot([s for s, _ in accuracy], [v * 100 for _, v in accuracy], "o-", color="#059669", lw=1.6)
    acc_ax.set(title="eval accuracy (masked tokens predicted exactly)", ylabel="accuracy (%)")
    for step, value in _labelled(accuracy):
        acc_ax.annotate(f"{value:.1%}", (step, value * 100), textcoords="offset points", xytext=(0, 7),
                        ha="center", fontsize=8, color="#065f46")

    lr_ax.plot([s for s, _ in lr], [v for _, v in lr], color="#7c3aed", lw=1.6)
    lr_ax.set(title="learning rate (pretrained parameters)", ylabel="learning rate")
    lr_ax.yaxis.set_major_formatter(tick)

    for ax in axes.flat:
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.grid(which="minor", alpha=0.12)
        if ax is not ppl_ax:
            ax.yaxis.set_minor_locator(AutoMinorLocator())
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_minor_locator(AutoMinorLocator())
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def plot_curves(records: list[dict]) -> bytes:
    """curves_figure as PNG bytes."""
    import matplotlib.pyplot as plt

    fig = curves_figure(records)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    ) + "</table>"


def _fmt(value, digits: int = 4) -> str:
    """The report's one number format: thousands separated, about `digits` significant digits, never an
    exponent (45,242 / 72.76 / 0.3098 / 0.00005); whole numbers as they are; anything else as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= 1e15:  # past float's exact digits (and a diverged run's 1e300): 4 figures and the power of ten
        mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')} × 10^{int(exponent)}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def duration(seconds: float) -> str:
    """Seconds in the units a person reads: 12 ms, 4.2 s, 38 s, 2 min 36 s, 1 h 5 min."""
    if seconds < 0.1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _result_value(key: str, value) -> str:
    """A results.json figure as the report shows it: times in human units, shares as percentages."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        if key.endswith("_seconds") or key.endswith("_seconds_spent"):
            return duration(value)
        if key.endswith("accuracy") and isinstance(value, float):
            return f"{value:.1%}"
    return _fmt(value)


def _shown(model, p) -> str:
    """A prediction as the page shows it: a piece that continues the word before it as "…s", never "##s"."""
    return "…" + p.word.removeprefix("##") if model.continues_word(p.token) else p.word


def _predictions_html(probes: list[str], tuned, base) -> str:
    top_tuned = tuned.predict(probes, top_k=5, sequences=False)
    top_base = base.predict(probes, top_k=5, sequences=False) if base is not None else None
    parts = []
    for i, probe in enumerate(probes):
        for m, tuned_mask in enumerate(top_tuned[i]):
            cols = [("before (" + html.escape(base.name) + ")", top_base[i][m])] if top_base else []
            cols.append(("after (this run)", tuned_mask))
            cells = "".join(
                "<td><b>" + title + "</b><ol>" + "".join(
                    f"<li>{html.escape(_shown(model, p))} <span>{p.score:.1%}</span></li>" for p in preds
                ) + "</ol></td>"
                for (title, preds), model in zip(cols, ([base] if top_base else []) + [tuned])
            )
            label = html.escape(probe) + (f" (mask {m + 1})" if len(top_tuned[i]) > 1 else "")
            parts.append(f"<tr><th>{label}</th>{cells}</tr>")
    return "<table class=preds>" + "".join(parts) + "</table>"


def _record_figures(record: dict | None) -> dict | None:
    """perplexity, accuracy and masked tokens of a metrics.jsonl eval record (None where not a number)."""
    if record is None:
        return None

    def number(key):
        v = record.get(key)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None

    return {"perplexity": number("perplexity"), "accuracy": number("accuracy"), "masked_tokens": number("masked_tokens"),
            "word_bits_per_char": number("word_bits_per_char"), "word_accuracy": number("word_accuracy"),
            "step": record.get("step")}


def side_by_side_rows(records: list[dict], results: dict, config: dict, has_model: bool) -> list[dict]:
    """The run's base, its warm-started head (when training grew one) and the tuned model, each with
    its figures on the run's fixed evaluation masks as metrics.jsonl holds them."""
    base = next((r for r in records if r.get("type") == "eval" and r.get("step") == 0), None)
    warm = next((r for r in records if r.get("type") == "warm_start"), None)
    final = None
    if has_model and isinstance(results.get("steps"), int):
        final = next((r for r in reversed(records) if r.get("type") == "eval" and r.get("step") == results["steps"]),
                     None)
    model = config.get("model") or "the base model"
    rows = [{"key": "base", "label": f"before: {model}", "figures": _record_figures(base)}]
    own = next((r for r in records if r.get("type") == "base_vocabulary"), None)
    if own is not None:  # --add-tokens: the base with its own vocabulary (masked words only), then with the new words
        rows = [{"key": "base_vocabulary", "label": f"before: {model}, its own vocabulary",
                 "figures": _record_figures(own)},
                {"key": "base", "label": f"{model} with the added words (rows from their pieces)",
                 "figures": _record_figures(base)}]
    if warm is not None:
        rows.append({"key": "warm", "label": f"{model}, warm-started head", "figures": _record_figures(warm)})
    if has_model:
        rows.append({"key": "tuned", "label": "after: this run", "figures": _record_figures(final)})
    return rows


def _side_by_side_html(rows: list[dict], cloze: dict | None, note: str) -> str:
    def pct(v):
        return "&ndash;" if v is None else f"{v:.1%}"

    words = any((row["figures"] or {}).get("word_bits_per_char") is not None for row in rows)
    head = ["model", "perplexity", "accuracy", "masked tokens"] + (["word bits/char", "word accuracy"] if words else []) \
        + (["cloze top-1", "cloze top-5"] if cloze else [])
    parts = ["<table class=side><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for row in rows:
        f = row["figures"] or {}
        cells = [html.escape(row["label"]),
                 "&ndash;" if f.get("perplexity") is None else _fmt(f["perplexity"]),
                 pct(f.get("accuracy")),
                 "&ndash;" if f.get("masked_tokens") is None else _fmt(int(f["masked_tokens"]))]
        if words:
            cells += ["&ndash;" if f.get("word_bits_per_char") is None else f"{f['word_bits_per_char']:.4f}",
                      pct(f.get("word_accuracy"))]
        if cloze:
            scores = cloze.get(row["key"])
            cells += [pct(scores["top1"]), pct(scores["top5"])] if scores else ["&ndash;", "&ndash;"]
        parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(parts) + f"</table>\n<p class=note>{note}</p>"


def _config_html(config: dict) -> str:
    """The options this run set away from the defaults first (config.py's dataclasses), the rest folded."""

    defaults = build_config().to_dict()
    changed = [(k, _fmt(v)) for k, v in config.items() if k not in defaults or defaults[k] != v]
    default = [(k, _fmt(v)) for k, v in config.items() if k in defaults and defaults[k] == v]
    parts = [f"<p class=note>{len(changed)} options set for this run:</p>" + _table(changed) if changed
             else "<p class=note>Every option at its default.</p>"]
    if default:
        parts.append(f"<details><summary>{len(default)} options at their defaults</summary>{_table(default)}</details>")
    return "\n".join(parts)


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def _accuracy_line(records: list[dict], results: dict) -> str:
    """Masked-token accuracy before (results.json's baseline_accuracy, else the step-0 evaluation) and after."""
    base = next((r for r in records if r.get("type") == "eval" and r.get("step") == 0), {})
    before = _number(results.get("baseline_accuracy"))
    before = _number(base.get("accuracy")) if before is None else before
    evals = [r for r in records if r.get("type") == "eval" and _number(r.get("accuracy")) is not None]
    after = _number(results.get("eval_accuracy"))
    after = _number(evals[-1]["accuracy"]) if after is None and evals else after
    if before is None and after is None:
        return ""
    shown = [f"<b>{v:.1%}</b>" if v is not None else "&ndash;" for v in (before, after)]
    return f"<p>masked-token accuracy {shown[0]} (baseline) &rarr; {shown[1]}</p>"


def _moment(value) -> datetime | None:
    """A time as results.json, run.json or metrics.jsonl write it (epoch seconds or ISO 8601), in UTC."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, tz=timezone.utc)
        if isinstance(value, str):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    except (ValueError, OverflowError, OSError):
        pass
    return None


def _when_line(run: dict, results: dict, records: list[dict]) -> str:
    """The run's date: results.json's started_at/finished_at where written, else run.json's started and
    the metrics' timestamps; and the time taken in human units."""
    times = [r.get("time") for r in records if r.get("time") is not None]
    start = _moment(results.get("started_at")) or _moment(run.get("started")) or (_moment(times[0]) if times else None)
    end = _moment(results.get("finished_at")) or (_moment(times[-1]) if times else None)
    if start is None:
        return ""
    text = f"run on {start:%Y-%m-%d} at {start:%H:%M} UTC"
    if end is not None and end >= start:
        text += f", finished {end:%H:%M}" if end.date() == start.date() else f", finished {end:%Y-%m-%d %H:%M}"
    stamped = _moment(results.get("started_at")), _moment(results.get("finished_at"))
    # the time taken: results.json's own start and end, else its wall_seconds (the last session's), else the span
    wall = (stamped[1] - stamped[0]).total_seconds() if None not in stamped else _number(results.get("wall_seconds"))
    wall = (end - start).total_seconds() if wall is None and end is not None and end >= start else wall
    if wall is not None:
        text += f" ({duration(wall)})"
    return f"<p class=when>{text}</p>"


def _cloze_scores(fill, items, precision: str | None) -> dict:
    """Top-1 and top-5 cloze accuracy of a FillMask's model, in the run's precision."""

    predicted = cloze_predictions(fill.model, fill.head, fill.tokenizer, items, device=fill.device,
                                  max_length=fill.max_length, top_k=5,
                                  autocast=autocast_for(precision or "auto", fill.device))
    return {"top1": cloze_accuracy(predicted, items, 1), "top5": cloze_accuracy(predicted, items, 5)}


# The parts of run.json the report reads, and the type each must have (None: may be missing or null).
RUN_PARTS = {"config": dict, "data": dict, "versions": dict}
CONFIG_FIELDS = {"model": str, "tokenizer": str, "seed": int, "probe": list, "precision": str}


def _run_parts(run: dict, path: Path) -> tuple[dict, dict, dict]:
    """run.json's config, data and versions, checked: a damaged file is one error line, not a traceback."""
    def damaged(what: str, value) -> ConfigError:
        return ConfigError(f"{path} is damaged (its {what} is {json.dumps(value)[:60]}, not what mlmtune wrote): "
                           "train again, or restore the file")

    parts = []
    for key, kind in RUN_PARTS.items():
        value = run.get(key)
        if value is not None and not isinstance(value, kind):
            raise damaged(f'"{key}"', value)
        parts.append(value or {})
    config = parts[0]
    for key, kind in CONFIG_FIELDS.items():
        value = config.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)
                                  or (key == "probe" and not all(isinstance(p, str) for p in value))):
            raise damaged(f'config "{key}"', value)
    return config, parts[1], parts[2]


def write_report(output_dir: str | Path, *, base_model: str | None = None, probes: list[str] | None = None,
                 cloze: str | Path | list | None = None, say=print) -> Path:
    """Check every input (run.json, the probes, the cloze file, the models), then write curves.png
    and report.html, each atomically: a failure leaves the folder as it was. Holds the folder's lock
    (refused while a run writes it; run/ownership.run_folder_lock).

    `probes` are fill-mask sentences (--probe); `cloze` is a cloze TSV (--probes FILE) or its parsed items."""
    with run_folder_lock(output_dir, "report", say):
        return _write_report(Path(output_dir), base_model=base_model, probes=probes, cloze=cloze, say=say)


def _write_report(out: Path, *, base_model: str | None, probes: list[str] | None, cloze, say) -> Path:
    if not (out / "run.json").is_file():
        raise ConfigError(f"{out} holds no run.json: give a folder written by mlmtune train")
    run = read_json_object(out / "run.json", required=True)
    config, data, versions = _run_parts(run, out / "run.json")
    results = read_json_object(out / "results.json", required=True) if (out / "results.json").is_file() else {}
    records = read_metrics(out / "metrics.jsonl")
    probes = probes or config.get("probe") or DEFAULT_PROBES
    base_model = base_model or config.get("model")
    items = None
    if cloze is not None:

        items = read_cloze_file(cloze) if isinstance(cloze, (str, Path)) else list(cloze)
    has_model = (out / "config.json").is_file()
    rows = side_by_side_rows(records, results, config, has_model)
    cloze_scores: dict = {}

    predictions = "<p>No model in this folder yet (training has not finished).</p>"
    if (out / "config.json").is_file():

        tuned = FillMask(str(out))
        for probe in probes:  # before the base model loads, and before anything is written
            if GENERIC_MASK not in probe and tuned.tokenizer.mask_token not in probe:
                raise ConfigError(f"--probe {probe!r} has no {GENERIC_MASK}: write {GENERIC_MASK} where a word "
                                  "should be filled in")
        base = None
        if base_model == config.get("model"):  # the run's base: its --tokenizer, and the head training grew (--seed)
            base = FillMask(base_model, tokenizer=config.get("tokenizer"), seed=config.get("seed", 0))
        elif base_model:
            base = FillMask(base_model)
        predictions = _predictions_html(probes, tuned, base)
        if base is not None and base.grown_head:
            predictions += (f"<p class=note>{html.escape(base_model)} has no MLM head: its column shows a "
                            "freshly initialised head, which is what training started from.</p>")
        if items:
            cloze_scores["tuned"] = _cloze_scores(tuned, items, config.get("precision"))
            if base is not None:
                scores = _cloze_scores(base, items, config.get("precision"))
                if base_model == config.get("model"):  # as it is, its own tokenizer: with --add-tokens, that row
                    own = any(r["key"] == "base_vocabulary" for r in rows)
                    cloze_scores["base_vocabulary" if own else "base"] = scores
                else:  # another base than the run's: a row of its own, with no figures on these masks
                    rows.insert(0, {"key": "other", "label": f"before: {base_model} (--base-model)", "figures": None})
                    cloze_scores["other"] = scores

    command = f"mlmtune evaluate --config OUT/run.json --model {config.get('model') or 'BASE'} --model OUT"
    note = ("Perplexity and accuracy on this run's fixed evaluation masks, from metrics.jsonl: the base as training "
            "scored it before the first step (a base without an MLM head with the head grown from --seed), the "
            f"tuned model at the final step; <code>{html.escape(command)}</code> (OUT: this folder) scores the same.")
    if any(r["key"] == "warm" for r in rows):
        note += " The warm-started head is the grown head after its warm start, where training began."
    if any(r["key"] == "base_vocabulary" for r in rows):
        note += (" Words were added to the vocabulary (--add-tokens), so perplexity per token is not comparable with "
                 "the base's own: compare the masked words, the same whole words of the held-out documents masked "
                 "whatever the vocabulary (bits per character, lower is better; share predicted exactly).")
    if items:
        note += (f" Cloze: the share of the {len(items)} items of {html.escape(str(cloze) if isinstance(cloze, (str, Path)) else 'the cloze probes')} "
                 "with an accepted answer among the model's top 1 / top 5 tokens.")
    side_by_side = _side_by_side_html(rows, cloze_scores if items else None, note)

    png = plot_curves(records)
    evals = series(records, "eval", "perplexity", 1)
    headline = ""
    warm_records = [r for r in records if r.get("type") == "warm_start" and isinstance(r.get("perplexity"), (int, float))
                    and math.isfinite(r["perplexity"])]
    if len(evals) >= 2:
        first, last = evals[0][1], evals[-1][1]
        # Against a grown head's warm start too: a gain against a random head alone is not an honest headline.
        start = warm_records[0]["perplexity"] if warm_records else first
        change = (f"{_fmt(start / last, 2)}&times; lower" if last <= start
                  else f"{_fmt(last / start, 2)}&times; higher")
        if warm_records:
            headline = (f"<p class=headline>eval perplexity <b>{_fmt(first)}</b> (fresh head) &rarr; "
                        f"<b>{_fmt(start)}</b> (warm start) &rarr; <b>{_fmt(last)}</b> ({change} than the warm start)</p>")
        else:
            headline = (f"<p class=headline>eval perplexity <b>{_fmt(first)}</b> &rarr; <b>{_fmt(last)}</b> "
                        f"({change})</p>")
    headline += _accuracy_line(records, results) + _when_line(run, results, records)
    page = f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width, initial-scale=1"><title>mlmtune report: {html.escape(out.name)}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2rem auto; padding: 0 1rem; color: #1f2937; }}
h1 {{ font-size: 1.5rem; }} h2 {{ font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #e5e7eb; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: .25rem .8rem .25rem 0; vertical-align: top; }}
th {{ font-weight: 600; color: #374151; }} .headline {{ font-size: 1.2rem; }}
.preds td {{ min-width: 14rem; }} .preds ol {{ margin: .2rem 0; padding-left: 1.3rem; }} .preds span {{ color: #6b7280; }}
.side td, .side th {{ text-align: right; }} .side td:first-child, .side th:first-child {{ text-align: left; }}
.note {{ color: #6b7280; font-size: .9rem; }} img {{ max-width: 100%; }}
.cols {{ display: flex; gap: 3rem; flex-wrap: wrap; }} .cols > div {{ flex: 1 1 22rem; min-width: 0; }}
.when {{ color: #4b5563; margin-top: -.4rem; }} details summary {{ cursor: pointer; color: #374151; margin: .4rem 0; }}
/* a long path, fingerprint or probe list wraps instead of widening the page (no sideways scrolling on a phone) */
body, td {{ overflow-wrap: anywhere; }} th {{ overflow-wrap: break-word; }} table {{ max-width: 100%; }}
@media (max-width: 640px) {{
  body {{ margin: 1rem auto; }} .cols {{ gap: 0; }}
  .preds, .preds tbody, .preds tr, .preds th, .preds td {{ display: block; }} .preds td {{ min-width: 0; }}
  .preds tr {{ margin-bottom: .8rem; }}
  .side th, .side td {{ padding-right: .4rem; font-size: .8rem; }}
}}
</style></head><body>
<h1>mlmtune report: {html.escape(str(out))}</h1>
{headline}
<img alt="training and eval loss, eval perplexity, eval accuracy and learning rate" src="data:image/png;base64,{base64.b64encode(png).decode()}">
<h2>Side by side</h2>
{side_by_side}
<h2>Fill-mask before and after</h2>
{predictions}
<div class=cols><div><h2>Results</h2>
{_table([(k, _result_value(k, v)) for k, v in results.items()])}
<h2>Data</h2>
{_table([(k, _fmt(v)) for k, v in data.items()] + [("processes", run.get("processes")), ("device", run.get("device"))])}
</div><div><h2>Config</h2>
{_config_html(config)}
<h2>Versions</h2>
{_table(list(versions.items()))}
</div></div>
</body></html>
"""
    path = out / "report.html"
    atomic_write_bytes(out / "curves.png", png)
    atomic_write_text(path, page)
    say(f"wrote {path}")
    return path
