"""The run's verdict (run/verdict.py): from the curve, still improving (with the exact command that trains
further), converged, or rising; the curve of a grown head starts at its warm start, never at the random head."""

from __future__ import annotations

import shlex

import pytest

from mlmtune.config import parse_duration
from mlmtune.run.verdict import curve, further, grew_head, twice, verdict

DEMO = {"max_time": "270s", "max_steps": None, "epochs": 3}


def points(*values, every=50):
    return [(i * every, v) for i, v in enumerate(values)]


def test_still_falling_fast_says_train_further_with_the_command():
    got = verdict(points(1866, 420, 230, 160, 120, 95, 80, 70, 65.2), DEMO, "runs/demo")
    assert got.kind == "fast"
    assert got.command == "mlmtune train --config runs/demo/run.json --resume --max-time 9m"  # 540 s
    assert parse_duration("9m") == 540
    assert "fell 46% over the second half" in got.text and "120 at step 200 to 65.2 at step 400" in got.text
    assert got.line() == got.text + ": " + got.command


def test_a_flat_end_is_converged():
    got = verdict(points(900, 300, 200, 150, 141, 140.5, 140.2, 140.1, 140.0), DEMO, "runs/demo")
    assert got.kind == "converged" and got.command is None
    assert got.text.startswith("Converged on this data")


def test_a_slow_fall_still_offers_the_command():
    got = verdict(points(900, 300, 200, 150, 120, 118, 116, 114, 112), {"max_steps": 400}, "out")
    assert got.kind == "slow" and "7%" in got.text
    assert got.command == "mlmtune train --config out/run.json --resume --max-steps 800"


def test_a_rising_curve_says_so():
    got = verdict(points(900, 300, 150, 120, 110, 112, 118, 125, 131), DEMO, "runs/demo")
    assert got.kind == "rising" and got.command is None
    assert "went up from 110 at step 200 (its lowest) to 131 at step 400" in got.text


def test_too_few_points_is_no_verdict():
    assert verdict(points(1866, 65.2), DEMO, "runs/demo").kind == "unknown"


@pytest.mark.parametrize("config, flags", [
    ({"max_time": "270s"}, ["--max-time", "9m"]),
    ({"max_time": "90"}, ["--max-time", "3m"]),
    ({"max_time": "1.5h"}, ["--max-time", "3h"]),
    ({"max_time": "45s"}, ["--max-time", "90s"]),
    ({"max_steps": 120}, ["--max-steps", "240"]),
    ({"max_steps": 120, "max_time": "10m"}, ["--max-steps", "240", "--max-time", "20m"]),  # a cap doubles too
    ({"epochs": 3}, ["--epochs", "6"]),
    ({}, ["--epochs", "6"]),
])
def test_the_command_doubles_the_plan_it_was_made_with(config, flags):
    words = shlex.split(further(config, "my runs/demo"))
    assert words[:5] == ["mlmtune", "train", "--config", "my runs/demo/run.json", "--resume"]  # quoted: a space
    assert words[5:] == flags


def test_twice_writes_a_duration_the_parser_reads():
    for text in ("270s", "6m", "1.5h", "7s", "2d", "100"):
        assert parse_duration(twice(text)) == 2 * parse_duration(text)


def test_a_grown_heads_curve_starts_at_the_warm_start():
    """The random head's step-0 perplexity (near the vocabulary size) is never a point of the curve."""
    records = [{"type": "eval", "step": 0, "perplexity": 46165.3, "subset_perplexity": 45000.0},
               {"type": "warm_start", "step": 0, "perplexity": 1857.9, "subset_perplexity": 1900.0},
               {"type": "train", "step": 10, "loss": 7.0},
               {"type": "eval", "step": 50, "subset_perplexity": 400.0},
               {"type": "eval", "step": 100, "perplexity": 142.9, "subset_perplexity": 150.0}]
    assert grew_head(records)
    assert curve(records, "perplexity", grown=True, low=1) == [(0, 1900.0), (50, 400.0), (100, 150.0)]
    # a model with its own head: step 0 is the base itself, and the curve starts there
    own = [r for r in records if r["type"] != "warm_start"]
    assert not grew_head(own) and curve(own, "perplexity", grown=False, low=1)[0] == (0, 45000.0)
    # a run of an older mlmtune (no subset figures): the whole set's
    old = [{"type": "eval", "step": 0, "perplexity": 100.0}, {"type": "eval", "step": 10, "perplexity": 40.0}]
    assert curve(old, "perplexity", grown=False) == [(0, 100.0), (10, 40.0)]
    # --head-init random grew a head without a warm start: run.json's new parameters say so
    assert grew_head(own, {"new_parameters": ["cls.predictions.bias"]})


def test_a_verdict_on_subset_points_says_so():
    """The demo's verdict said "59.63 at step 622" beside its final 53.15 on the whole eval set: both true,
    but the line did not say the curve scores a quarter of the set."""
    from mlmtune.run.verdict import on_subset

    points = [(0, 1900.0), (50, 400.0), (100, 150.0)]
    subset = [{"type": "eval", "step": 100, "perplexity": 142.9, "subset_perplexity": 150.0}]
    assert on_subset(subset) and not on_subset([{"type": "eval", "step": 10, "perplexity": 40.0}])
    said = verdict(points, {"max_steps": 100}, "runs/demo", subset=on_subset(subset)).text
    assert "150 at step 100, on the curve's subset of the eval set" in said
    assert "subset" not in verdict(points, {"max_steps": 100}, "runs/demo").text
