"""FillMask against transformers' own fill-mask pipeline, and the predict command."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from mlmtune.cli import main
from mlmtune.predict import FillMask, fill_mask


def test_matches_the_transformers_pipeline(tiny_bert):
    from transformers import pipeline

    ours = FillMask(tiny_bert)(["The [MASK] is happy.", "A much longer sentence where [MASK] sits."], top_k=5)
    theirs = pipeline("fill-mask", model=tiny_bert, device="cpu")
    for text, predictions in zip(["The [MASK] is happy.", "A much longer sentence where [MASK] sits."], ours):
        expected = theirs(text, top_k=5)
        assert [p.token_id for p in predictions[0]] == [e["token"] for e in expected]
        assert [p.score for p in predictions[0]] == pytest.approx([e["score"] for e in expected], abs=1e-5)


def test_several_masks_keep_their_order(tiny_bert):
    fm = FillMask(tiny_bert)
    both = fm(["[MASK] one and [MASK] two, [MASK] three."], top_k=3)[0]
    assert len(both) == 3
    # each mask scored alone in its own position gives the same answer as in the batch
    alone = fm(["[MASK] one and [MASK] two, [MASK] three.", "short [MASK]"], top_k=3)[0]
    assert [[p.token_id for p in m] for m in both] == [[p.token_id for p in m] for m in alone]


def test_python_api_and_cli_json(tiny_bert, capsys):
    single = fill_mask(tiny_bert, "The [MASK] is happy.", top_k=2)
    assert len(single) == 1 and len(single[0]) == 2 and set(single[0][0]) == {"token", "score"}
    assert main(["predict", "--model", tiny_bert, "--compare", tiny_bert, "--json", "--top-k", "2",
                 "The [MASK] is happy.", "[MASK] and [MASK]"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(r["masks"]) for r in lines] == [1, 2]
    assert lines[0]["masks"] == single and lines[0]["compare"]["masks"] == single


def test_a_hub_model_id_loads_from_the_hub_cache(tiny_bert, tmp_path):
    # A Hub id (owner/name) takes the real Hub code path; offline, huggingface_hub answers from its
    # cache, laid out here as a download would leave it.
    revision = "0" * 40
    repo = tmp_path / "hub" / "models--mlmtune-test--tiny-bert"
    shutil.copytree(tiny_bert, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}

    def predict(model):
        proc = subprocess.run([sys.executable, "-m", "mlmtune", "predict", "--model", model, "--json", "--top-k", "3",
                               "The [MASK] is happy."], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["masks"]

    assert predict("mlmtune-test/tiny-bert") == predict(tiny_bert)  # the same model, found through the cache
    # a name that is neither in the cache nor a folder is the Hub's offline error, not a path error
    env["HF_HUB_CACHE"] = str(tmp_path / "empty")
    proc = subprocess.run([sys.executable, "-m", "mlmtune", "predict", "--model", "mlmtune-test/other",
                           "The [MASK] is happy."], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    assert "mlmtune-test/other" in proc.stderr and "no such file" not in proc.stderr
