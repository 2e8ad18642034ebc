"""Bad input, part 2: a tokenizer larger than the model, damaged run state (checkpoints, metrics.jsonl,
run.json), a report that fails half-way, the Python API called more than once, and messages that used to
point at the wrong fix.

Same standard as test_bad_input.py: one line `error: <problem>: <fix>` on stderr, exit code 2, nothing
half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import JUNK_LINES, assert_clean_error, assert_ok, eval_argv, resume, run_cli, snapshot, train_argv

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- item 12: a tokenizer with more ids than the model has embeddings ----------------------------

@pytest.fixture(scope="module")
def small_model(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """A BERT with a 1,000-row vocabulary: alone (no tokenizer), and with the 30,522-token minilm
    tokenizer saved beside it (what `serve` and `predict` would load)."""
    import torch
    from helpers import tiny_bert_config
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("small")
    model = BertForMaskedLM(tiny_bert_config(1000))
    model.save_pretrained(folder / "small")
    model.save_pretrained(folder / "with-big-tokenizer")
    tokenizer.save_pretrained(folder / "with-big-tokenizer")
    return {"alone": folder / "small", "with-tokenizer": folder / "with-big-tokenizer"}


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_tokenizer_larger_than_the_model_vocabulary(capsys, small_model, tiny_bert, news_folder, tmp_path, command):
    out = tmp_path / "out"
    if command == "train":
        argv = train_argv(small_model["alone"], news_folder, out, "--tokenizer", tiny_bert)
    elif command == "evaluate":
        argv = eval_argv(small_model["alone"], news_folder, "--tokenizer", tiny_bert)
    else:
        argv = ["predict", "--model", small_model["with-tokenizer"], "The [MASK] is happy."]
    code, _, err = run_cli(capsys, *argv)
    assert_clean_error(code, err, "30,522", "1,000", "--tokenizer")
    assert not out.exists()  # train: no run.json left behind


def test_serve_refuses_a_tokenizer_larger_than_the_model(small_model):
    from mlmtune.errors import ModelError
    from mlmtune.serve.app import load_models

    with pytest.raises(ModelError, match="30,522 tokens .* 1,000 token embeddings"):
        load_models(str(small_model["with-tokenizer"]))


# --- item 14: damaged state ------------------------------------------------------------------------

@pytest.mark.parametrize("content, needle", [
    ([1, 2], "a JSON list"),
    ("oops", "a JSON str"),
    ({"tokens": 5}, "no step"),
    ({"step": "2"}, "'2'"),
    ({"step": 1.5}, "1.5"),
    ({"step": True}, "True"),
    ({"step": 7}, "not the folder's 2"),
    ({"step": 2, "tokens": "many"}, "tokens"),
    ({"step": 2, "train_seconds": [1]}, "train_seconds"),
    ({"step": 2, "baseline_perplexity": "high"}, "baseline_perplexity"),
    ({"step": 2, "eval_seconds": -3}, "eval_seconds"),
])
def test_trainer_state_of_the_wrong_shape(tmp_path, content, needle):
    from mlmtune.errors import CheckpointError
    from mlmtune.run.checkpoints import read_state

    folder = tmp_path / "step-0000002"
    folder.mkdir()
    (folder / "trainer_state.json").write_text(json.dumps(content))
    with pytest.raises(CheckpointError) as info:
        read_state(folder)
    message = str(info.value)
    for part in ("trainer_state.json", str(folder), needle, "--overwrite"):
        assert part in message, (part, message)


def test_a_good_trainer_state_is_read(tmp_path):
    from mlmtune.run.checkpoints import read_state

    folder = tmp_path / "step-0000003"
    folder.mkdir()
    state = {"step": 3, "tokens": 96, "train_seconds": 1.5, "eval_seconds": 0, "baseline_perplexity": None}
    (folder / "trainer_state.json").write_text(json.dumps(state))
    assert read_state(folder) == state


@pytest.mark.parametrize("content", [[2], {"step": "2"}, {"step": 2, "tokens": "many"}], ids=["list", "step-str", "tokens"])
def test_resume_from_a_trainer_state_of_the_wrong_shape(capsys, run_copy, content):
    newest = sorted((run_copy / "checkpoints").glob("step-*"))[-1]
    (newest / "trainer_state.json").write_text(json.dumps(content))
    before = snapshot(run_copy)
    code, _, err = resume(capsys, run_copy)
    assert_clean_error(code, err, "damaged", newest.name, "trainer_state.json", "--overwrite")
    assert snapshot(run_copy) == before


def test_metrics_log_truncate_skips_lines_that_are_not_records(tmp_path):
    from mlmtune.run.metrics_log import MetricsLog, read_metrics

    path = tmp_path / "metrics.jsonl"
    good = [{"type": "eval", "step": 0, "perplexity": 90.0}, {"type": "train", "step": 2, "loss": 4.0},
            {"type": "eval", "step": 4, "perplexity": 50.0}, {"type": "train", "step": 6, "loss": 3.0}]
    lines = [json.dumps(good[0]), *JUNK_LINES[:4], json.dumps(good[1]), *JUNK_LINES[4:], json.dumps(good[2]),
             json.dumps(good[3])]
    path.write_text("".join(line + "\n" for line in lines))
    MetricsLog(path).truncate_after(4)
    # dropped: the junk (bare values, no or non-integer step, torn), and the steps after the checkpoint
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r for r in kept if r in good] == good[:3]
    assert all(isinstance(r, dict) and isinstance(r["step"], int) and r["step"] <= 4 for r in kept)
    assert read_metrics(path) == kept


def test_resume_with_junk_in_metrics_jsonl(capsys, run_copy):
    shutil.rmtree(sorted((run_copy / "checkpoints").glob("step-*"))[-1])  # resume from step 1, train step 2
    with (run_copy / "metrics.jsonl").open("a") as fh:
        fh.write("5\n" + '"text"\n' + '{"type": "eval", "step": "x"}\n')
    code, _, err = resume(capsys, run_copy)
    assert_ok(code, err)
    records = [json.loads(line) for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert all(isinstance(r, dict) and isinstance(r["step"], int) for r in records)  # the junk is gone
    assert [r["step"] for r in records if r["type"] == "eval"] == [0, 2]


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


def test_resume_with_a_run_json_whose_config_is_a_string(capsys, run_copy):
    run = json.loads((run_copy / "run.json").read_text())
    argv = ["--config", run_copy.parent / "cfg.json", "--output-dir", run_copy, "--resume"]
    (run_copy.parent / "cfg.json").write_text(json.dumps(run["config"]))
    (run_copy / "run.json").write_text(json.dumps({**run, "config": "oops"}))
    before = snapshot(run_copy)
    code, _, err = run_cli(capsys, "train", *argv)
    assert_clean_error(code, err, "run.json", "damaged", "another --output-dir")
    assert snapshot(run_copy) == before


# --- item 15: `report` checks every input before it writes -------------------------------------------

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


# --- item 16: the Python API, many calls in one process ----------------------------------------------

def test_python_api_works_again_and_again(tiny_bert, news_folder, tmp_path):
    import mlmtune
    from mlmtune.errors import ConfigError, InputError, MlmtuneError

    small = dict(chunk_size=32, eval_size=8, seed=0, precision="fp32")
    perplexities = []
    for i in range(3):  # interleaved: importing the stages must not replace the functions
        results = mlmtune.train(model=tiny_bert, data=[news_folder], output_dir=str(tmp_path / f"run{i}"),
                                batch_size=4, max_steps=1, report=False, **small)
        assert results["steps"] == 1 and (tmp_path / f"run{i}" / "model.safetensors").is_file()
        perplexities.append(mlmtune.evaluate(tiny_bert, news_folder, **small).perplexity)
        top = mlmtune.fill_mask(tiny_bert, "The [MASK] is happy.", top_k=3)
        assert len(top) == 3 and all(set(p) == {"score", "token", "token_str", "sequence"} for p in top)  # the pipeline's shape
        assert callable(mlmtune.train) and callable(mlmtune.evaluate) and callable(mlmtune.fill_mask)
    assert perplexities[0] == perplexities[1] == perplexities[2]  # the same fixed masks every time

    # bad input through the API: typed errors, never SystemExit
    with pytest.raises(ConfigError):
        mlmtune.train(model=tiny_bert, data=[news_folder], output_dir=str(tmp_path / "bad"), no_such_option=1)
    with pytest.raises(ConfigError):
        mlmtune.evaluate(tiny_bert, news_folder, no_such_option=1)
    with pytest.raises(InputError):
        mlmtune.fill_mask(tiny_bert, "no mask here")
    with pytest.raises(MlmtuneError):
        mlmtune.evaluate(tiny_bert, str(tmp_path / "missing.txt"), **small)
    # the submodules stay importable
    from mlmtune.training.fit import fit

    assert callable(fit) and "mlmtune.train" not in sys.modules  # no module of the API function's name


def test_python_api_in_a_fresh_process_without_torch_at_import(tmp_path):
    code = (
        "import sys, mlmtune\n"
        "assert 'torch' not in sys.modules, 'import mlmtune loaded torch'\n"
        "for _ in range(2):\n"
        "    for call in (lambda: mlmtune.evaluate('m', 'd', bogus=1), lambda: mlmtune.train(bogus=1)):\n"
        "        try:\n"
        "            call()\n"
        "        except mlmtune.MlmtuneError:\n"
        "            pass\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


# --- messages that pointed at the wrong fix -----------------------------------------------------------

def test_utf32_file_is_named_as_utf32(capsys, tiny_bert, news_folder, tmp_path):
    data = tmp_path / "wide.txt"
    data.write_text("\n\n".join(p.read_text() for p in sorted(Path(news_folder).glob("*.txt"))[:3]), encoding="utf-32")
    for extra in ([], ["--encoding", "utf-16"]):
        code, _, err = run_cli(capsys, *eval_argv(tiny_bert, data, *extra))
        line = assert_clean_error(code, err, "UTF-32", "--encoding utf-32")
        assert "--encoding utf-16" not in line
    code, out, err = run_cli(capsys, *eval_argv(tiny_bert, data, "--encoding", "utf-32", "--json"))
    assert_ok(code, err)
    assert json.loads(out)["masked_tokens"] > 0


@pytest.mark.parametrize("kind", ["fifo", "dev-null"])
def test_data_that_is_not_a_regular_file(capsys, tiny_bert, tmp_path, monkeypatch, kind):
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this system")
        os.mkfifo(tmp_path / "pipe")
        source = "pipe"  # a bare name: it exists, so it is no Hub dataset
        monkeypatch.chdir(tmp_path)
    else:
        if not Path("/dev/null").exists():
            pytest.skip("no /dev/null on this system")
        source = "/dev/null"
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, source, out))
    line = assert_clean_error(code, err, source, "not a regular file")
    assert "no such file" not in line
    assert not out.exists()


@pytest.mark.parametrize("content, needle", [("[1, 2]", "a JSON list"), ('"bert"', "a JSON str")])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_model_config_json_of_the_wrong_shape(capsys, tiny_bert, news_folder, tmp_path, command, content, needle):
    model = Path(shutil.copytree(tiny_bert, tmp_path / "model"))
    (model / "config.json").write_text(content)
    argv = ["predict", "--model", model, "a [MASK] b"] if command == "predict" else eval_argv(model, news_folder)
    code, _, err = run_cli(capsys, *argv)
    line = assert_clean_error(code, err, f"{model / 'config.json'} is damaged", needle)
    assert "tokenizer" not in line


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available() or torch.backends.mps.is_available()


@pytest.mark.skipif(_has_gpu(), reason="fp16 runs on a GPU")
def test_fp16_on_a_cpu_runs_and_records_fp32(capsys, tiny_bert, news_folder, tmp_path):
    out = tmp_path / "out"
    argv = train_argv(tiny_bert, news_folder, out)
    argv[argv.index("--precision") + 1] = "fp16"
    code, _, err = run_cli(capsys, *argv)
    assert_ok(code, err)
    assert json.loads((out / "run.json").read_text())["mixed_precision"] == "no"
    assert json.loads((out / "results.json").read_text())["precision"] == "no"
