"""One optimizer step (training/step.py): accumulating micro-batches, and the gradient norm before
clipping."""

from __future__ import annotations

import os
import re
import signal

import pytest
import torch
from helpers import assert_ok, records, run_cli, tiny_run, train_args
from safetensors.torch import load_file

import mlmtune.training.loop as loop
import mlmtune.training.prepare as prepare
from mlmtune.data.batching import Batch
from mlmtune.errors import Interrupted
from mlmtune.run.metrics_log import read_metrics
from mlmtune.training.fit import fit


def test_grad_norm_is_the_norm_before_clipping(tiny_bert, split_news, tmp_path, capsys):
    train, _ = split_news
    for clip in ("1e-4", "none"):
        out = tmp_path / clip
        code, said, err = run_cli(capsys, *train_args(tiny_bert, out, "--data", train, "--max-steps", 3,
                                                      "--max-grad-norm", clip))
        assert_ok(code, err)
        records = [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "train"]
        assert len(records) == 3 and all(r["grad_norm"] > 1e-3 for r in records)  # far above the clip
        assert all(isinstance(r["time"], float) for r in records)
        # stderr is not a terminal here (a pipe, a log file): no progress bar's "\r" frames; the evaluation
        # lines say how far the run is instead
        frames = [t[max(0, i - 120):i + 60] for t in (err, said) for i, c in enumerate(t) if c == "\r"]
        assert not frames, frames
        assert re.search(r"^eval step 3 of 3 \(epoch 0\.\d+\): perplexity", said, re.M), said


def test_accumulating_two_batches_of_8_equals_one_batch_of_16(no_dropout_bert, news_folder, tmp_path):
    one = fit(tiny_run(no_dropout_bert, news_folder, tmp_path / "one", batch_size=16, max_steps=6))
    two = fit(tiny_run(no_dropout_bert, news_folder, tmp_path / "two", batch_size=8, gradient_accumulation_steps=2,
                       max_steps=6))
    assert two["train_tokens"] == one["train_tokens"]
    assert two["eval_perplexity"] == pytest.approx(one["eval_perplexity"], rel=1e-4)


# --- a global batch with no masked token is not a training step --------------------------------------

def with_empty_batches(positions: set[int], drawn: list[int]):
    """train_batches whose micro-batches at these positions (counted from the run's start) mask nothing;
    `drawn` records each first_step asked for."""
    real = prepare.train_batches

    def batches(*args, first_step: int, accumulation: int, **kwargs):
        drawn.append(first_step)
        for i, b in enumerate(real(*args, first_step=first_step, accumulation=accumulation, **kwargs)):
            if first_step * accumulation + i in positions:
                b = Batch(b.input_ids, b.attention_mask, torch.full_like(b.labels, -100), 0, b.n_tokens)
            yield b

    return batches


def adam_steps(out) -> int:
    newest = sorted((out / "checkpoints").glob("step-*"))[-1]
    return int(torch.load(newest / "optimizer.bin", weights_only=False)["state"][0]["step"])


def test_an_empty_batch_is_skipped_not_counted_and_resume_draws_the_same_batches(
        no_dropout_bert, news_folder, tmp_path, monkeypatch):
    """A batch with 0 masked tokens was a step: loss 0.0, AdamW moved the weights by momentum and decay, and the
    schedule advanced. Now it is skipped: `steps` counts only steps that learned, the optimizer took exactly
    that many, and a resumed run goes on from the data position (step + skipped), ending where a straight
    run ends."""
    drawn: list[int] = []
    monkeypatch.setattr(prepare, "train_batches", with_empty_batches({1}, drawn))
    cfg = tiny_run(no_dropout_bert, news_folder, tmp_path / "straight", max_steps=5, log_every=1, save_every=1)
    straight = fit(cfg)
    assert straight["steps"] == 5 and straight["empty_steps"] == 1
    train = [r for r in records(tmp_path / "straight") if r["type"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5] and all(r["masked_tokens"] > 0 for r in train)
    assert adam_steps(tmp_path / "straight") == 5

    real_step, sent = loop.train_step, []

    def terminated_during_step_3(*args, **kwargs):
        if args[5].step == 2 and not sent:  # SIGTERM during step 3: the loop stops after the next step
            sent.append(os.kill(os.getpid(), signal.SIGTERM))
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", terminated_during_step_3)
    out = tmp_path / "resumed"
    with pytest.raises(Interrupted):
        fit(cfg.replace(output_dir=str(out)))
    stopped_at = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*"))
    assert stopped_at < 5
    monkeypatch.setattr(loop, "train_step", real_step)
    drawn.clear()
    resumed = fit(cfg.replace(output_dir=str(out), resume=True))
    assert drawn[0] == stopped_at + 1  # the batches after the skipped one, never it again
    assert resumed["steps"] == 5 and resumed["empty_steps"] == 1
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(out / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_batches_that_never_mask_anything_stop_the_run_with_one_line(capsys, tiny_bert, news_folder, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setattr(prepare, "train_batches", with_empty_batches(set(range(1000)), []))
    code, _, err = run_cli(capsys, *train_args(tiny_bert, tmp_path / "out", "--data", news_folder, "--max-steps", 3))
    assert code == 1 and "100 global batches in a row had no masked token" in err and "Traceback" not in err


def test_a_resumed_state_counts_its_sessions_and_their_time():
    """A resumed run's total time is every session's (results.json total_wall_seconds, the report)."""
    import time

    from mlmtune.training.step import TrainState

    first = TrainState(step=5, session_start=time.perf_counter() - 100)
    saved = {"step": 5, **first.counters()}
    assert saved["sessions"] == 1 and saved["wall_seconds"] == pytest.approx(100, abs=1)
    second = TrainState.restored(saved, session_start=time.perf_counter() - 30)
    assert second.sessions == 2 and second.wall_seconds == pytest.approx(130, abs=1)
    # a checkpoint of an older mlmtune (no sessions, no wall_seconds) counts as one session of unknown time
    old = TrainState.restored({"step": 5, "tokens": 10}, session_start=time.perf_counter())
    assert old.sessions == 2 and old.wall_seconds == pytest.approx(0, abs=1)
