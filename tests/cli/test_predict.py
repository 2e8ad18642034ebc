"""FillMask against transformers' own fill-mask pipeline, and the predict command."""

import io
import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import ONE, TWO, same_answer

from mlmtune.cli import main
from mlmtune.errors import InputError
from mlmtune.model.fill_mask import FillMask, fill_mask


def without_cls_sep(answer):
    """The pipeline writes [CLS] ... [SEP] around the sequence of a text with several masks; FillMask does not."""
    if isinstance(answer, dict):
        return {**answer, "sequence": answer["sequence"].removeprefix("[CLS] ").removesuffix(" [SEP]")}
    return [without_cls_sep(a) for a in answer]


def test_answers_as_the_transformers_pipeline(tiny_bert):
    from transformers import pipeline

    fm, theirs = FillMask(tiny_bert), pipeline("fill-mask", model=tiny_bert, device="cpu")
    # one text, one mask: a list of dicts; a string is filled whole, not walked character by character
    answer = fm(ONE, top_k=5)
    assert isinstance(answer, list) and len(answer) == 5 and isinstance(answer[0], dict)
    same_answer(answer, theirs(ONE, top_k=5))
    assert answer[0]["sequence"] == "the " + answer[0]["token_str"] + " is happy."
    # one text, several masks: a list per mask; the other mask stays in each sequence
    answer = fm(TWO, top_k=3)
    assert len(answer) == 2 and all(len(m) == 3 for m in answer)
    same_answer(answer, without_cls_sep(theirs(TWO, top_k=3)))
    assert all(d["sequence"].count("[MASK]") == 1 for m in answer for d in m)
    # a list of texts: one answer per text; a list of one: just its answer, as the pipeline
    same_answer(fm([ONE, TWO], top_k=2), without_cls_sep(theirs([ONE, TWO], top_k=2)))
    same_answer(fm([ONE], top_k=2), theirs([ONE], top_k=2))
    assert fm([]) == []
    with pytest.raises(InputError, match="a text or a list of texts"):
        fm(42)


def test_a_piece_keeps_the_tokenizers_spelling(tiny_bert):
    """token_str is the tokenizer's own decoding ('##s' for a WordPiece piece, as the pipeline);
    the sequence joins the piece to the word before it, as the tokenizer decodes it."""
    fm = FillMask(tiny_bert)
    piece = fm.tokenizer.convert_tokens_to_ids("##s")
    (sequences,) = fm._sequences(fm.tokenizer("The prime [MASK] met", add_special_tokens=False)["input_ids"],
                                 [[piece]])
    assert sequences == ["the primes met"]


def test_several_masks_keep_their_order(tiny_bert):
    fm = FillMask(tiny_bert)
    both = fm.predict(["[MASK] one and [MASK] two, [MASK] three."], top_k=3)[0]
    assert len(both) == 3
    # each mask scored alone in its own position gives the same answer as in the batch
    alone = fm.predict(["[MASK] one and [MASK] two, [MASK] three.", "short [MASK]"], top_k=3)[0]
    assert [[p.token_id for p in m] for m in both] == [[p.token_id for p in m] for m in alone]


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


def test_predict_text_output_and_compare(tiny_bert, tiny_encoder, capsys):
    assert main(["predict", "--model", tiny_bert, "--compare", tiny_encoder, "--top-k", "3", ONE]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ONE and tiny_encoder[:28] in out[1] and tiny_bert[-28:] not in out[1][:40]
    tuned = FillMask(tiny_bert).predict([ONE], top_k=3)[0][0]
    assert [line.split()[-2] for line in out[2:5]] == [p.token[:16] for p in tuned]  # the tuned column is on the right


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
    answer = fm("[MASK] and [MASK] " + "x " * 990, top_k=1)
    assert len(answer) == 2 and answer[1][0]["sequence"].endswith("x x")  # the sequence is the whole text


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


def test_sequences_can_be_left_out(tiny_bert):
    fm = FillMask(tiny_bert)
    full, bare = (fm.predict(["[MASK] and [MASK]."], top_k=3, sequences=flag)[0] for flag in (True, False))
    assert [[p.token_id for p in m] for m in full] == [[p.token_id for p in m] for m in bare]
    assert all(p.sequence for m in full for p in m) and not any(p.sequence for m in bare for p in m)
