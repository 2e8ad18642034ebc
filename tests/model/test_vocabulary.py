"""Domain vocabulary (issue 14): `mlmtune vocab`, `train --add-tokens`, the rows of new words, their
learning rate, the masked-word measure, and every bad input of the issue's list."""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from helpers import RARE, assert_clean_error, assert_ok, fresh_tokenizer, run_cli, vocab_train_args

from mlmtune.config import build_config, load_config_file, parse_count
from mlmtune.data.sources import read_corpus
from mlmtune.data.split import heldout_texts, training_texts
from mlmtune.errors import ConfigError, ModelError
from mlmtune.eval import words as wordeval
from mlmtune.model import vocabulary as vocab
from mlmtune.model.load import load_masked_lm
from mlmtune.model.objective import MaskedLMObjective
from mlmtune.model.tokenizer import load_tokenizer

# --- mlmtune vocab --------------------------------------------------------------------------------

def test_analysis_counts_pieces_as_the_tokenizer_cuts_the_text(tmp_path, tokenizer):
    texts = ["The Ministers met the GLAXOSMITH board.\n", "Zymurgist notes: glaxosmith, 3.14 and \u2603\U0001f99c!"]
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, t in enumerate(texts):
        (folder / f"{i}.txt").write_text(t * 3, encoding="utf-8")
    report = vocab.analyse("minilm", [str(folder)], top=5, min_count=2)
    pieces = [tokenizer.tokenize(t * 3) for t in texts]
    assert report.tokens == sum(len(p) for p in pieces)  # every running word, cut as the tokenizer cuts it
    unk = sum(p.count(tokenizer.unk_token) for p in pieces)
    assert math.isclose(report.unknown_share, unk / report.tokens)
    assert math.isclose(report.pieces_per_word, report.tokens / report.words)
    assert math.isclose(report.share_1 + report.share_2 + report.share_3 + report.share_4_plus, 1.0)
    top = {c.word: c for c in report.top}
    assert top["glaxosmith"].count == 6  # the uncased tokenizer lowercases first: GLAXOSMITH is the same word
    assert top["glaxosmith"].pieces == tokenizer.tokenize("glaxosmith") and len(top["glaxosmith"].pieces) > 1
    assert "the" not in top  # one piece: not a cut word
    import mlmtune

    assert mlmtune.vocabulary("minilm", str(folder), top=5, min_count=2) == report  # the Python API


def test_vocab_command_text_and_json(capsys, domain_folder):
    code, out, err = run_cli(capsys, "vocab", "--model", "minilm", "--data", domain_folder, "--top", "3",
                             "--min-count", "5", "--json")
    assert_ok(code, err)
    record = json.loads(out)
    assert len(record["top"]) == 3 and all(w["count"] >= 5 and len(w["pieces"]) > 1 for w in record["top"])
    assert {w["word"] for w in record["top"]} <= set(RARE) | {w["word"] for w in record["top"]}
    assert [w["count"] for w in record["top"]] == sorted((w["count"] for w in record["top"]), reverse=True)
    code, out, err = run_cli(capsys, "vocab", "--data", domain_folder, "--top", "2")
    assert_ok(code, err)
    assert "pieces per word" in out and "->" in out


@pytest.mark.parametrize("argv, needle", [
    (["--top", "0"], "--top"),
    (["--min-count", "0"], "--min-count"),
    (["--data", "/nonexistent/notes.txt"], "notes.txt"),
])
def test_vocab_bad_input(capsys, argv, needle):
    code, _, err = run_cli(capsys, "vocab", *argv)
    assert_clean_error(code, err, needle)


# --- adding words ---------------------------------------------------------------------------------

def add_words(model, tokenizer, words):
    cutter = vocab.WordCutter(tokenizer)
    chosen = [vocab.CutWord(w, 0, cutter.pieces(w)) for w in words]
    added = vocab.add_to_tokenizer(tokenizer, chosen)
    vocab.add_to_model(model, added, len(tokenizer))
    return added


