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
import json
import math
from datetime import datetime, timezone
from pathlib import Path

from ..config import DEFAULT_PROBES, build_config
from ..errors import ConfigError
from ..eval.cloze import cloze_accuracy, cloze_predictions, read_cloze_file
from ..model.device import autocast_for
from ..model.fill_mask import GENERIC_MASK, FillMask
from .before import head_note, shown_model
from .figures import curves_figure, panel_pngs, plot_curves, series  # noqa: F401 (curves_figure: the API)
from .files import atomic_write_bytes, atomic_write_text, read_json_object
from .formats import duration
from .formats import fmt as _fmt
from .metrics_log import read_metrics
from .ownership import run_folder_lock
from .verdict import Verdict, grew_head, records_verdict


def _table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    ) + "</table>"


# results.json's figures as the report names them, in this order (a key not named here: its words).
RESULT_LABELS = {
    "steps": "optimizer steps", "sessions": "sessions (--resume)", "total_wall_seconds": "time, all sessions",
    "wall_seconds": "time, this session", "started_at": "this session started", "finished_at": "this session finished",
    "prepare_seconds": "preparing the data", "warm_start_seconds": "warm start of the grown head",
    "train_seconds": "training steps", "eval_seconds": "evaluations", "max_time_seconds": "time budget (--max-time)",
    "budget_seconds_spent": "budget spent", "train_tokens": "training tokens",
    "train_tokens_per_second": "training speed (tokens/s)", "baseline_perplexity": "perplexity before training",
    "baseline_accuracy": "accuracy before training", "warm_start_perplexity": "perplexity after the warm start",
    "eval_perplexity": "eval perplexity, final", "eval_accuracy": "eval accuracy, final",
    "eval_masked_tokens": "masked tokens scored", "peak_rss_mb": "peak memory", "processes": "processes",
    "precision": "precision", "added_tokens": "words added (--add-tokens)",
    "pieces_per_word_before": "pieces per word, before", "pieces_per_word_after": "pieces per word, after",
    "base_word_bits_per_char": "masked words, base (bits/char)", "base_word_accuracy": "masked words, base (exact)",
    "word_bits_per_char": "masked words, tuned (bits/char)", "word_accuracy": "masked words, tuned (exact)",
    "masked_words": "masked words scored", "files": "files saved",
}
# run.json's data summary, likewise; the fingerprints (--resume's check of the data) are folded away.
DATA_LABELS = {
    "documents": "documents", "duplicates_dropped": "repeated documents dropped", "holdout": "evaluation text",
    "lines_truncated": "lines cut (--line-by-line)", "train_examples": "training examples",
    "train_tokens": "training tokens", "eval_documents": "evaluation documents", "eval_examples": "evaluation examples",
    "eval_tokens": "evaluation tokens", "streaming": "streamed",
}
FINGERPRINTS = {"train_fingerprint": "training tokens", "eval_fingerprint": "evaluation tokens"}
HOLDOUT = {"documents": "whole documents held out (--eval-fraction)", "tail": "the tail of the text",
           "split": "the source's own split (--eval-split)", "eval-data": "--eval-data",
           "stream head": "the first documents of the stream"}


def _label(key: str, labels: dict) -> str:
    return labels.get(key) or key.replace("_", " ")


def _result_value(key: str, value) -> str:
    """A results.json figure as the report shows it: times in human units, shares as percentages, memory in
    MB, moments in UTC, the precision by name ("no" mixed precision: fp32)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        if key.endswith("_seconds") or key.endswith("_seconds_spent"):
            return duration(value)
        if key.endswith("accuracy") and isinstance(value, float):
            return f"{value:.1%}"
        if key.endswith("_mb"):
            return f"{_fmt(value)} MB"
    if key == "precision" and isinstance(value, str):
        return {"no": "fp32", "bf16": "bf16 (mixed)", "fp16": "fp16 (mixed)"}.get(value, value)
    if key.endswith("_at") and (moment := _moment(value)) is not None:
        return f"{moment:%Y-%m-%d %H:%M:%S} UTC"
    return _fmt(value)


def _results_rows(results: dict) -> list[tuple[str, str]]:
    """The Results table: labelled, in RESULT_LABELS' order, figures that do not apply (null) left out."""
    keys = [k for k in RESULT_LABELS if k in results] + [k for k in results if k not in RESULT_LABELS]
    labels = dict(RESULT_LABELS)
    sessions = results.get("sessions")
    if not (isinstance(sessions, int) and sessions > 1):  # one session: its time is the run's
        keys = [k for k in keys if k not in ("sessions", "total_wall_seconds")]
        labels["wall_seconds"] = "time"
    if results.get("max_time_seconds") is None:  # no --max-time: no budget to spend
        keys = [k for k in keys if k != "budget_seconds_spent"]
    return [(_label(k, labels), _result_value(k, results[k])) for k in keys if results[k] is not None]


def _data_html(data: dict, run: dict) -> str:
    """The Data table, labelled, and the fingerprints folded."""
    rows = [(_label(k, DATA_LABELS), HOLDOUT.get(v, v) if k == "holdout" else _fmt(v))
            for k, v in data.items() if k not in FINGERPRINTS and v is not None]
    rows += [(label, run.get(key)) for key, label in (("processes", "processes"), ("device", "device"))
             if run.get(key) is not None]
    prints = [(FINGERPRINTS[k], _fmt(v)) for k, v in data.items() if k in FINGERPRINTS]
    folded = (f"<details><summary>fingerprints (what --resume checks)</summary>{_table(prints)}</details>"
              if prints else "")
    return _table(rows) + folded


