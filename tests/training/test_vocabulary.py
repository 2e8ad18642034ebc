"""Issue 14 (domain vocabulary) attacked as a hostile user: each test here failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import assert_clean_error, assert_ok, run_cli, vocab_train_args, words_file

from mlmtune.model.tokenizer import load_tokenizer


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
    import mlmtune.data.sources as corpus

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


def test_new_token_lr_reaches_the_rows_through_accumulation_and_bf16(tmp_path, tiny_bert, domain_folder):
    """End to end (accelerate's optimizer wrapper, 2 micro-batches a step, bf16, weight decay): with a
    vanishing --new-token-lr the new rows end where they started, the mean of their pieces' base rows,
    while the old rows moved."""
    from transformers import AutoModelForMaskedLM

    from mlmtune.cli import main

    out = tmp_path / "run"
    args = [str(a) for a in vocab_train_args(tiny_bert, domain_folder, out, "--add-tokens", words_file(tmp_path),
                                       "--new-token-lr", "1e-12", "--gradient-accumulation-steps", "2",
                                       "--max-steps", "3", "--weight-decay", "0.1")]
    args[args.index("fp32")] = "bf16"
    assert main(args) == 0
    base = AutoModelForMaskedLM.from_pretrained(tiny_bert)
    tuned = AutoModelForMaskedLM.from_pretrained(out)
    pieces = json.loads((out / "run.json").read_text())["vocabulary"]["pieces"]
    first = len(load_tokenizer(tiny_bert))
    emb, emb0 = tuned.get_input_embeddings().weight.detach(), base.get_input_embeddings().weight.detach()
    bias, bias0 = tuned.cls.predictions.bias.detach(), base.cls.predictions.bias.detach()
    for k, p in enumerate(pieces):
        torch.testing.assert_close(emb[first + k], emb0[p].mean(0), rtol=0, atol=1e-6)
        torch.testing.assert_close(bias[first + k], bias0[p].mean(), rtol=0, atol=1e-6)
    assert (emb[:first] - emb0).abs().max() > 1e-4  # the old rows trained


def test_pieces_per_word_after_is_what_the_saved_tokenizer_gives(vocab_run, tiny_bert, domain_folder):
    """The line 'pieces per word ... before -> after' must describe the tokenizer the run saved."""
    from transformers import AutoTokenizer

    from mlmtune.config import build_config, load_config_file
    from mlmtune.data.sources import documents_from_config
    from mlmtune.data.split import training_texts
    from mlmtune.model import vocabulary as vocab

    recorded = json.loads((vocab_run / "run.json").read_text())["vocabulary"]
    cfg = build_config(load_config_file(vocab_run / "run.json"))
    texts = training_texts(documents_from_config(cfg), eval_fraction=cfg.eval_fraction, seed=cfg.seed)
    for tok, key in ((load_tokenizer(tiny_bert), "pieces_per_word_before"),
                     (AutoTokenizer.from_pretrained(vocab_run), "pieces_per_word_after")):
        cutter = vocab.WordCutter(tok)
        words = sum(len(cutter.words(t)) for t in texts)
        tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
        assert abs(tokens / words - recorded[key]) < 1e-3, key


def test_overwrite_a_run_with_added_words_by_one_without(capsys, tmp_path, tiny_bert, domain_folder):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, domain_folder, out, "--add-tokens", words_file(tmp_path),
                                               "--max-steps", "1"))
    assert_ok(code, err)
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, domain_folder, out, "--max-steps", "1", "--overwrite"))
    assert_ok(code, err)
    base = len(load_tokenizer(tiny_bert))
    assert len(AutoTokenizer.from_pretrained(out)) == base
    assert AutoModelForMaskedLM.from_pretrained(out).get_input_embeddings().num_embeddings == base
    run = json.loads((out / "run.json").read_text())
    assert "vocabulary" not in run and run["config"]["add_tokens"] is None
    assert "added_tokens" not in json.loads((out / "results.json").read_text())
    assert not any(json.loads(line)["type"] == "base_vocabulary"
                   for line in (out / "metrics.jsonl").read_text().splitlines())


def test_add_tokens_on_a_model_without_an_mlm_head(capsys, tmp_path, tiny_encoder, domain_folder):
    """A grown head (minilm's case): the warm start sets the bias after the rows were added; the new
    words must have a bias and a row, and the run must load as a fill-mask model predicting them."""
    from transformers import pipeline

    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_encoder, domain_folder, out, "--add-tokens",
                                               words_file(tmp_path), "--max-steps", "1"))
    assert_ok(code, err)
    fill = pipeline("fill-mask", model=str(out))
    tok = fill.tokenizer
    assert tok.tokenize("the zymurgist") == ["the", "zymurgist"]
    bias = fill.model.cls.predictions.bias.detach()
    assert bias.shape[0] == len(tok) and torch.isfinite(bias).all()
    assert bias[len(tok) - 3:].abs().sum() > 0  # the new words' bias was set, not left at zero


def test_report_puts_the_base_cloze_on_the_row_of_the_base_with_its_own_vocabulary(capsys, tmp_path, vocab_run_copy):
    """The base is cloze-scored as it is (its own tokenizer); with --add-tokens the report's row "base"
    is the base *with the added words*, which nobody cloze-scored."""
    import re

    probes = tmp_path / "cloze.tsv"
    probes.write_text("The glaxosmith [MASK].\treport\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "report", vocab_run_copy, "--probes", probes)
    assert_ok(code, err)
    page = (vocab_run_copy / "report.html").read_text()
    rows = {re.sub("<.*?>", "", r.split("</td>")[0]): r for r in re.findall(r"<tr><td>(.*?)</tr>", page)}
    own = next(r for label, r in rows.items() if "its own vocabulary" in label)
    with_words = next(r for label, r in rows.items() if "with the added words" in label)
    assert "%" in own.split("</td>")[-2] and "&ndash;" in with_words.split("</td>")[-2]


def test_resume_without_add_tokens_of_a_run_that_added_words(capsys, tmp_path, tiny_bert, domain_folder):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, domain_folder, out, "--add-tokens", words_file(tmp_path),
                                               "--max-steps", "2", "--save-every", "1"))
    assert_ok(code, err)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, domain_folder, out, "--max-steps", "4", "--resume"))
    assert_clean_error(code, err, "add")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_a_number_that_is_also_a_file_name_is_refused(capsys, monkeypatch, tmp_path, tiny_bert, news_folder):
    """`--add-tokens 5` beside a word file named 5 silently added the 5 most frequent cut words."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "5").write_text("glaxosmith\n", encoding="utf-8")
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, news_folder, out, "--add-tokens", "5"))
    assert_clean_error(code, err, "./5")
    assert not out.exists()


