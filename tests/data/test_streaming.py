"""--streaming: an IterableDataset path for corpora larger than memory, with the same guarantees."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from helpers import assert_clean_error, assert_ok, run_cli, train_args, train_argv
from safetensors.torch import load_file

from mlmtune.config import build_config
from mlmtune.data.streaming import StreamingData, open_documents
from mlmtune.errors import ConfigError
from mlmtune.run.metrics_log import read_metrics
from mlmtune.training.fit import fit


def stream_cfg(model, data, out, **extra):
    values = dict(model=model, data=[data], output_dir=str(out), chunk_size=64, batch_size=8, eval_size=30,
                  lr=3e-3, head_lr=3e-3, max_steps=10, log_every=1, report=False, precision="fp32", seed=0,
                  streaming=True)
    values.update(extra)
    return build_config(values)


def test_streaming_trains_and_keeps_fixed_eval_masks(tiny_bert, news_folder, tmp_path):
    out = tmp_path / "run"
    fit(stream_cfg(tiny_bert, news_folder, out, eval_every=5))
    evals = [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [0, 5, 10]
    # the same fixed masks: the whole set at step 0 and at the end, the curve's subset at every point
    assert len({evals[0]["masked_tokens"], evals[-1]["masked_tokens"]}) == 1
    assert len({r["subset_masked_tokens"] for r in evals}) == 1
    assert evals[-1]["perplexity"] < evals[0]["perplexity"]
    assert json.loads((out / "run.json").read_text())["data"]["streaming"] is True


def test_streaming_resume_is_exact(tiny_encoder, news_folder, tmp_path):
    straight = tmp_path / "straight"
    fit(stream_cfg(tiny_encoder, news_folder, straight, save_every=4))
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    # back to the state after step 4: later checkpoint, final model and results gone
    shutil.rmtree(resumed / "checkpoints" / "step-0000008")
    for name in ("model.safetensors", "results.json"):
        (resumed / name).unlink()
    fit(stream_cfg(tiny_encoder, news_folder, resumed, save_every=4, output_dir=str(resumed), resume=True))
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_eval_documents_are_held_out_of_the_stream(tokenizer, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"body": f"document {i} " + "word " * 50}) + "\n" for i in range(40)))
    docs = open_documents([str(path)], text_column="body")
    data = StreamingData(docs, tokenizer, chunk_size=32, line_by_line=False, max_length=128, eval_size=10, seed=0)
    held_out = data.eval_documents
    assert 0 < held_out < 40
    seen = {int(n) for _, t, _ in _first(data, 40) for n in re.findall(r"document (\d+)", tokenizer.decode(t))}
    assert seen and min(seen) >= held_out


def _first(data, n):
    out = []
    for item in data.train_blocks():
        out.append(item)
        if len(out) == n:
            return out


def test_streaming_needs_max_steps(tiny_bert, news_folder, tmp_path):
    with pytest.raises(ConfigError, match="--max-steps"):
        fit(stream_cfg(tiny_bert, news_folder, tmp_path / "x", max_steps=None))
    assert not (tmp_path / "x").exists()


# --- bad input, --eval-data, .tsv -----------------------------------------------------------------

def test_streaming_without_max_steps(capsys, tiny_bert, news_folder, tmp_path):
    argv = train_argv(tiny_bert, news_folder, tmp_path / "out", "--streaming")
    argv.remove("--max-steps")
    argv.remove("1")
    code, _, err = run_cli(capsys, *argv)
    assert_clean_error(code, err, "--streaming", "--max-steps")
    assert not (tmp_path / "out").exists()


def test_streaming_malformed_jsonl(capsys, tiny_bert, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "unterminated\n')
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, path, tmp_path / "out", "--streaming"))
    assert_clean_error(code, err, "bad.jsonl")
    assert not (tmp_path / "out").exists()


def test_streaming_takes_eval_data_as_its_eval_set(tiny_bert, split_news, tmp_path, capsys):
    train, valid = split_news
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--eval-data", valid,
                                                    "--streaming", "--max-steps", 2, "--eval-size", 20))
    assert_ok(code, err)
    data = json.loads((out / "run.json").read_text())["data"]
    assert data["holdout"] == "eval-data" and data["eval_examples"] == 20
    assert "from --eval-data" in stdout + err


def test_a_tsv_file_streams_as_a_table(tmp_path):
    from mlmtune.data.streaming import open_documents

    path = tmp_path / "reviews.tsv"
    path.write_text('text\tlabel\nA "quoted" start\t1\nsecond row\t0\n', encoding="utf-8")
    assert [ex["text"] for ex in open_documents([str(path)])] == ['A "quoted" start', "second row"]


def test_two_processes_tokenize_each_document_once(tokenizer, tmp_path, monkeypatch):
    """--streaming on 2 processes: the first tokenizes the held-out head and hands it over, then each takes
    every other training document. Counted here: every document's text goes to the tokenizer exactly once
    across the two shares and the hold-out, none twice, none left out."""
    path = tmp_path / "docs.jsonl"
    texts = [f"document {i} " + "word " * (20 + i % 7) for i in range(60)]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    seen: list[str] = []
    real = StreamingData._blocks
    monkeypatch.setattr(StreamingData, "_blocks", lambda self, batch: seen.extend(batch) or real(self, batch))
    options = dict(chunk_size=32, line_by_line=False, max_length=128, eval_size=10, seed=0)
    docs = open_documents([str(path)])
    held_out = StreamingData(docs, tokenizer, **options).held_out()  # the first process's work
    held_texts = list(seen)
    assert 0 < len(held_texts) < len(texts)
    for share in (0, 1):
        before = len(seen)
        data = StreamingData(docs, tokenizer, **options, share=share, shares=2, held_out=held_out)
        assert len(seen) == before  # taking the hand-over tokenizes nothing
        list(data._epoch_blocks(0))
        assert 0 < len(seen) - before < len(texts) - len(held_texts)  # a share, not all of it
    assert sorted(seen) == sorted(texts)  # each document once, across the hold-out and both shares
