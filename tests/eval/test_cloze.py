"""The cloze test (eval/cloze.py): the file's format, hits at 1 and at 5, each model with its own
tokenizer, and a bad --probes file or a mask past the model as one error line."""

from __future__ import annotations

import json
import math

import pytest
from helpers import CLOZE_NEWS, SMALL, SMALL_ARGS, assert_clean_error_no_stdout, assert_ok, run_cli

from mlmtune.errors import DataError
from mlmtune.eval.cloze import ClozeItem, cloze_accuracy, cloze_hit, parse_cloze, read_cloze_file
from mlmtune.eval.compare import compare


def test_cloze_scoring_on_given_predictions():
    items = [ClozeItem("a [MASK]", ("Budget",), 1), ClozeItem("b [MASK]", ("rose", "climbed"), 2),
             ClozeItem("c [MASK]", ("half",), 3)]
    predictions = [
        [" budget ", "plan", "x", "y", "z"],  # case-insensitive, stripped: a hit at 1
        ["fell", "dropped", "x", "CLIMBED", "z"],  # the 4th: a hit at 5, not at 1
        ["first", "second", "x", "y", "z", "half"],  # the 6th: no hit at 5
    ]
    assert cloze_hit(predictions[0], items[0].answers, 1)
    assert not cloze_hit(predictions[1], items[1].answers, 3) and cloze_hit(predictions[1], items[1].answers, 4)
    assert cloze_accuracy(predictions, items, 1) == pytest.approx(1 / 3)
    assert cloze_accuracy(predictions, items, 5) == pytest.approx(2 / 3)
    assert not cloze_hit(["budgets"], ("budget",), 1)  # whole tokens, not prefixes
    assert math.isnan(cloze_accuracy([], [], 1))
    with pytest.raises(ValueError):
        cloze_accuracy(predictions[:2], items, 1)


def test_cloze_hits_what_the_model_predicts(tiny_bert, news_folder, tmp_path):
    """Answers built from the model's own fill-mask ranking must score 100% / 0% exactly."""
    from mlmtune.model.fill_mask import FillMask

    sentences = [line.split("\t")[0] for line in CLOZE_NEWS.read_text(encoding="utf-8").splitlines()
                 if line and not line.startswith("#")][:20]
    ranked = [[p.word for p in preds[0]] for preds in FillMask(tiny_bert).predict(sentences, top_k=5)]
    usable = [(s, r) for s, r in zip(sentences, ranked) if all(t.replace("#", "").isalnum() for t in (r[0], r[4]))]
    assert len(usable) >= 5
    top1 = tmp_path / "top1.tsv"
    top1.write_text("# answers: the model's own first choice\n"
                    + "".join(f"{s}\t{r[0].upper()}|zzzz\n" for s, r in usable), encoding="utf-8")
    fifth = tmp_path / "fifth.tsv"
    fifth.write_text("".join(f"{s}\t {r[4]} \n" for s, r in usable), encoding="utf-8")

    rows = compare([tiny_bert], news_folder, probes=str(top1), **SMALL)
    assert (rows[0]["cloze_top1"], rows[0]["cloze_top5"], rows[0]["cloze_items"]) == (1.0, 1.0, len(usable))
    rows = compare([tiny_bert], news_folder, probes=str(fifth), **SMALL)
    assert (rows[0]["cloze_top1"], rows[0]["cloze_top5"]) == (0.0, 1.0)


def test_the_cloze_file_of_the_benchmarks_parses():
    items = read_cloze_file(CLOZE_NEWS)
    assert len(items) == 60
    assert items[0].answers == ("rose", "climbed", "jumped", "surged") and items[0].line == 2
    assert all(item.sentence.count("[MASK]") == 1 and item.answers for item in items)


def test_cloze_parser_tolerates_comments_blank_lines_crlf_and_spaces():
    text = "\ufeff# a comment\r\n\r\nThe [MASK] rose.\t price | cost |\r\n#another\nA [MASK].\tb\n"
    items = parse_cloze(text.lstrip("\ufeff"))
    assert items == [ClozeItem("The [MASK] rose.", ("price", "cost"), 3), ClozeItem("A [MASK].", ("b",), 5)]


