"""The learning-rate schedule (training/optimizer.py) of a time budget."""

from __future__ import annotations

import pytest

from mlmtune.training.optimizer import BudgetSchedule


def test_budget_schedule_warms_up_and_ends_at_zero():
    s = BudgetSchedule(warmup_share=0.1)
    values = []
    for p in (0.0, 0.05, 0.1, 0.55, 1.0, 1.3):
        s.progress = p
        values.append(s(123))
    assert values == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0, 0.0])
    s = BudgetSchedule(warmup_steps=10)
    s.progress = 0.5
    assert s(5) == pytest.approx(0.25) and s(20) == pytest.approx(0.5)
