"""Issue 14 (domain vocabulary) attacked as a hostile user: each test here failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlmtune.modeling import load_tokenizer

from test_bad_input import assert_clean_error, assert_ok, run_cli
from test_vocab import RARE, domain_folder, train_args, vocab_run  # noqa: F401 (fixtures)


def test_decode_spaces_an_added_word_as_the_base_spaces_its_pieces(vocab_run, tiny_bert):
    """(The base itself decodes "(x) a-b" as "( x ) a - b": the added words must change nothing.)"""
    from transformers import AutoTokenizer

    tok, base = AutoTokenizer.from_pretrained(vocab_run), load_tokenizer(tiny_bert)
    text = "the glaxosmith report, (quizzify) zymurgist-glaxosmith. glaxosmith2 subglaxosmith"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tok.convert_tokens_to_ids("glaxosmith")) == 2  # not inside glaxosmith2 or subglaxosmith
    assert tok.decode(ids) == base.decode(base(text, add_special_tokens=False)["input_ids"])


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


def test_side_by_side_with_only_eval_data_does_not_read_the_default_data(capsys, monkeypatch, tmp_path, vocab_run,
                                                                          tiny_bert, news_folder):
    """`evaluate --eval-data E` without --data reads E alone; the model with added words made its own
    evaluation set from --data's default (bbc-news) as well, a training part it does not need."""
    import mlmtune.corpus as corpus

    read = []
    original = corpus.read_corpus
    monkeypatch.setattr(corpus, "read_corpus", lambda sources, *a, **k: read.append(list(sources)) or original(
        sources, *a, **k))
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--model", vocab_run, "--eval-data",
                             news_folder, "--chunk-size", "64", "--eval-size", "24", "--precision", "fp32", "--json")
    assert_ok(code, err)
    assert ["bbc-news"] not in read
    base, tuned = (json.loads(line) for line in out.splitlines())
    assert base["masked_words"] == tuned["masked_words"] > 0
