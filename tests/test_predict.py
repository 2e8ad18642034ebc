"""FillMask against transformers' own fill-mask pipeline, and the predict command."""

import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from mlmtune.cli import main
from mlmtune.errors import InputError
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


# --- bad input (issue 11) ------------------------------------------------------------------------

def one_error_line(err: str, *words: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_mask_past_the_model_is_an_error_naming_the_limit(tiny_bert):
    fm = FillMask(tiny_bert)  # 128 positions
    with pytest.raises(InputError, match="1 of the 2 masks .* beyond the model's 128 tokens"):
        fm(["[MASK] " + "x " * 990 + "[MASK]"])
    with pytest.raises(InputError, match="the mask .* lies beyond the model's 128 tokens"):
        fm(["x " * 200 + "[MASK]"])
    # a text longer than the model but with every mask within it is cut, and answered in full
    assert len(fm(["[MASK] and [MASK] " + "x " * 990], top_k=1)[0]) == 2


def test_predict_prints_nothing_when_a_later_text_loses_a_mask(tiny_bert, capsys):
    code = main(["predict", "--model", tiny_bert, "--json", "The [MASK] is happy.", "[MASK] " + "x " * 990 + "[MASK]"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    one_error_line(err, "1 of the 2 masks", "128 tokens", "shorten")


@pytest.mark.parametrize("top_k", ["0", "-1", "five"])
def test_predict_top_k_below_1_is_refused_before_loading(capsys, top_k):
    with pytest.raises(SystemExit) as exc:  # the model name need not exist: nothing is loaded
        main(["predict", "--model", "no-such-model", "--top-k", top_k, "The [MASK] is happy."])
    assert exc.value.code == 2
    one_error_line(capsys.readouterr().err, "--top-k")


def test_predict_argument_not_utf8_is_one_error_line(tiny_bert, tmp_path):
    # argv bytes that are not UTF-8 reach Python as surrogate escapes
    proc = subprocess.run([sys.executable, "-m", "mlmtune", "predict", "--model", tiny_bert,
                           b"The [MASK] is caf\xe9."], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    one_error_line(proc.stderr, "TEXT 1", "not valid UTF-8", "byte 0xe9", "iconv")


@pytest.mark.parametrize("errors, words", [("strict", ["stdin is not valid UTF-8", "byte 0xe9"]),
                                           ("surrogateescape", ["stdin line 3", "not valid UTF-8", "byte 0xe9"])])
def test_predict_stdin_not_utf8_is_one_error_line(tiny_bert, capsys, monkeypatch, errors, words):
    # strict: a UTF-8 locale; surrogateescape: the C locale, where Python smuggles the bytes through
    stdin = io.TextIOWrapper(io.BytesIO(b"The [MASK] is happy.\n\nThe [MASK] is caf\xe9.\n"), encoding="utf-8",
                             errors=errors)
    monkeypatch.setattr(sys, "stdin", stdin)
    code = main(["predict", "--model", tiny_bert, "-"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    one_error_line(err, *words, "UTF-8")
