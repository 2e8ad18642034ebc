"""examples/demo_reached.py, the last lines of `make demo`: what the run reached, in words a reader takes."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from mlmtune.model.fill_mask import FillMask


def load_example():
    path = Path(__file__).parents[2] / "examples" / "demo_reached.py"
    spec = importlib.util.spec_from_file_location("demo_reached", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_line_names_the_tuned_models_word_not_its_id(finished_run, capsys):
    """It printed `-> 2853 (7.1%)`: the token id, once Prediction.token became the id as in the pipeline."""
    example = load_example()
    assert example.main(str(finished_run)) == 0
    out = capsys.readouterr().out
    top = FillMask(str(finished_run)).predict([example.SENTENCE], top_k=1)[0][0][0]
    said = re.search(r'" -> (.+) \((\d+\.\d)%\)$', out.splitlines()[0])
    assert said and said.group(1) == top.word and said.group(2) == f"{top.score:.1%}"[:-1]
    assert out.splitlines()[1].startswith("verdict: ")