def test_new_rows_are_the_mean_of_their_pieces_and_the_decoder_stays_tied(tiny_bert):
    tok = fresh_tokenizer()
    model = load_masked_lm(tiny_bert).model
    before_rows = model.get_input_embeddings().weight.detach().clone()
    before_bias = model.cls.predictions.bias.detach().clone()
    added = add_words(model, tok, RARE)
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == len(tok) == before_rows.shape[0] + 3
    assert model.get_output_embeddings().weight is emb  # the decoder is still the embedding table
    assert model.cls.predictions.bias.shape[0] == len(tok)
    for row, pieces in zip(added.ids, added.pieces):
        assert len(pieces) > 1
        torch.testing.assert_close(emb[row], before_rows[pieces].mean(0))
        torch.testing.assert_close(model.cls.predictions.bias[row], before_bias[pieces].mean())
    torch.testing.assert_close(emb[:before_rows.shape[0]], before_rows)  # the old rows are untouched
    # ordinary whole-word tokens: one token for the word in any case, never inside a longer word
    assert tok.tokenize("The Glaxosmith report") == ["the", "glaxosmith", "report"]
    assert "glaxosmith" not in tok.tokenize("glaxosmithkline")
    assert not any(t in tok.all_special_tokens for t in RARE)


def test_predictions_do_not_jump_when_words_are_added(tiny_bert, news_folder):
    """On held-out text cut by the old tokenizer, the masked-token loss barely moves when the new words
    join the softmax with rows from their pieces; with a zero bias (a plain resize) it jumps."""
    from mlmtune.data.batching import eval_batches
    from mlmtune.data.blocks import cut, tokenize
    from mlmtune.data.masking import Masker, MaskingSpec
    from mlmtune.eval.metrics import evaluate_batches
    from mlmtune.model.warmstart import unigram_log_frequency

    tok = fresh_tokenizer()
    texts = read_corpus([news_folder]).train
    blocks = cut(tokenize(texts[:10], tok, progress=False), 64)
    batches = eval_batches(blocks, Masker(tok, MaskingSpec(0.15, 1.0, 0.0, False)), seed=0, batch_size=16,
                           pad_id=tok.pad_token_id)
    model = load_masked_lm(tiny_bert).model
    with torch.no_grad():  # a peaked distribution, as a trained model has: the unigram frequency of the text
        model.cls.predictions.bias.copy_(unigram_log_frequency(blocks.tokens, len(tok), tok.all_special_ids))
    model.eval()
    before = evaluate_batches(MaskedLMObjective(model), batches, "cpu").loss
    cutter = vocab.WordCutter(tok)
    words = [c.word for c in vocab.cut_words(cutter, vocab.count_words(cutter, texts[10:]), 50, 2)]
    assert len(words) == 50
    plain = copy.deepcopy(model)
    added = add_words(model, tok, words)
    after = evaluate_batches(MaskedLMObjective(model), batches, "cpu").loss
    plain.resize_token_embeddings(len(tok), mean_resizing=True)  # transformers' own start: bias 0 for new words
    with torch.no_grad():
        plain.cls.predictions.bias[added.ids] = 0.0
    jumped = evaluate_batches(MaskedLMObjective(plain), batches, "cpu").loss
    assert abs(after - before) < 0.05, (before, after)
    assert jumped - before > 1.0, (before, jumped)