def _shown(model, p) -> str:
    """A prediction as the page shows it: a piece that continues the word before it as "…s", never "##s"."""
    return "…" + p.word.removeprefix("##") if model.continues_word(p.token) else p.word


def _predictions_html(probes: list[str], tuned, base) -> str:
    top_tuned = tuned.predict(probes, top_k=5, sequences=False)
    top_base = base.predict(probes, top_k=5, sequences=False) if base is not None else None
    parts = []
    for i, probe in enumerate(probes):
        for m, tuned_mask in enumerate(top_tuned[i]):
            cols = [("before (" + html.escape(base.label) + ")", top_base[i][m])] if top_base else []
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
    if warm is not None:  # a grown head: the honest "before" is its warm start, where training began
        if own is None:
            rows[0]["label"] = f"{model}, fresh head (random)"
        rows.append({"key": "warm", "label": f"before: {model}, warm-started head", "figures": _record_figures(warm)})
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


FIGURE_ALT = {"loss": "training loss and eval loss against the optimizer step",
              "perplexity": "eval perplexity at each evaluation, each point labelled",
              "accuracy": "eval accuracy at each evaluation", "learning rate": "learning rate against the step"}


def _figures_html(figures: list[tuple[str, bytes]]) -> str:
    return "\n".join(f'<figure><img alt="{FIGURE_ALT[name]}" data-panel="{name}" '
                     f'src="data:image/png;base64,{base64.b64encode(data).decode()}"></figure>' for name, data in figures)


def _curve_note(records: list[dict]) -> str:
    """Say what the eval curves score when their points are the subset's (training/evaluations.py)."""
    if not any(r.get("type") == "eval" and "subset_perplexity" in r and "perplexity" not in r for r in records):
        return ""
    return ("<p class=note>The eval curves score the same masks at every point: the first quarter of the evaluation "
            "set, so that evaluating often costs little. The headline and Results score all of it.</p>")


def _verdict_html(judged: Verdict) -> str:
    """The run's verdict, first on the page: still improving (and the command that trains further),
    converged, or rising."""
    # each word of the command kept whole where it fits the line ("--max-steps" never cut after its "--")
    words = " ".join(f"<span class=w>{html.escape(w)}</span>" for w in (judged.command or "").split(" "))
    command = f": <code>{words}</code>" if judged.command else ""
    return f"<p class='verdict {judged.kind}'>{html.escape(judged.text)}{command}</p>\n"


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
    sessions, total = results.get("sessions"), _number(results.get("total_wall_seconds"))
    if isinstance(sessions, int) and sessions > 1 and total is not None:  # a resumed run: every session's time
        text = text.replace("run on", "last session on", 1)
        text += f" ({duration(wall)}; {sessions} sessions, {duration(total)} in all)" if wall is not None else \
            f" ({sessions} sessions, {duration(total)} in all)"
    elif wall is not None:
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
        # the run's base as training began (its --tokenizer, the head grown from --seed and warm-started from
        # the run's unigram counts), the same model serve and predict show beside this run (run/before.py)
        base = shown_model(base_model, run=out) if base_model else None
        predictions = _predictions_html(probes, tuned, base)
        if base is not None and base.grown_head:
            predictions += f"<p class=note>{html.escape(head_note(base).removeprefix('note: '))}.</p>"
        if items:
            cloze_scores["tuned"] = _cloze_scores(tuned, items, config.get("precision"))
            if base is not None:
                scores = _cloze_scores(base, items, config.get("precision"))
                keys = {r["key"] for r in rows}
                if base_model == config.get("model"):  # as it is, its own tokenizer: with --add-tokens, that row;
                    # a grown head as shown, warm-started: the warm start's row
                    row = "base_vocabulary" if "base_vocabulary" in keys else \
                        "warm" if base.head_start == "warm" and "warm" in keys else "base"
                    cloze_scores[row] = scores
                else:  # another base than the run's: a row of its own, with no figures on these masks
                    rows.insert(0, {"key": "other", "label": f"before: {base.label} (--base-model)", "figures": None})
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

    grown = grew_head(records, run)
    png = plot_curves(records, grown)
    figures = panel_pngs(records, grown)
    judged = records_verdict(records, config, out, grown=grown)
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
    headline = _verdict_html(judged) + headline
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
.verdict {{ font-size: 1.1rem; padding: .7rem 1rem; border-radius: 8px; border-left: 5px solid #6b7280; background: #f3f4f6; }}
.verdict.fast, .verdict.slow {{ border-color: #2563eb; background: #eff6ff; }} .verdict.converged {{ border-color: #059669; background: #ecfdf5; }}
.verdict.rising {{ border-color: #b91c1c; background: #fef2f2; }} .verdict code {{ font-size: .95rem; }}
.verdict .w {{ display: inline-block; max-width: 100%; }}
/* the curves: two by two on a wide screen, one under another on a phone, each at its full width */
.figs {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 26rem), 1fr)); gap: .5rem 1.5rem; }}
.figs figure {{ margin: 0; }} .figs img {{ width: 100%; height: auto; display: block; }}
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
<div class=figs>
{_figures_html(figures)}
</div>
{_curve_note(records)}
<h2>Side by side</h2>
{side_by_side}
<h2>Fill-mask before and after</h2>
{predictions}
<div class=cols><div><h2>Results</h2>
{_table(_results_rows(results))}
<h2>Data</h2>
{_data_html(data, run)}
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