def test_a_word_longer_than_the_tokenizer_cuts_is_named_as_too_long(capsys, tmp_path, tiny_bert, news_folder):
    words = tmp_path / "words.txt"
    words.write_text("pharmaco" * 20 + "\n", encoding="utf-8")
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, news_folder, out, "--add-tokens", words))
    assert_clean_error(code, err, "longer than the 100 characters")
    assert not out.exists()


def test_the_table_footnote_holds_whichever_model_comes_first(vocab_run, tiny_bert):
    from mlmtune.eval.compare import ModelScores, format_table
    from mlmtune.eval.metrics import EvalResult

    rows = [ModelScores(str(vocab_run), EvalResult.from_sums(10.0, 5, 2)),
            ModelScores(tiny_bert, EvalResult.from_sums(12.0, 6, 2), own_tokens=True)]
    text = format_table(rows)
    assert "differ by added words" in text and "adds words to the first" not in text  # the base adds none


def test_resume_with_added_words_continues_as_if_never_stopped(capsys, tmp_path, tiny_bert, domain_folder):
    """Four steps with a checkpoint at 2; a copy of the folder set back to that checkpoint and resumed
    must end with the same model and the same word measures (the base's, scored once before the words
    were added, survives the resume; the new rows keep their own learning rate)."""
    import shutil

    from safetensors.torch import load_file

    common = ("--add-tokens", words_file(tmp_path), "--dropout", "0", "--new-token-lr", "1e-2", "--save-every", "2",
              "--max-steps", "4", "--keep-checkpoints", "5")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, domain_folder, straight, *common))
    assert_ok(code, err)
    shutil.copytree(straight, resumed)
    from mlmtune.run.layout import complete_checkpoints

    found = complete_checkpoints(resumed)
    assert [int(p.name.split("-")[1]) for p in found] == [2, 4]
    shutil.rmtree(found[-1])  # back to step 2
    code, out, err = run_cli(capsys, *vocab_train_args(tiny_bert, domain_folder, resumed, *common, "--resume"))
    assert_ok(code, err)
    assert "resumed from" in out
    a, b = (json.loads((d / "results.json").read_text()) for d in (straight, resumed))
    for key in ("eval_perplexity", "word_bits_per_char", "base_word_bits_per_char", "pieces_per_word_after"):
        assert b[key] == pytest.approx(a[key], rel=1e-5), key
    wa, wb = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-6


