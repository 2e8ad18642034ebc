"""--add-tokens in a run (training/vocabulary.py): the words chosen on the training documents,
recorded, measured and saved; a grown head; --resume and --overwrite with and without the words; and
two processes adding the same words."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from helpers import (
    RARE,
    assert_clean_error,
    assert_ok,
    fresh_tokenizer,
    run_cli,
    texts_of,
    vocab_train_args,
    words_file,
)

from mlmtune.config import build_config
from mlmtune.data.sources import read_corpus
from mlmtune.data.split import training_texts
from mlmtune.model.tokenizer import load_tokenizer


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


def test_resume_without_add_tokens_of_a_run_that_added_words(capsys, tmp_path, tiny_bert, domain_folder):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, domain_folder, out, "--add-tokens", words_file(tmp_path),
                                               "--max-steps", "2", "--save-every", "1"))
    assert_ok(code, err)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, domain_folder, out, "--max-steps", "4", "--resume"))
    assert_clean_error(code, err, "add")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


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


def test_added_words_are_recorded_measured_and_saved(vocab_run, tiny_bert):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    run = json.loads((vocab_run / "run.json").read_text())
    assert run["vocabulary"]["words"] == RARE
    assert run["vocabulary"]["pieces_per_word_after"] < run["vocabulary"]["pieces_per_word_before"]
    records = [json.loads(line) for line in (vocab_run / "metrics.jsonl").read_text().splitlines()]
    base = [r for r in records if r["type"] == "base_vocabulary"]
    evals = [r for r in records if r["type"] == "eval"]
    assert len(base) == 1 and base[0]["masked_words"] == evals[0]["masked_words"] == evals[-1]["masked_words"] > 0
    results = json.loads((vocab_run / "results.json").read_text())
    assert results["added_tokens"] == 3 and results["word_bits_per_char"] == evals[-1]["word_bits_per_char"]
    # the saved model and tokenizer load in transformers as they are, and the new words are single tokens
    tok = AutoTokenizer.from_pretrained(vocab_run)
    model = AutoModelForMaskedLM.from_pretrained(vocab_run)
    base_size = len(load_tokenizer(tiny_bert))
    assert len(tok) == model.get_input_embeddings().num_embeddings == base_size + 3
    assert tok.tokenize("A Zymurgist came") == ["a", "zymurgist", "came"]
    fill = pipeline("fill-mask", model=str(vocab_run))
    predicted = {p["token_str"] for p in fill("The [MASK] report.", top_k=len(tok))}
    assert set(RARE) <= predicted  # each new word is one prediction, not pieces


def test_resume_needs_the_same_words(capsys, vocab_run, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("glaxosmith\nquizzify\n", encoding="utf-8")
    before = sorted(p.name for p in vocab_run.iterdir())
    code, _, err = run_cli(capsys, "train", "--config", vocab_run / "run.json", "--resume", "--add-tokens", other)
    assert_clean_error(code, err, "add_tokens")
    # the same flag value, but the file now holds other words: the recorded list decides
    words = Path(json.loads((vocab_run / "run.json").read_text())["config"]["add_tokens"])
    saved = words.read_text()
    try:
        words.write_text("glaxosmith\nquizzify\nzymurgist\n", encoding="utf-8")
        code, _, err = run_cli(capsys, "train", "--config", vocab_run / "run.json", "--resume")
        assert_clean_error(code, err, "added words", "zymurgist")
    finally:
        words.write_text(saved)
    assert sorted(p.name for p in vocab_run.iterdir()) == before


def test_add_tokens_n_takes_the_most_frequent_cut_words_of_the_training_documents(capsys, tiny_bert, domain_folder,
                                                                                    tmp_path):
    from mlmtune.training.fit import fit

    out = tmp_path / "n-run"
    fit(build_config(dict(model=tiny_bert, data=[domain_folder], output_dir=str(out), chunk_size=64, batch_size=8,
                          eval_size=16, max_steps=2, report=False, precision="fp32", add_tokens="5", min_count=3)))
    said = capsys.readouterr().out
    # independently: cut every word of the training documents with the tokenizer itself
    tok = fresh_tokenizer()
    docs = read_corpus([domain_folder])
    counts = Counter(w for text in training_texts(docs, eval_fraction=0.1, seed=42)
                     for w, _ in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(
                         tok.backend_tokenizer.normalizer.normalize_str(text)))
    cut = sorted(((-c, w) for w, c in counts.items() if c >= 3 and len(tok.tokenize(w)) > 1
                  and tok.unk_token not in tok.tokenize(w)))
    expected = [w for _, w in cut[:5]]
    run = json.loads((out / "run.json").read_text())
    assert run["vocabulary"]["words"] == expected and set(RARE) <= set(expected)
    assert "vocabulary: added 5 words; pieces per word of the training text" in said


def test_add_tokens_on_a_corpus_of_fewer_than_10_documents(capsys, tmp_path, tiny_bert, domain_folder):
    """Nothing is held out of fewer than 10 documents (the tail of the token stream is), so there are no
    whole documents for the masked-word measure: it died with IndexError in eval/words.encode."""
    small = tmp_path / "small"
    small.mkdir()
    texts = texts_of(domain_folder)
    for i in range(5):
        (small / f"{i}.txt").write_text("\n".join(texts[i * 8:(i + 1) * 8]), encoding="utf-8")
    code, out, err = run_cli(capsys, *vocab_train_args(tiny_bert, small, tmp_path / "out", "--add-tokens",
                                                       words_file(tmp_path)))
    assert_ok(code, err)
    assert "no masked-word measure" in out
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["vocabulary"]["words"] == RARE