@pytest.mark.parametrize("content, needle", [
    ("", "no cloze items"),
    ("# only a comment\n\n", "no cloze items"),
    ("The [MASK] rose. price\n", "no tab"),
    ("The price rose.\tprice\n", "no [MASK]"),
    ("The [MASK] rose by [MASK].\tprice\n", "2 [MASK]s"),
    ("The [MASK] rose.\t\n", "no answer"),
    ("The [MASK] rose.\t | |\n", "no answer"),
    ("The [MASK] rose.\tprice\tcost\n", "tabs"),
])
def test_cloze_parser_bad_lines(tmp_path, content, needle):
    path = tmp_path / "probes.tsv"
    path.write_text("# header\n" + content if content else "", encoding="utf-8")
    with pytest.raises(DataError, match=None) as info:
        read_cloze_file(path)
    message = str(info.value)
    assert needle in message and str(path) in message
    if content.strip() and not content.startswith("#"):
        assert "line 2" in message


# --- bad input: one error line, exit 2, nothing on stdout -----------------------------------------

@pytest.mark.parametrize("content, needle", [
    (None, "no such file"),
    ("", "no cloze items"),
    ("The [MASK] rose. price\n", "no tab"),
    ("The price rose.\tprice\n", "no [MASK]"),
    ("The [MASK] rose by [MASK].\tprice\n", "2 [MASK]s"),
    ("The [MASK] rose.\t|\n", "no answer"),
])
def test_evaluate_bad_probes_file(capsys, tiny_bert, news_folder, tmp_path, monkeypatch, content, needle):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "probes.tsv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--data", news_folder, *SMALL_ARGS,
                             "--probes", path)
    assert_clean_error_no_stdout(code, out, err, "--probes" if content is None else str(path), needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_evaluate_a_cloze_mask_beyond_the_model_is_refused(capsys, tiny_bert, news_folder, tmp_path):
    path = tmp_path / "long.tsv"
    path.write_text("Short [MASK] here.\tfine\n" + "word " * 200 + "[MASK].\tend\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--data", news_folder, *SMALL_ARGS,
                             "--probes", path)
    assert_clean_error_no_stdout(code, out, err, "line 2", "beyond the model's 128 tokens", "shorten")


# --- models with added words ----------------------------------------------------------------------

def test_side_by_side_cloze_scores_each_model_with_its_own_tokenizer(capsys, tmp_path, vocab_run, tiny_bert,
                                                                      domain_folder):
    """The run first, its base second: the cloze sentences hold an added word. The base must not be fed
    the run's new ids (an IndexError), and the run's prediction of a new word must be read as that word."""
    probes = tmp_path / "cloze.tsv"
    probes.write_text("The glaxosmith [MASK].\treport\nThe [MASK] report.\tglaxosmith|zymurgist|quizzify\n",
                      encoding="utf-8")
    seen = []
    for order in ([vocab_run, tiny_bert], [tiny_bert, vocab_run]):
        code, out, err = run_cli(capsys, "evaluate", "--model", order[0], "--model", order[1], "--data", domain_folder,
                                 "--chunk-size", "64", "--eval-size", "24", "--precision", "fp32", "--json",
                                 "--probes", probes)
        assert_ok(code, err)
        rows = {r["model"]: r for r in map(json.loads, out.splitlines())}
        assert set(rows) == {str(vocab_run), str(tiny_bert)}
        seen.append({m: (r["cloze_top1"], r["cloze_top5"]) for m, r in rows.items()})
    assert seen[0] == seen[1]  # each model's cloze does not depend on which model came first


def test_a_cloze_answer_only_the_run_holds_as_one_token_is_not_called_unreachable(capsys, tmp_path, vocab_run,
                                                                                    tiny_bert, domain_folder):
    probes = tmp_path / "cloze.tsv"
    probes.write_text("The [MASK] report.\tglaxosmith\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--model", vocab_run, "--data", domain_folder,
                           "--chunk-size", "64", "--eval-size", "24", "--precision", "fp32", "--probes", probes)
    assert_ok(code, err)
    assert "no model can hit" not in err