def test_evaluate_with_tokenizer_scores_a_run_with_its_added_words(capsys, tmp_path, tiny_bert, domain_folder):
    """A checkpoint without tokenizer files trained with --tokenizer T --add-tokens: the run's folder holds
    T plus the new words. `evaluate --config OUT/run.json --model OUT` (the report's own command) loaded T
    for the run, scoring it on ids without its words, silently; it must score what training scored."""
    import shutil

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(tiny_bert) / name, bare / name)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *vocab_train_args(str(bare), domain_folder, out, "--tokenizer", tiny_bert,
                                               "--add-tokens", words_file(tmp_path), "--max-steps", "2"))
    assert_ok(code, err)
    final = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["type"] == "eval"][-1]
    code, stdout, err = run_cli(capsys, "evaluate", "--config", out / "run.json", "--model", out, "--json")
    assert_ok(code, err)
    got = json.loads(stdout.splitlines()[0])
    assert got["perplexity"] == pytest.approx(final["perplexity"], rel=1e-4)
    code, stdout, err = run_cli(capsys, "evaluate", "--config", out / "run.json", "--model", bare, "--model", out,
                                "--json")
    assert_ok(code, err)
    base, tuned = (json.loads(line) for line in stdout.splitlines())
    assert tuned["perplexity"] == pytest.approx(final["perplexity"], rel=1e-4) and tuned["own_tokenization"]


def test_the_footnote_does_not_point_to_a_masked_word_column_that_is_not_there(vocab_run, tiny_bert):
    """A corpus under 10 documents has no masked-word measure: 'rank by the masked words' pointed nowhere."""
    from mlmtune.eval.compare import ModelScores, format_table
    from mlmtune.eval.metrics import EvalResult

    rows = [ModelScores(tiny_bert, EvalResult.from_sums(10.0, 5, 2)),
            ModelScores(str(vocab_run), EvalResult.from_sums(12.0, 6, 2), own_tokens=True)]
    text = format_table(rows)
    assert "word bits/char" not in text and "rank by the masked words" not in text and "no masked-word measure" in text


def test_a_cloze_answer_only_the_run_holds_as_one_token_is_not_called_unreachable(capsys, tmp_path, vocab_run,
                                                                                    tiny_bert, domain_folder):
    probes = tmp_path / "cloze.tsv"
    probes.write_text("The [MASK] report.\tglaxosmith\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--model", vocab_run, "--data", domain_folder,
                           "--chunk-size", "64", "--eval-size", "24", "--precision", "fp32", "--probes", probes)
    assert_ok(code, err)
    assert "no model can hit" not in err


@pytest.mark.slow
def test_two_processes_add_the_same_words_and_match_one(tmp_path, tiny_bert, domain_folder):
    """torchrun, 2 processes x batch 8 against 1 x 16, with added words and --new-token-lr: the same
    words, rows and figures (the word measure is computed whole on every process)."""
    import os
    import subprocess
    import sys

    from helpers import free_port

    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    words = words_file(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    def args(out, batch):
        return [str(a) for a in vocab_train_args(tiny_bert, domain_folder, out, "--add-tokens", words, "--dropout", "0",
                                           "--new-token-lr", "1e-2", "--max-steps", "3", "--batch-size", str(batch))]

    for cmd in ([str(torchrun), "--nproc_per_node", "2", "--master_port", free_port(), "-m", "mlmtune",
                 *args(tmp_path / "two", 8)], [sys.executable, "-m", "mlmtune", *args(tmp_path / "one", 16)]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two"))
    assert two["processes"] == 2
    for key in ("eval_perplexity", "word_bits_per_char", "base_word_bits_per_char", "pieces_per_word_after"):
        assert two[key] == pytest.approx(one[key], rel=1e-4), key
    assert (json.loads((tmp_path / "two" / "run.json").read_text())["vocabulary"]
            == json.loads((tmp_path / "one" / "run.json").read_text())["vocabulary"])
