"""report.html (run/report.py): written at the end of training, rewritten by `mlmtune report OUTPUT`,
refused for a folder without a run or with a damaged run.json, written for odd runs (diverged, junk in
metrics.jsonl, added words), and readable on a phone."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
from pathlib import Path

import pytest
from helpers import JUNK_LINES, assert_clean_error, assert_ok, run_cli, snapshot

from mlmtune.cli import main
from mlmtune.config import build_config
from mlmtune.model.fill_mask import FillMask
from mlmtune.run.metrics_log import read_metrics
from mlmtune.run.report import RESULT_LABELS, _fmt, _result_value, curves_figure, duration, write_report
from mlmtune.training.fit import fit

PROBES = ["The [MASK] is happy.", "Shares in the company [MASK] sharply after the [MASK]."]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_config(model, data, out, **extra):
    values = dict(model=model, data=[data], output_dir=str(out), chunk_size=64, batch_size=8, eval_size=40,
                  lr=3e-3, head_lr=3e-3, max_steps=12, eval_every=6, log_every=3, report=True,
                  precision="fp32", seed=0, probe=PROBES)
    values.update(extra)
    return build_config(values)


@pytest.fixture(scope="module")
def run_dir(tiny_bert, news_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    fit(run_config(tiny_bert, news_folder, out))
    return out


def prediction_rows(page: str) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """The before/after table -> [(row label, [(column title, [token, ...]), ...]), ...]."""
    table = re.search(r"<table class=preds>(.*?)</table>", page, re.S)
    assert table, "no before/after prediction table"
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S):
        label = html.unescape(re.search(r"<th>(.*?)</th>", row, re.S).group(1))
        cells = [(html.unescape(title), [html.unescape(t) for t in re.findall(r"<li>(.*?) <span>[^<]*</span></li>", items)])
                 for title, items in re.findall(r"<td><b>(.*?)</b><ol>(.*?)</ol></td>", row, re.S)]
        rows.append((label, cells))
    return rows


def tokens(model: FillMask, text: str) -> list[list[str]]:
    """The top 5 per mask as the report lists them: a piece as "…s", never "##s"."""
    return [["…" + p.word.removeprefix("##") if model.continues_word(p.token) else p.word for p in mask]
            for mask in model.predict([text], top_k=5)[0]]


def test_training_writes_a_complete_report(run_dir, tiny_bert):
    page = (run_dir / "report.html").read_text(encoding="utf-8")

    # the curves: curves.png (the four panels in one image) beside the report, and in it each panel a figure
    # of its own (a 2 x 2 image shrunk to a phone's width was unreadable)
    png = (run_dir / "curves.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5_000
    embedded = re.findall(r'<img alt="[^"]+" data-panel="([^"]+)" src="data:image/png;base64,([^"]+)">', page)
    assert [name for name, _ in embedded] == ["loss", "perplexity", "accuracy", "learning rate"]
    assert all(base64.b64decode(data).startswith(PNG_MAGIC) for _, data in embedded)

    # the headline: baseline -> final eval perplexity from metrics.jsonl
    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [0, 6, 12]
    first, last = evals[0]["perplexity"], evals[-1]["perplexity"]
    assert f"<b>{_fmt(first)}</b> &rarr; <b>{_fmt(last)}</b> ({_fmt(first / last, 2)}&times; lower)" in page

    # the config and the results figures
    run = json.loads((run_dir / "run.json").read_text())
    for key, value in [("model", html.escape(tiny_bert)), ("chunk_size", "64"), ("lr", "0.003"), ("max_steps", "12"),
                       ("probe", html.escape(", ".join(PROBES)))]:
        assert f"<tr><th>{key}</th><td>{value}</td></tr>" in page, key
    assert run["config"]["chunk_size"] == 64
    results = json.loads((run_dir / "results.json").read_text())
    for key in ("steps", "eval_perplexity", "eval_accuracy", "train_tokens_per_second", "peak_rss_mb", "train_seconds"):
        label = RESULT_LABELS[key]
        assert f"<tr><th>{label}</th><td>{html.escape(_result_value(key, results[key]))}</td></tr>" in page, key
    assert f"<tr><th>eval accuracy, final</th><td>{results['eval_accuracy']:.1%}</td></tr>" in page
    assert re.search(r"<tr><th>training steps</th><td>(\d+ min )?\d+(\.\d)? s</td></tr>", page)
    assert "<tr><th>precision</th><td>fp32</td></tr>" in page  # Accelerate's "no" mixed precision, by its name
    assert re.search(r"<tr><th>peak memory</th><td>[\d,.]+ MB</td></tr>", page)
    # no raw key in the Results and Data tables, and the fingerprints folded away
    tables = page.split("<h2>Results</h2>", 1)[1].split("<h2>Config</h2>", 1)[0]
    shown = tables.split("<details>", 1)[0]
    assert not [k for k in re.findall(r"<tr><th>(.*?)</th>", shown) if "_" in k]
    assert json.loads((run_dir / "run.json").read_text())["data"]["train_fingerprint"] not in shown
    assert not re.search(r"\d\.?\d*e[+-]\d\d", re.sub(r'src="data:[^"]*"', "", page))  # no 4.5e+04 anywhere
    assert "<h2>Versions</h2>" in page and "<th>transformers</th>" in page
    # the verdict first, computed from the curve; the interim points (step 6) scored on the curve's subset, said
    verdict = re.search(r"<p class='verdict (\w+)'>", page)
    assert verdict and page.index(verdict.group(0)) < page.index("<div class=figs>")
    interim = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] == "eval" and r["step"] == 6]
    assert interim and "subset_perplexity" in interim[0] and "perplexity" not in interim[0]
    assert "the first quarter of the evaluation set" in page

    # before (the base model) and after (this run), top 5 per mask of every probe
    rows = prediction_rows(page)
    assert [label for label, _ in rows] == [PROBES[0], f"{PROBES[1]} (mask 1)", f"{PROBES[1]} (mask 2)"]
    before_model, after_model = FillMask(tiny_bert), FillMask(str(run_dir))
    expected_before = [m for p in PROBES for m in tokens(before_model, p)]
    expected_after = [m for p in PROBES for m in tokens(after_model, p)]
    for (label, cells), before, after in zip(rows, expected_before, expected_after):
        assert cells == [(f"before ({tiny_bert})", before), ("after (this run)", after)], label
    assert expected_before != expected_after  # training changed what the model predicts


def test_report_command_regenerates_the_report(run_dir, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    original = (out / "report.html").read_text(encoding="utf-8").replace(
        f"<h1>mlmtune report: {html.escape(str(run_dir))}</h1>", f"<h1>mlmtune report: {html.escape(str(out))}</h1>")
    (out / "report.html").unlink()
    (out / "curves.png").unlink()

    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.html")
    assert (out / "curves.png").read_bytes().startswith(PNG_MAGIC)
    original = original.replace(html.escape(str(run_dir / "run.json")), html.escape(str(out / "run.json")))  # verdict
    assert (out / "report.html").read_text(encoding="utf-8") == original  # the same report as training wrote

    assert main(["report", str(out), "--probe", "A [MASK] day for the [MASK] team."]) == 0
    rows = prediction_rows((out / "report.html").read_text(encoding="utf-8"))
    assert [label for label, _ in rows] == ["A [MASK] day for the [MASK] team. (mask 1)",
                                            "A [MASK] day for the [MASK] team. (mask 2)"]
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_folder_without_run_json_is_one_error_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a run")
    assert main(["report", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "run.json" in err[0], err
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written


def test_unfinished_run_gets_curves_without_predictions(tmp_path):
    # run.json and metrics.jsonl but no model yet (training still running), perplexity rising
    (tmp_path / "run.json").write_text(json.dumps({"config": {"chunk_size": 64}, "data": {"documents": 3}}))
    records = [{"type": "eval", "step": 0, "perplexity": 100.0}, {"type": "train", "step": 5, "loss": 4.0, "lr": 1e-4},
               {"type": "eval", "step": 10, "perplexity": 250.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "No model in this folder yet" in page
    assert "<b>100</b> &rarr; <b>250</b> (2.5&times; higher)" in page
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG_MAGIC)


def test_headless_base_with_its_own_tokenizer(tiny_encoder, tiny_bert, news_folder, tmp_path):
    """A base folder without tokenizer files (--tokenizer given) and without an MLM head: the report's
    "before" column is the head training began with: grown from --seed, warm-started from the unigram
    counts of the run's training text (unigram_counts.npy), read with the run's tokenizer."""
    import numpy as np

    base = tmp_path / "encoder-only"
    base.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(Path(tiny_encoder) / name, base / name)
    out = tmp_path / "run"
    fit(run_config(str(base), news_folder, out, tokenizer=tiny_bert, seed=7, max_steps=4, eval_every=None,
                   probe=PROBES[:1]))
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "has no MLM head; its head is warm-started as training starts one" in page
    (label, cells), = prediction_rows(page)
    grown = FillMask(str(base), tokenizer=tiny_bert, seed=7)
    random_head = tokens(grown, PROBES[0])
    grown.warm_start(np.load(out / "unigram_counts.npy"), "the run's text")
    assert grown.grown_head and grown.label == f"{base}, warm-started head"
    assert cells[0] == (f"before ({base}, warm-started head)", tokens(grown, PROBES[0])[0])
    assert tokens(grown, PROBES[0]) != random_head  # not the random head's noise
    # with another seed the grown head, and so the column, would differ
    other = FillMask(str(base), tokenizer=tiny_bert, seed=0)
    other.warm_start(np.load(out / "unigram_counts.npy"), "the run's text")
    assert tokens(other, PROBES[0]) != tokens(grown, PROBES[0])


def test_a_probe_without_mask_is_refused_before_training(tiny_bert, news_folder, tmp_path):
    from mlmtune.config import build_config
    from mlmtune.errors import ConfigError
    from mlmtune.training.fit import fit

    cfg = build_config(dict(model=tiny_bert, data=[news_folder], output_dir=str(tmp_path / "r"), chunk_size=64,
                            max_steps=2, probe=["no mask here"], precision="fp32"))
    with pytest.raises(ConfigError, match="--probe"):
        fit(cfg)
    assert not (tmp_path / "r").exists()


# --- side by side (issue 12, item 4) --------------------------------------------------------------

CLOZE = "# sentence<TAB>answers\nThe [MASK] is happy.\tthe|a\nShares in the company [MASK] sharply.\trose|fell\n"


def side_by_side(page: str) -> list[list[str]]:
    table = re.search(r"<table class=side>(.*?)</table>", page, re.S)
    assert table, "no side-by-side table"
    return [[html.unescape(c) for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)]


def test_side_by_side_shows_what_evaluate_scores(run_dir, tiny_bert, capsys):
    """The report's base and tuned rows are metrics.jsonl's step-0 and final evaluations, and
    `mlmtune evaluate --config OUT/run.json --model BASE --model OUT` gives the same numbers."""
    rows = side_by_side((run_dir / "report.html").read_text(encoding="utf-8"))
    assert rows[0] == ["model", "perplexity", "accuracy", "masked tokens"]  # no cloze columns without --probes
    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] == "eval"]
    base, final = evals[0], evals[-1]
    assert base["step"] == 0 and final["step"] == json.loads((run_dir / "results.json").read_text())["steps"]
    expected = [[f"before: {tiny_bert}", base], ["after: this run", final]]
    assert [row[0] for row in rows[1:]] == [label for label, _ in expected]
    for row, (_, record) in zip(rows[1:], expected):
        assert row[1:] == [_fmt(record["perplexity"]), f"{record['accuracy']:.1%}", f"{record['masked_tokens']:,}"]

    capsys.readouterr()
    assert main(["evaluate", "--config", str(run_dir / "run.json"), "--model", tiny_bert, "--model", str(run_dir),
                 "--json"]) == 0
    scored = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for got, record in zip(scored, (base, final)):  # exactly: the same masks, batches and attention
        assert (got["masked_tokens"], got["perplexity"], got["accuracy"]) == \
            (record["masked_tokens"], record["perplexity"], record["accuracy"])


def test_report_with_a_cloze_file_adds_cloze_for_both(run_dir, tiny_bert, news_folder, tmp_path, capsys):
    from mlmtune.eval.compare import compare

    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    probes = tmp_path / "cloze.tsv"
    probes.write_text(CLOZE, encoding="utf-8")
    assert main(["report", str(out), "--probes", str(probes)]) == 0
    rows = side_by_side((out / "report.html").read_text(encoding="utf-8"))
    assert rows[0][-2:] == ["cloze top-1", "cloze top-5"]
    run = json.loads((out / "run.json").read_text())["config"]
    options = {k: run[k] for k in ("chunk_size", "eval_size", "seed", "precision", "batch_size")}
    scored = compare([tiny_bert, str(out)], news_folder, probes=str(probes), say=lambda m: None, **options)
    for row, got in zip(rows[1:], scored):
        assert row[-2:] == [f"{got['cloze_top1']:.1%}", f"{got['cloze_top5']:.1%}"], row
        assert got["cloze_items"] == 2
    assert "2 items" in (out / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("content", [None, "The [MASK] is happy. the\n", "No mask here.\tthe\n", "A [MASK] [MASK].\ta\n"])
def test_report_with_a_bad_cloze_file_writes_nothing(run_dir, tmp_path, capsys, content):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    probes = tmp_path / "cloze.tsv"
    if content is not None:
        probes.write_text(content, encoding="utf-8")
    capsys.readouterr()
    assert main(["report", str(out), "--probes", str(probes)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(probes) in err[0], err
    assert captured.out == ""
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing written


def test_the_headline_of_a_grown_head_counts_from_its_warm_start(tiny_encoder, news_folder, tmp_path):
    """A gain against a random head alone is not an honest headline: the report also names the warm start."""
    out = tmp_path / "grown"
    results = fit(run_config(tiny_encoder, news_folder, out, max_steps=4, eval_every=None))
    page = (out / "report.html").read_text(encoding="utf-8")
    fresh, warm, last = (results[k] for k in ("baseline_perplexity", "warm_start_perplexity", "eval_perplexity"))
    assert warm < fresh
    assert (f"<b>{_fmt(fresh)}</b> (fresh head) &rarr; <b>{_fmt(warm)}</b> (warm start) &rarr; <b>{_fmt(last)}</b> "
            f"({_fmt(warm / last, 2)}&times; lower than the warm start)") in page

    # the honest "before": the report's base column is the warm-started head, with the very words that serve
    # (and so predict --compare: the same run/before.shown_model) shows beside this run for the same sentence
    from mlmtune.serve.app import _predict_all, load_models

    served = load_models(str(out), compare=tiny_encoder)
    base = next(m for m in _predict_all(served, PROBES[0], 5) if m["role"] == "base")
    title, words = prediction_rows(page)[0][1][0]  # the first probe's one mask: (title, words) of the base
    assert base["label"] == f"{tiny_encoder}, warm-started head" and title == f"before ({base['label']})"
    assert base["head"] == "warm" and base["head_text"] == "this run's training text"
    pieces = served[1].fm.tokenizer.convert_ids_to_tokens([p["token"] for p in base["masks"][0]])
    assert words == ["…" + t.removeprefix("##") if piece else t for t, piece in zip(pieces, base["pieces"][0])]


# --- what the report tells (issue 13) -------------------------------------------------------------

@pytest.mark.parametrize("value, shown", [
    (45242.7, "45,243"), (72.7567, "72.76"), (0.30976, "0.3098"), (5e-05, "0.00005"), (3237.56, "3,238"),
    (1234567.0, "1,234,567"), (12, "12"), (45749, "45,749"), (0.0, "0"), (2.0, "2"), (1e-07, "0.0000001"),
])
def test_one_number_format(value, shown):
    assert _fmt(value) == shown


@pytest.mark.parametrize("seconds, shown", [
    (156, "2 min 36 s"), (0.002, "2 ms"), (4.24, "4.2 s"), (38.4, "38 s"), (3900, "1 h 5 min"), (60, "1 min 0 s"),
])
def test_time_in_human_units(seconds, shown):
    assert duration(seconds) == shown


def synthetic_records():
    """Perplexity across decades (a grown head), training loss and learning rate, eval loss and accuracy."""
    evals = [(0, 10.73, 45749.1, 0.0), (100, 5.1, 164.0, 0.21), (200, 4.6, 99.5, 0.27), (428, 4.29, 72.76, 0.31)]
    records = [{"type": "eval", "step": s, "loss": l, "perplexity": p, "accuracy": a, "time": 1795526973.9 + s}
               for s, l, p, a in evals]
    records.insert(1, {"type": "warm_start", "step": 0, "loss": 7.53, "perplexity": 1865.75, "accuracy": 0.04})
    records += [{"type": "train", "step": s, "loss": 7.5 - s / 100, "lr": 2e-4 * (1 - s / 430), "time": 1795526974.0 + s}
                for s in range(10, 430, 10)]
    return evals, records


def test_curves_label_the_values_and_add_accuracy_and_learning_rate():
    import matplotlib.pyplot as plt

    evals, records = synthetic_records()
    fig = curves_figure(records)
    try:
        fig.canvas.draw()
        loss, ppl, acc, lr = fig.axes
        assert ["loss" in loss.get_title(), "perplexity" in ppl.get_title(), "accuracy" in acc.get_title(),
                "learning rate" in lr.get_title()] == [True] * 4
        # the eval loss beside the training loss, on the same axes; a grown head's eval curves start at its warm
        # start (7.53), not at the random head (10.73), which would set the axis
        warm = next(r for r in records if r["type"] == "warm_start")
        train_line, eval_line = loss.get_lines()
        assert list(eval_line.get_ydata()) == [warm["loss"]] + [e[1] for e in evals[1:]]
        assert list(train_line.get_xdata()) == list(range(10, 430, 10))
        assert [t.get_text() for t in loss.get_legend().get_texts()] == ["training", "eval (fixed masks)"]
        # every perplexity point labelled with its value (the warm start as such), the fresh head named off the
        # axis; minor ticks labelled at 2x and 5x
        labels = [t.get_text() for t in ppl.texts]
        assert labels == ["warm start 1,866", "fresh head: 45,749 (off the axis)"] + [_fmt(e[2]) for e in evals[1:]]
        low, high = ppl.get_ylim()
        assert high < evals[0][2] / 10 and low < evals[-1][2]  # the axis spans the warm start to the end
        assert ppl.get_yscale() == "log"
        minor = [v for v in ppl.yaxis.get_minorticklocs() if low <= v <= high]
        assert len(minor) >= 8 + 4  # 2..9 x 100 and some of the decades beside
        shown = {t.get_text() for t in ppl.yaxis.get_minorticklabels() if t.get_text()}
        assert {"200", "500", "2,000"} <= shown
        assert not any("e" in t.get_text() or "^" in t.get_text() for t in ppl.yaxis.get_majorticklabels())
        # accuracy in percent, each point labelled; the learning rate as logged
        assert [t.get_text() for t in acc.texts] == [f"{a:.1%}" for a in [warm["accuracy"]] + [e[3] for e in evals[1:]]]
        assert list(acc.get_lines()[0].get_ydata()) == pytest.approx(
            [warm["accuracy"] * 100] + [e[3] * 100 for e in evals[1:]])
        assert list(lr.get_lines()[0].get_ydata()) == [r["lr"] for r in records if r["type"] == "train"]
    finally:
        plt.close(fig)


def config_section(page: str) -> tuple[list[str], list[str]]:
    """The config tables -> (keys shown first, keys folded in <details>)."""
    section = page.split("<h2>Config</h2>", 1)[1].split("<h2>Versions</h2>", 1)[0]
    shown, _, folded = section.partition("<details>")
    keys = lambda part: re.findall(r"<tr><th>(.*?)</th>", part)  # noqa: E731
    return keys(shown), keys(folded)


def test_config_shows_what_differs_from_the_defaults_first(run_dir):
    from mlmtune.config import build_config

    page = (run_dir / "report.html").read_text(encoding="utf-8")
    shown, folded = config_section(page)
    config, defaults = json.loads((run_dir / "run.json").read_text())["config"], build_config().to_dict()
    assert shown == [k for k in config if config[k] != defaults.get(k)]
    assert folded == [k for k in config if config[k] == defaults.get(k)]
    assert {"model", "chunk_size", "lr", "max_steps", "probe"} <= set(shown)
    assert {"mlm_probability", "weight_decay", "epochs"} <= set(folded)
    assert f"<summary>{len(folded)} options at their defaults</summary>" in page


def test_run_date_and_baseline_accuracy(tmp_path):
    """results.json's started_at / finished_at / baseline_accuracy where a run wrote them; an older run's
    date from run.json's started and the metrics' timestamps, its baseline accuracy from the step-0 evaluation."""
    evals, records = synthetic_records()
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "run.json").write_text(json.dumps({"config": {"model": "minilm"}, "started": "2026-11-24T13:29:37+0000"}))
    (tmp_path / "results.json").write_text(json.dumps({"steps": 428, "eval_accuracy": 0.31, "wall_seconds": 288.8}))
    write_report(tmp_path, say=lambda m: None)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "run on 2026-11-24 at 13:29 UTC, finished 13:36 (4 min 49 s)" in page  # the last record at +428 s
    assert "masked-token accuracy <b>0.0%</b> (baseline) &rarr; <b>31.0%</b>" in page

    (tmp_path / "results.json").write_text(json.dumps({
        "steps": 428, "eval_accuracy": 0.31, "baseline_accuracy": 0.0402, "started_at": "2026-11-25T08:00:05+00:00",
        "finished_at": "2026-11-25T08:02:41+00:00"}))
    write_report(tmp_path, say=lambda m: None)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "run on 2026-11-25 at 08:00 UTC, finished 08:02 (2 min 36 s)" in page
    assert "masked-token accuracy <b>4.0%</b> (baseline) &rarr; <b>31.0%</b>" in page
    assert "<tr><th>accuracy before training</th><td>4.0%</td></tr>" in page

    # figures of the wrong type (a hand edit, another version) fall back, never fail the report
    (tmp_path / "results.json").write_text(json.dumps({"started_at": "yesterday", "finished_at": [1],
                                                       "baseline_accuracy": "high", "wall_seconds": None}))
    write_report(tmp_path, say=lambda m: None)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "run on 2026-11-24 at 13:29 UTC, finished 13:36 (6 min 57 s)" in page  # run.json's start, the last record
    assert "masked-token accuracy <b>0.0%</b> (baseline)" in page


# --- no run, a damaged run.json, junk in metrics.jsonl --------------------------------------------

@pytest.mark.parametrize("kind", ["empty-folder", "missing-folder", "a-file"])
def test_report_without_a_run(capsys, tmp_path, kind):
    folder = tmp_path / "folder"
    if kind == "empty-folder":
        folder.mkdir()
    elif kind == "a-file":
        folder.write_text("x")
    code, _, err = run_cli(capsys, "report", folder)
    assert_clean_error(code, err, "run.json")
    if kind == "empty-folder":
        assert list(folder.iterdir()) == []
    elif kind == "missing-folder":
        assert not folder.exists()


def test_report_with_a_damaged_run_json(capsys, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text('{"config": ')
    code, _, err = run_cli(capsys, "report", folder)
    assert_clean_error(code, err, "run.json")


def test_report_with_junk_in_metrics_jsonl(capsys, tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"config": {"chunk_size": 64}}))
    good = [{"type": "eval", "step": 0, "perplexity": 100.0}, {"type": "train", "step": 5, "loss": 4.0},
            {"type": "eval", "step": 10, "perplexity": 40.0}]
    lines = [json.dumps(good[0]), *JUNK_LINES, json.dumps(good[1]), json.dumps(good[2])]
    (tmp_path / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    code, out, err = run_cli(capsys, "report", tmp_path)
    assert_ok(code, err)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<b>100</b> &rarr; <b>40</b> (2.5&times; lower)" in page  # from the two good evals only (the one number format)
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("run", [
    {"config": "oops"},
    {"config": ["lr", 1]},
    {"config": {"probe": "The [MASK] is happy."}},
    {"config": {"model": 5}},
    {"config": {"seed": "zero"}},
    {"config": {}, "data": "lots"},
    {"config": {}, "versions": [1]},
], ids=["config-str", "config-list", "probe-str", "model-int", "seed-str", "data-str", "versions-list"])
def test_report_with_a_run_json_of_the_wrong_shape(capsys, tmp_path, run):
    (tmp_path / "run.json").write_text(json.dumps(run))
    (tmp_path / "metrics.jsonl").write_text('{"type": "eval", "step": 0, "perplexity": 10.0}\n')
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "report", tmp_path)
    assert_clean_error(code, err, "run.json", "damaged")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("probe", ["no mask here", ""])
def test_report_probe_without_mask_writes_nothing(capsys, run_copy, probe):
    for name in ("report.html", "curves.png"):
        (run_copy / name).unlink(missing_ok=True)
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "report", run_copy, "--probe", "The [MASK] is happy.", "--probe", probe)
    assert snapshot(run_copy) == before  # no curves.png, no report.html, no temporary file
    assert_clean_error(code, err, "--probe", "[MASK]")

    code, out, err = run_cli(capsys, "report", run_copy, "--probe", "The [MASK] is happy.")
    assert_ok(code, err)
    assert (run_copy / "curves.png").read_bytes().startswith(PNG_MAGIC) and (run_copy / "report.html").is_file()
    assert not list(run_copy.glob(".*"))


# --- odd runs: huge numbers, a diverged run, word pieces, added words -----------------------------

@pytest.mark.parametrize("value, shown", [(1e300, "1 × 10^300"), (-2.5e20, "-2.5 × 10^20"),
                                          (123456789012345.0, "123,456,789,012,345")])
def test_huge_numbers_keep_four_figures(value, shown):
    """1e300 was written out as 301 digits of float noise ("1,000,000,000,000,000,052,504,760,...")."""
    from mlmtune.run.report import _fmt

    assert _fmt(value) == shown


def test_report_of_a_diverged_run_is_written(tmp_path):
    """A perplexity near float's limit (a loss of ~690) crashed the plot: "Axis limits cannot be NaN or Inf"."""
    from mlmtune.run.report import write_report

    (tmp_path / "run.json").write_text(json.dumps({"config": {"model": "minilm"}}))
    records = [{"type": "eval", "step": 0, "loss": 690.0, "perplexity": 1e300, "accuracy": 0.0},
               {"type": "train", "step": 1, "loss": 1e20, "lr": 1e-4, "grad_norm": 1e30},
               {"type": "eval", "step": 2, "loss": 3.0, "perplexity": 20.1, "accuracy": 0.25}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "results.json").write_text(json.dumps({"baseline_perplexity": 1e300, "eval_perplexity": 20.1}))
    page = write_report(tmp_path, say=lambda m: None).read_text()
    assert "1 × 10^300" in page and "052,504" not in page


