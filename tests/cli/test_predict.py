"""`mlmtune predict` (cli/predict.py): texts from the command line or stdin, --json and the text
columns beside --compare, and bad input (top-k, stdin, bytes that are not UTF-8, a mask lost past the
model) as one `error:` line with nothing printed."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ONE, assert_clean_error, assert_ok, run_cli, same_answer

from mlmtune.cli import main
from mlmtune.config import DEFAULT_PROBES
from mlmtune.model.fill_mask import FillMask, fill_mask


def test_python_api_and_cli_json(tiny_bert, capsys):
    single = fill_mask(tiny_bert, ONE, top_k=2)
    assert len(single) == 2 and set(single[0]) == {"score", "token", "token_str", "sequence"}
    assert isinstance(single[0]["token"], int) and single == FillMask(tiny_bert)(ONE, top_k=2)
    assert main(["predict", "--model", tiny_bert, "--compare", tiny_bert, "--json", "--top-k", "2",
                 ONE, "[MASK] and [MASK]"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # predict --json keeps its envelope (text, masks: a list per mask, compare) around the pipeline's dicts
    assert [len(r["masks"]) for r in lines] == [1, 2]
    # (scores to 1e-5: a batch of two texts is padded, which moves the last digits)
    same_answer(lines[0]["masks"], [single])
    same_answer(lines[0]["compare"]["masks"], [single])
    same_answer(lines[1]["masks"], fill_mask(tiny_bert, "[MASK] and [MASK]", top_k=2))


def test_predict_without_text_fills_the_runs_probe_sentences(capsys, tmp_path, finished_run, tiny_bert):
    import shutil

    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    record = json.loads((run / "run.json").read_text())
    record["config"]["probe"] = ["A [MASK] of the run.", "Its second [MASK]."]
    (run / "run.json").write_text(json.dumps(record))
    code, out, err = run_cli(capsys, "predict", "--model", str(run))
    assert_ok(code, err)
    assert out.splitlines()[0] == "A [MASK] of the run." and "Its second [MASK]." in out
    code, out, err = run_cli(capsys, "predict", "--model", tiny_bert)  # not a run: the default probes
    assert_ok(code, err)
    assert out.splitlines()[0] == DEFAULT_PROBES[0] and all(p in out for p in DEFAULT_PROBES)


def test_predict_text_output_and_compare(tiny_bert, tiny_encoder, capsys):
    assert main(["predict", "--model", tiny_bert, "--compare", tiny_encoder, "--top-k", "3", ONE]) == 0
    out = capsys.readouterr().out.splitlines()
    # the base (no MLM head) on the left, titled with how its head starts: the end of the title kept
    assert out[0] == ONE and out[1].index(", warm-started head") < out[1].index(Path(tiny_bert).name)
    tuned = FillMask(tiny_bert).predict([ONE], top_k=3)[0][0]
    assert [line.split()[-2] for line in out[2:5]] == [p.word[:16] for p in tuned]  # the tuned column is on the right


def test_predict_several_masks_gives_one_list_per_mask(capsys, tiny_bert):
    code, out, err = run_cli(capsys, "predict", "--model", tiny_bert, "--json", "--top-k", "3",
                             "[MASK] went to the [MASK] to buy [MASK].", "One [MASK] only.")
    assert_ok(code, err)
    records = [json.loads(line) for line in out.splitlines()]
    assert [len(r["masks"]) for r in records] == [3, 1]
    assert all(len(mask) == 3 and all({"token", "score"} <= set(p) for p in mask) for r in records for mask in r["masks"])
    code, out, err = run_cli(capsys, "predict", "--model", tiny_bert, "--top-k", "2", "A [MASK] and a [MASK].")
    assert_ok(code, err)
    assert "mask 1/2" in out and "mask 2/2" in out


def test_predict_stdin_lines(capsys, tiny_bert, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("The [MASK] is happy.\n\nA [MASK] day.\n"))
    code, out, err = run_cli(capsys, "predict", "--model", tiny_bert, "--json", "-")
    assert_ok(code, err)
    assert len(out.splitlines()) == 2


def test_predict_compare_takes_either_models_mask(tiny_roberta, tiny_bert, capsys):
    """`predict --model ROBERTA --compare BERT "The <mask> ..."` failed on the BERT side ("no mask token"),
    though serve takes either model's mask for both."""
    from mlmtune.cli import main

    assert main(["predict", "--model", tiny_roberta, "--compare", tiny_bert, "--json", "--top-k", "2",
                 "The <mask> is happy."]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["text"] == "The <mask> is happy."  # the text as written
    assert record["masks"] == [[p.as_dict() for p in FillMask(tiny_roberta).predict(["The <mask> is happy."], 2)[0][0]]]
    assert record["compare"]["masks"] == [[p.as_dict() for p in FillMask(tiny_bert).predict(["The [MASK] is happy."], 2)[0][0]]]


# --- bad input (issue 11) ------------------------------------------------------------------------

def one_error_line(err: str, *words: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_predict_prints_nothing_when_a_later_text_loses_a_mask(tiny_bert, capsys):
    code = main(["predict", "--model", tiny_bert, "--json", "The [MASK] is happy.", "[MASK] " + "x " * 990 + "[MASK]"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    one_error_line(err, "1 of the 2 masks", "128 tokens", "shorten")


def test_predict_with_an_empty_model_name_says_to_name_one(capsys):
    """An empty --model was "model folder  has no tokenizer": a folder with no name, not the problem."""
    code, out, err = run_cli(capsys, "predict", "--model", "", "The [MASK] is happy.")
    assert_clean_error(code, err, "the model must be a folder or a Hugging Face name", "--model runs/demo")
    assert out == ""


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


@pytest.mark.parametrize("stdin", ["", "\n   \n\n"], ids=["empty", "blank-lines"])
def test_predict_stdin_without_text(capsys, tiny_bert, monkeypatch, stdin):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code, _, err = run_cli(capsys, "predict", "--model", tiny_bert, "-")
    assert_clean_error(code, err, "no text given")


@pytest.mark.parametrize("top_k, needle", [("0", "top-k"), ("-1", "top-k"), (str(10**9), "top-k"),
                                           ("2.5", "--top-k"), ("abc", "--top-k"), ("", "--top-k")])
def test_predict_bad_top_k(capsys, tiny_bert, top_k, needle):
    code, _, err = run_cli(capsys, "predict", "--model", tiny_bert, f"--top-k={top_k}", "The [MASK] is happy.")
    assert_clean_error(code, err, needle)


def test_predict_compare_model_missing(capsys, tiny_bert):
    code, _, err = run_cli(capsys, "predict", "--model", tiny_bert, "--compare", "/nonexistent/base", "a [MASK] b")
    assert_clean_error(code, err, "/nonexistent/base")
