"""metrics.jsonl (run/metrics_log.py): lines that are not records are skipped, and dropped when a run
resumes."""

from __future__ import annotations

import json
import shutil

from helpers import JUNK_LINES, assert_ok, resume


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
    assert [r["step"] for r in records if r["type"] == "eval"] == [0, 1, 2]  # 1: an interim evaluation (~8 a plan)