def test_the_reports_fill_mask_table_shows_pieces_as_pieces(tiny_bert, tiny_roberta):
    """The report listed "##iv" where the page shows "…iv" (and RoBERTa's piece "s" as if a word)."""
    from mlmtune.model.fill_mask import Prediction
    from mlmtune.run.report import _predictions_html

    class Fixed(FillMask):
        def predict(self, texts, top_k=5, *, sequences=True):
            t = self.tokenizer
            if t.mask_token == "[MASK]":
                words = ["##iv", "cat"]
            else:  # the piece "s" and a whole word ("Ġthe")
                words = ["s", next(w for w in sorted(t.get_vocab()) if w.startswith("Ġ") and w[1:].isalpha())]
            return [[[Prediction(0.5, t.convert_tokens_to_ids(w), t.decode([t.convert_tokens_to_ids(w)]))
                      for w in words]] for _ in texts]

    table = _predictions_html(["The [MASK] is happy."], Fixed(tiny_roberta), Fixed(tiny_bert))
    assert "##" not in table
    assert "<li>…iv <span>" in table and "<li>…s <span>" in table and "<li>cat <span>" in table
    assert table.count("<li>…") == 2  # the whole words stay words


def test_report_puts_the_base_cloze_on_the_row_of_the_base_with_its_own_vocabulary(capsys, tmp_path, vocab_run_copy):
    """The base is cloze-scored as it is (its own tokenizer); with --add-tokens the report's row "base"
    is the base *with the added words*, which nobody cloze-scored."""
    import re

    probes = tmp_path / "cloze.tsv"
    probes.write_text("The glaxosmith [MASK].\treport\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "report", vocab_run_copy, "--probes", probes)
    assert_ok(code, err)
    page = (vocab_run_copy / "report.html").read_text()
    rows = {re.sub("<.*?>", "", r.split("</td>")[0]): r for r in re.findall(r"<tr><td>(.*?)</tr>", page)}
    own = next(r for label, r in rows.items() if "its own vocabulary" in label)
    with_words = next(r for label, r in rows.items() if "with the added words" in label)
    assert "%" in own.split("</td>")[-2] and "&ndash;" in with_words.split("</td>")[-2]


# --- on a phone, in a real browser ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.browser
def test_report_fits_a_phone(browser, tiny_bert, tiny_encoder, tmp_path):
    """report.html at 390 px (and 1280): no sideways scrolling, with long paths, a long probe and every table;
    the verdict first; each curve a figure of its own at the page's width; the base (no MLM head) shown as the
    warm-started head training began with."""
    import numpy as np
    from helpers import REPO

    from mlmtune.model.tokenizer import load_tokenizer
    from mlmtune.run.before import write_counts
    from mlmtune.run.report import write_report

    out = tmp_path / ("run-with-a-long-folder-name-" + "x" * 60)
    shutil.copytree(tiny_bert, out)  # the tuned model: tiny_bert's files; its base: tiny_encoder (no MLM head)
    probe = "The government announced a new [MASK] on Tuesday after a long meeting in " + "Brussels" * 8 + "."
    (out / "run.json").write_text(json.dumps({
        "config": {"model": tiny_encoder, "output_dir": str(out), "data": [str(tmp_path / ("corpus-" + "y" * 80))],
                   "probe": [probe], "chunk_size": 64, "lr": 0.003, "seed": 42, "max_steps": 428, "weight_decay": 0.01},
        "data": {"documents": 2127, "train_fingerprint": "a2d7e5b4adb8d9c1" * 4}, "started": "2026-11-24T13:29:37+0000",
        "versions": {"platform": "Linux-6.18.44-fc-v595-x86_64-with-glibc2.36-and-a-very-long-suffix"}}))
    write_counts(out / "unigram_counts.npy", np.arange(len(load_tokenizer(tiny_encoder)), dtype=np.int64) % 7)
    curve_points = [(0, 10.7, 45749.1, 0.0)] + [(s, 6.0 - s / 200, 1866 / (1 + s / 20), 0.04 + s / 2000)
                                                for s in range(0, 429, 53)]
    records = [{"type": "eval" if i != 1 else "warm_start", "step": s, "loss": l, "perplexity": p, "accuracy": a,
                "masked_tokens": 5685} for i, (s, l, p, a) in enumerate(curve_points)]
    records += [{"type": "train", "step": s, "loss": 6.0, "lr": 1e-4} for s in range(10, 430, 10)]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (out / "results.json").write_text(json.dumps({"steps": 428, "eval_perplexity": 72.76, "wall_seconds": 288.8,
                                                  "files": ["config.json", "model.safetensors", "tokenizer.json"]}))
    write_report(out, base_model=tiny_encoder, say=lambda m: None)

    shots = REPO / "test-output"
    shots.mkdir(exist_ok=True)
    for width in (390, 1280):
        page = browser.new_page(viewport={"width": width, "height": 844})
        try:
            page.goto((out / "report.html").as_uri())
            assert page.locator("table.preds").is_visible() and page.locator("table.side").is_visible()
            verdict = page.locator(".verdict")
            assert verdict.is_visible() and "Still improving fast" in verdict.inner_text()
            assert "--resume --max-steps 856" in verdict.inner_text()
            assert page.locator(".verdict").bounding_box()["y"] < page.locator(".figs").bounding_box()["y"]
            assert f"before ({tiny_encoder}, warm-started head)" in page.locator("table.preds").inner_text()
            page.locator("details summary").first.click()  # the folded defaults, opened, fit too
            widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert widths[0] <= widths[1], widths
            assert page.evaluate("document.documentElement.clientWidth") == width
            figures = [f.bounding_box() for f in page.locator(".figs img").all()]
            assert len(figures) == 4
            # each curve at least the width a phone gives the text (not a quarter of a shrunk 2 x 2 image)
            assert all(f["width"] >= min(340, width / 2 - 60) for f in figures), figures
            page.screenshot(path=str(shots / f"report-{width}.png"), full_page=True)
        finally:
            page.close()
