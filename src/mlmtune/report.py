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
from pathlib import Path

from .config import DEFAULT_PROBES
from .errors import ConfigError
from .metrics import read_metrics
from .outputs import atomic_write_bytes, atomic_write_text


def series(records: list[dict], kind: str, key: str, low: float) -> list[tuple[int, float]]:
    """(step, value) of the `kind` records whose `key` is a finite number >= low; a record without
    one (a hand edit, an eval whose perplexity was not finite) is left out of the curves."""
    return [(r["step"], v) for r in records if r.get("type") == kind and isinstance(v := r.get(key), (int, float))
            and not isinstance(v, bool) and math.isfinite(v) and v >= low]


def plot_curves(records: list[dict]) -> bytes:
    """Training loss and eval perplexity against the optimizer step, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = series(records, "train", "loss", 0)
    evals = series(records, "eval", "perplexity", 1)  # exp(mean NLL) >= 1
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=110)
    ax1.plot([s for s, _ in train], [v for _, v in train], color="#2563eb", lw=1.6)
    ax1.set(title="training loss (per masked token)", xlabel="optimizer step", ylabel="cross-entropy")
    ax2.plot([s for s, _ in evals], [v for _, v in evals], "o-", color="#db2777", lw=1.6)
    ax2.set(title="eval perplexity (fixed masks)", xlabel="optimizer step", ylabel="perplexity")
    if evals and max(v for _, v in evals) > 20 * min(v for _, v in evals):
        ax2.set_yscale("log")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    ) + "</table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def _predictions_html(probes: list[str], tuned, base) -> str:
    top_tuned = tuned(probes, top_k=5)
    top_base = base(probes, top_k=5) if base is not None else None
    parts = []
    for i, probe in enumerate(probes):
        for m, tuned_mask in enumerate(top_tuned[i]):
            cols = [("before (" + html.escape(base.name) + ")", top_base[i][m])] if top_base else []
            cols.append(("after (this run)", tuned_mask))
            cells = "".join(
                "<td><b>" + title + "</b><ol>" + "".join(
                    f"<li>{html.escape(p.token)} <span>{p.score:.1%}</span></li>" for p in preds
                ) + "</ol></td>"
                for title, preds in cols
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
                 "&ndash;" if f.get("perplexity") is None else f"{f['perplexity']:,.2f}",
                 pct(f.get("accuracy")),
                 "&ndash;" if f.get("masked_tokens") is None else f"{int(f['masked_tokens']):,}"]
        if words:
            cells += ["&ndash;" if f.get("word_bits_per_char") is None else f"{f['word_bits_per_char']:.4f}",
                      pct(f.get("word_accuracy"))]
        if cloze:
            scores = cloze.get(row["key"])
            cells += [pct(scores["top1"]), pct(scores["top5"])] if scores else ["&ndash;", "&ndash;"]
        parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(parts) + f"</table>\n<p class=note>{note}</p>"


def _cloze_scores(fill, items, precision: str | None) -> dict:
    """Top-1 and top-5 cloze accuracy of a FillMask's model, in the run's precision."""
    from .probes import autocast_for, cloze_accuracy, cloze_predictions

    predicted = cloze_predictions(fill.model, fill.head, fill.tokenizer, items, device=fill.device,
                                  max_length=fill.max_length, top_k=5,
                                  autocast=autocast_for(precision or "auto", fill.device))
    return {"top1": cloze_accuracy(predicted, items, 1), "top5": cloze_accuracy(predicted, items, 5)}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is damaged (not the JSON object mlmtune wrote): train again, or restore the file")
    return data


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
    and report.html, each atomically: a failure leaves the folder as it was.

    `probes` are fill-mask sentences (--probe); `cloze` is a cloze TSV (--probes FILE) or its parsed items."""
    out = Path(output_dir)
    if not (out / "run.json").is_file():
        raise ConfigError(f"{out} holds no run.json: give a folder written by mlmtune train")
    run = _read_json(out / "run.json")
    config, data, versions = _run_parts(run, out / "run.json")
    results = _read_json(out / "results.json") if (out / "results.json").is_file() else {}
    records = read_metrics(out / "metrics.jsonl")
    probes = probes or config.get("probe") or DEFAULT_PROBES
    base_model = base_model or config.get("model")
    items = None
    if cloze is not None:
        from .probes import read_cloze_file

        items = read_cloze_file(cloze) if isinstance(cloze, (str, Path)) else list(cloze)
    has_model = (out / "config.json").is_file()
    rows = side_by_side_rows(records, results, config, has_model)
    cloze_scores: dict = {}

    predictions = "<p>No model in this folder yet (training has not finished).</p>"
    if (out / "config.json").is_file():
        from .predict import GENERIC_MASK, FillMask

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
                if base_model == config.get("model"):
                    cloze_scores["base"] = scores
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
        change = f"{start / last:,.1f}&times; lower" if last <= start else f"{last / start:,.1f}&times; higher"
        if warm_records:
            headline = (f"<p class=headline>eval perplexity <b>{first:,.1f}</b> (fresh head) &rarr; "
                        f"<b>{start:,.1f}</b> (warm start) &rarr; <b>{last:,.1f}</b> ({change} than the warm start)</p>")
        else:
            headline = (f"<p class=headline>eval perplexity <b>{first:,.1f}</b> &rarr; <b>{last:,.1f}</b> "
                        f"({change})</p>")
    page = f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>mlmtune report: {html.escape(out.name)}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2rem auto; padding: 0 1rem; color: #1f2937; }}
h1 {{ font-size: 1.5rem; }} h2 {{ font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #e5e7eb; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: .25rem .8rem .25rem 0; vertical-align: top; }}
th {{ font-weight: 600; color: #374151; }} .headline {{ font-size: 1.2rem; }}
.preds td {{ min-width: 14rem; }} .preds ol {{ margin: .2rem 0; padding-left: 1.3rem; }} .preds span {{ color: #6b7280; }}
.side td, .side th {{ text-align: right; }} .side td:first-child, .side th:first-child {{ text-align: left; }}
.note {{ color: #6b7280; font-size: .9rem; }} img {{ max-width: 100%; }}
.cols {{ display: flex; gap: 3rem; flex-wrap: wrap; }}
</style></head><body>
<h1>mlmtune report: {html.escape(str(out))}</h1>
{headline}
<img alt="training loss and eval perplexity" src="data:image/png;base64,{base64.b64encode(png).decode()}">
<h2>Side by side</h2>
{side_by_side}
<h2>Fill-mask before and after</h2>
{predictions}
<div class=cols><div><h2>Results</h2>
{_table([(k, _fmt(v)) for k, v in results.items()])}
<h2>Data</h2>
{_table(list(data.items()) + [("processes", run.get("processes")), ("device", run.get("device"))])}
</div><div><h2>Config</h2>
{_table([(k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in config.items()])}
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
