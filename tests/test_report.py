"""report.html: written at the end of training, rewritten by `mlmtune report OUTPUT`, refused for a non-run folder."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
from pathlib import Path

import pytest

from mlmtune.cli import main
from mlmtune.config import build_config
from mlmtune.metrics import read_metrics
from mlmtune.predict import FillMask
from mlmtune.report import _fmt
from mlmtune.train import fit

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
    return [[p.token for p in mask] for mask in model.predict([text], top_k=5)[0]]


def test_training_writes_a_complete_report(run_dir, tiny_bert):
    page = (run_dir / "report.html").read_text(encoding="utf-8")

    # the curves: curves.png beside the report, and the same PNG embedded in it
    png = (run_dir / "curves.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5_000
    embedded = re.search(r'<img alt="training loss and eval perplexity" src="data:image/png;base64,([^"]+)">', page)
    assert embedded and base64.b64decode(embedded.group(1)) == png

    # the headline: baseline -> final eval perplexity from metrics.jsonl
    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [0, 6, 12]
    first, last = evals[0]["perplexity"], evals[-1]["perplexity"]
    assert f"<b>{first:,.1f}</b> &rarr; <b>{last:,.1f}</b> ({first / last:,.1f}&times; lower)" in page

    # the config and the results figures
    run = json.loads((run_dir / "run.json").read_text())
    for key, value in [("model", html.escape(tiny_bert)), ("chunk_size", "64"), ("lr", "0.003"), ("max_steps", "12"),
                       ("probe", html.escape(", ".join(PROBES)))]:
        assert f"<tr><th>{key}</th><td>{value}</td></tr>" in page, key
    assert run["config"]["chunk_size"] == 64
    results = json.loads((run_dir / "results.json").read_text())
    for key in ("steps", "eval_perplexity", "eval_accuracy", "train_tokens_per_second", "peak_rss_mb"):
        assert f"<tr><th>{key}</th><td>{html.escape(_fmt(results[key]))}</td></tr>" in page, key
    assert "<h2>Versions</h2>" in page and "<th>transformers</th>" in page

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
    assert "<b>100.0</b> &rarr; <b>250.0</b> (2.5&times; higher)" in page
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG_MAGIC)


def test_headless_base_with_its_own_tokenizer(tiny_encoder, tiny_bert, news_folder, tmp_path):
    """A base folder without tokenizer files (--tokenizer given) and without an MLM head: the report's
    "before" column is the head training grew from --seed, read with the run's tokenizer."""
    base = tmp_path / "encoder-only"
    base.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(Path(tiny_encoder) / name, base / name)
    out = tmp_path / "run"
    fit(run_config(str(base), news_folder, out, tokenizer=tiny_bert, seed=7, max_steps=4, eval_every=None,
                   probe=PROBES[:1]))
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "has no MLM head" in page
    (label, cells), = prediction_rows(page)
    grown = FillMask(str(base), tokenizer=tiny_bert, seed=7)
    assert grown.grown_head
    assert cells[0] == (f"before ({base})", tokens(grown, PROBES[0])[0])
    # with another seed the grown head, and so the column, would differ
    assert tokens(FillMask(str(base), tokenizer=tiny_bert, seed=0), PROBES[0]) != tokens(grown, PROBES[0])


def test_a_probe_without_mask_is_refused_before_training(tiny_bert, news_folder, tmp_path):
    from mlmtune.config import build_config
    from mlmtune.errors import ConfigError
    from mlmtune.train import fit

    cfg = build_config(dict(model=tiny_bert, data=[news_folder], output_dir=str(tmp_path / "r"), chunk_size=64,
                            max_steps=2, probe=["no mask here"], precision="fp32"))
    with pytest.raises(ConfigError, match="--probe"):
        fit(cfg)
    assert not (tmp_path / "r").exists()


# --- side by side (issue 12, item 4) ----------------------------------------------------------------

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
        assert row[1:] == [f"{record['perplexity']:,.2f}", f"{record['accuracy']:.1%}", f"{record['masked_tokens']:,}"]

    capsys.readouterr()
    assert main(["evaluate", "--config", str(run_dir / "run.json"), "--model", tiny_bert, "--model", str(run_dir),
                 "--json"]) == 0
    scored = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for got, record in zip(scored, (base, final)):  # exactly: the same masks, batches and attention
        assert (got["masked_tokens"], got["perplexity"], got["accuracy"]) == \
            (record["masked_tokens"], record["perplexity"], record["accuracy"])


def test_report_with_a_cloze_file_adds_cloze_for_both(run_dir, tiny_bert, news_folder, tmp_path, capsys):
    from mlmtune.evaluate import compare

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
    assert (f"<b>{fresh:,.1f}</b> (fresh head) &rarr; <b>{warm:,.1f}</b> (warm start) &rarr; <b>{last:,.1f}</b> "
            f"({warm / last:,.1f}&times; lower than the warm start)") in page