def test_new_token_lr_moves_the_new_rows_that_many_times_as_far(tiny_bert):
    from mlmtune.training.optimizer import build_optimizer

    def one_step(factor: float | None):
        torch.manual_seed(0)
        tok = fresh_tokenizer()
        model = load_masked_lm(tiny_bert).model
        added = add_words(model, tok, RARE)
        opt = build_optimizer(model, lr=1e-3, head_lr=1e-3, weight_decay=0.01, new_parameters=[])
        hook = vocab.NewRowsLearningRate(opt, model, added.ids, 1e-3 * factor) if factor else None
        start = {n: p.detach().clone() for n, p in model.named_parameters()}
        ids = torch.tensor([tok.encode("the glaxosmith and zymurgist quizzify report")])
        labels = ids.clone()
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        return added, {n: p.detach() - start[n] for n, p in model.named_parameters()}, hook

    added, plain, _ = one_step(None)
    _, scaled, hook = one_step(10.0)
    assert hook.factors and all(math.isclose(f, 10.0) for f in hook.factors)
    rows = added.ids
    for name in ("bert.embeddings.word_embeddings.weight", "cls.predictions.bias"):
        assert plain[name][rows].abs().sum() > 0
        torch.testing.assert_close(scaled[name][rows], 10 * plain[name][rows], rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(scaled[name][:rows[0]], plain[name][:rows[0]])  # old rows: the same step


# --- the masked-word measure ------------------------------------------------------------------------

def test_masked_words_are_the_same_for_two_tokenizers_and_scored_word_by_word(tiny_bert, news_folder):
    texts = read_corpus([news_folder]).train[:6]
    base = fresh_tokenizer()
    extended = fresh_tokenizer()
    cutter = vocab.WordCutter(extended)
    chosen = vocab.cut_words(cutter, vocab.count_words(cutter, texts), 30, 1)
    vocab.add_to_tokenizer(extended, chosen)
    a, b = wordeval.prepare(texts, [base, extended], seed=3, max_length=128)
    assert a.n_words == b.n_words > 50 and (a.chars == b.chars).all()
    assert sum(int((lab != -100).sum()) for _, _, lab, _ in b.batches) < \
        sum(int((lab != -100).sum()) for _, _, lab, _ in a.batches)  # fewer pieces for the same words
    again = wordeval.prepare(texts, [base, extended], seed=3, max_length=128)[0]
    assert (again.chars == a.chars).all()  # a pure function of the text and the seed
    alone = wordeval.prepare(texts, [base], seed=3, max_length=128)[0]
    assert alone.n_words >= a.n_words  # a word either tokenizer cannot align is left out for both
    # the score equals the words' summed NLL computed here from the full logits
    model = load_masked_lm(tiny_bert).model
    result = wordeval.score(model, a, "cpu")
    nll, correct = torch.zeros(a.n_words, dtype=torch.float64), torch.ones(a.n_words, dtype=torch.bool)
    with torch.no_grad():
        for ids, att, lab, wid in a.batches:
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=att).logits.double(), -1)
            for r, c in zip(*torch.nonzero(lab != -100, as_tuple=True)):
                nll[wid[r, c]] -= logp[r, c, lab[r, c]]
                correct[wid[r, c]] &= bool(logp[r, c].argmax() == lab[r, c])
    assert math.isclose(result.bits_per_char, float(nll.sum()) / math.log(2) / int(a.chars.sum()), rel_tol=1e-4)
    assert math.isclose(result.word_accuracy, float(correct.double().mean()))


# --- train --add-tokens end to end -------------------------------------------------------------------


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


def test_evaluate_predict_and_report_work_on_the_run(capsys, vocab_run_copy, tiny_bert, domain_folder):
    code, out, err = run_cli(capsys, "evaluate", "--model", tiny_bert, "--model", vocab_run_copy, "--data",
                             domain_folder, "--chunk-size", "64", "--eval-size", "24", "--precision", "fp32", "--json")
    assert_ok(code, err)
    base, tuned = (json.loads(line) for line in out.splitlines())
    assert tuned["own_tokenization"] and "own_tokenization" not in base
    assert base["masked_words"] == tuned["masked_words"] > 0  # the same words for both vocabularies
    records = [json.loads(line) for line in (vocab_run_copy / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in records if r["type"] == "eval"][-1]
    assert math.isclose(tuned["word_bits_per_char"], final["word_bits_per_char"], rel_tol=1e-4)
    code, out, err = run_cli(capsys, "predict", "--model", vocab_run_copy, "The [MASK] report.")
    assert_ok(code, err)
    from fastapi.testclient import TestClient
    from helpers import API

    from mlmtune.serve.app import create_app

    with TestClient(create_app(str(vocab_run_copy), compare=tiny_bert)) as client:  # serve: the run beside its base
        r = client.post(API, json={"text": "The [MASK] report.", "top_k": 3})
        assert r.status_code == 200 and len(r.json()["models"]) == 2
    code, out, err = run_cli(capsys, "report", vocab_run_copy)
    assert_ok(code, err)
    page = (vocab_run_copy / "report.html").read_text()
    assert "its own vocabulary" in page and "word bits/char" in page


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


# --- bad input: one line, exit 2, nothing written ------------------------------------------------------

@pytest.mark.parametrize("content, needle", [
    (None, "no such file"),
    ("", "empty"),
    ("\n  \n", "empty"),
    ("glaxosmith\nGlaxosmith\n", "given twice"),
    ("glaxosmith\nthe\n", "one token of the vocabulary"),
    ("new york\n", "spaces"),
    ("[MASK]\n", "special"),
    ("[SEP]\n", "special"),
    ("e-mail\n", "pre-tokenizer"),
    (b"\x00\x01glax", "binary"),
    (b"caf\xe9\n", "UTF-8"),
], ids=["missing", "empty", "blank", "duplicate", "known", "space", "mask", "sep", "punctuation", "binary", "latin1"])
def test_bad_word_files(capsys, tiny_bert, news_folder, tmp_path, content, needle):
    words = tmp_path / "words.txt"
    if isinstance(content, bytes):
        words.write_bytes(content)
    elif content is not None:
        words.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, news_folder, out, "--add-tokens", words))
    assert_clean_error(code, err, needle)
    assert not out.exists()


