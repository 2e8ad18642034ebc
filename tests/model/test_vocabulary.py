"""Domain vocabulary (model/vocabulary.py): how a tokenizer cuts a corpus, new words whose rows are the
mean of their pieces (so predictions do not jump), their learning rate, and bad word files."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from helpers import RARE, assert_clean_error, fresh_tokenizer, run_cli, vocab_train_args, words_file

from mlmtune.data.sources import read_corpus
from mlmtune.errors import ConfigError, ModelError
from mlmtune.model import vocabulary as vocab
from mlmtune.model.load import load_masked_lm
from mlmtune.model.objective import MaskedLMObjective
from mlmtune.model.tokenizer import load_tokenizer

# --- how a tokenizer cuts a corpus ----------------------------------------------------------------

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


def test_decode_spaces_an_added_word_as_the_base_spaces_its_pieces(vocab_run, tiny_bert):
    """(The base itself decodes "(x) a-b" as "( x ) a - b": the added words must change nothing.)"""
    from transformers import AutoTokenizer

    tok, base = AutoTokenizer.from_pretrained(vocab_run), load_tokenizer(tiny_bert)
    text = "the glaxosmith report, (quizzify) zymurgist-glaxosmith. glaxosmith2 subglaxosmith"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tok.convert_tokens_to_ids("glaxosmith")) == 2  # not inside glaxosmith2 or subglaxosmith
    assert tok.decode(ids) == base.decode(base(text, add_special_tokens=False)["input_ids"])


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


# --- bad input: one line, exit 2, nothing written -------------------------------------------------

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


def test_add_tokens_refuses_a_tokenizer_that_is_not_wordpiece():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "ab": 2, "[MASK]": 3}, merges=[("a", "b")]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, mask_token="[MASK]")
    with pytest.raises(ConfigError, match="WordPiece"):
        vocab.check_wordpiece(tok, "a-bpe-model")
    vocab.check_wordpiece(fresh_tokenizer(), "minilm")  # minilm's is WordPiece


def test_a_word_longer_than_the_tokenizer_cuts_is_named_as_too_long(capsys, tmp_path, tiny_bert, news_folder):
    words = tmp_path / "words.txt"
    words.write_text("pharmaco" * 20 + "\n", encoding="utf-8")
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *vocab_train_args(tiny_bert, news_folder, out, "--add-tokens", words))
    assert_clean_error(code, err, "longer than the 100 characters")
    assert not out.exists()


def test_a_long_document_is_counted_in_windows(tokenizer):
    """`mlmtune vocab` held a ~100 MB line's words at once (5.3 GB, issue 21): a long document is read in
    windows, no longer than data/windows.WINDOW_CHARS, and counted as whole."""
    from collections import Counter

    from helpers import bbc_files

    from mlmtune.data.windows import WINDOW_CHARS

    line = "  ".join(p.read_text(encoding="latin-1") for p in bbc_files(400, seed=2))
    assert len(line) > 2 * WINDOW_CHARS
    cutter = vocab.WordCutter(tokenizer, "mlmtune vocab")
    whole = Counter(cutter.words(line))
    seen = []
    words = cutter.words
    cutter.words = lambda text: seen.append(len(text)) or words(text)
    assert vocab.count_words(cutter, [line]) == whole
    assert max(seen) <= WINDOW_CHARS
    assert vocab.count_words(cutter, [line], window_chars=300) == whole  # cut at nearly every word