@pytest.mark.parametrize("extra, needle", [
    (["--add-tokens", "0"], "--add-tokens 0"),
    (["--add-tokens", "-5"], "--add-tokens -5"),
    (["--add-tokens", "50", "--min-count", "100000"], "--min-count"),
    (["--add-tokens", "5", "--min-count", "0"], "--min-count"),
    (["--add-tokens", "5", "--streaming"], "--streaming"),
    (["--new-token-lr", "1e-3"], "needs --add-tokens"),
    (["--add-tokens", "5", "--new-token-lr", "0"], "--new-token-lr"),
    (["--add-tokens", "5", "--new-token-lr", "nan"], "--new-token-lr"),
])
def test_bad_add_tokens_flags(capsys, tiny_bert, news_folder, tmp_path, extra, needle):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, news_folder, out, *extra))
    assert_clean_error(code, err, needle)
    assert not out.exists()


def test_add_tokens_with_another_tokenizer_is_refused(capsys, tiny_bert, news_folder, tmp_path):
    tok = fresh_tokenizer()  # a WordPiece of the model's first 5,000 tokens: the same ids, another vocabulary
    small = tmp_path / "small"
    tok.save_pretrained(tmp_path / "full")
    small.mkdir()
    (small / "tokenizer_config.json").write_text((tmp_path / "full" / "tokenizer_config.json").read_text())
    first = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])[:5000]
    (small / "vocab.txt").write_text("".join(t + "\n" for t, _ in first), encoding="utf-8")
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, news_folder, out, "--add-tokens", "5", "--min-count", "2",
                                               "--tokenizer", small))
    assert_clean_error(code, err, "--tokenizer", "differs")
    assert not out.exists()


def test_a_tokenizer_without_a_fast_backend_is_refused():
    class Slow:
        is_fast = False
        name_or_path = "slow-model"

    with pytest.raises(ModelError, match="fast tokenizer"):
        vocab.WordCutter(Slow())


def test_yaml_takes_a_number_and_the_choice_is_on_training_documents_only(tmp_path, domain_folder):
    path = tmp_path / "run.yaml"
    path.write_text("add_tokens: 100\nmin_count: 3\n")
    cfg = build_config(load_config_file(path))
    assert cfg.add_tokens == "100" and parse_count(cfg.add_tokens) == 100
    docs = read_corpus([domain_folder])
    train = training_texts(docs, eval_fraction=0.1, seed=42)
    held = heldout_texts(docs, eval_fraction=0.1, seed=42)
    assert len(train) + len(held) == len(docs.train) and not set(train) & set(held) and len(held) == 4
    with pytest.raises(ConfigError, match="--add-tokens 0"):
        parse_count("0")


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


def test_add_tokens_refuses_a_tokenizer_that_is_not_wordpiece():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "ab": 2, "[MASK]": 3}, merges=[("a", "b")]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, mask_token="[MASK]")
    with pytest.raises(ConfigError, match="WordPiece"):
        vocab.check_wordpiece(tok, "a-bpe-model")
    vocab.check_wordpiece(fresh_tokenizer(), "minilm")  # minilm's is WordPiece


def test_the_masked_word_measure_reads_the_eval_data_when_given(monkeypatch, tmp_path, tiny_bert, domain_folder):
    """With --eval-data nothing of --data is held out: the masked words come from the eval source, never
    from training documents (scoring those would flatter the model)."""
    from mlmtune.config import build_config
    from mlmtune.data.sources import documents_from_config
    from mlmtune.eval import words as wordeval
    from mlmtune.eval.compare import masked_word_sets

    valid = tmp_path / "valid.txt"
    valid.write_text("The quizzify panel met on Tuesday.\n\nA zymurgist wrote to the board.\n", encoding="utf-8")
    seen, real = [], wordeval.prepare
    monkeypatch.setattr(wordeval, "prepare", lambda texts, tokenizers, **kw: seen.append(list(texts)) or real(
        texts, tokenizers, **kw))
    tok = fresh_tokenizer()
    for data, read_train in (([domain_folder], True), ([], False)):
        cfg = build_config({"model": tiny_bert, "data": data, "eval_data": [str(valid)]})
        masked_word_sets(cfg, documents_from_config(cfg, read_train=read_train), [tok], 128)
        assert seen[-1] == [valid.read_text(encoding="utf-8")]
