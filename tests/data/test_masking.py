import numpy as np
import pytest
import torch

from mlmtune.data.masking import IGNORE_INDEX, Masker, MaskingSpec


def _batch(tokenizer, rows=64, length=128, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(2000, 20000, size=(rows, length))
    ids[:, 0] = tokenizer.cls_token_id
    lengths = rng.integers(length // 2, length + 1, size=rows)
    attention = np.arange(length)[None, :] < lengths[:, None]
    ids[np.arange(rows), lengths - 1] = tokenizer.sep_token_id
    ids[~attention] = tokenizer.pad_token_id
    return ids, attention


def test_never_masks_special_or_pad_tokens(tokenizer):
    ids, attention = _batch(tokenizer)
    masker = Masker(tokenizer, MaskingSpec(probability=0.9))
    for stream in range(5):
        corrupted, labels = masker(ids, attention, np.arange(len(ids)), seed=0, stream=stream)
        special = np.isin(ids, tokenizer.all_special_ids) | ~attention
        assert (labels[special] == IGNORE_INDEX).all()
        assert (corrupted[special] == ids[special]).all()


def test_rates_match_15_percent_and_80_10_10(tokenizer):
    ids, attention = _batch(tokenizer, rows=256)
    masker = Masker(tokenizer, MaskingSpec())
    maskable = ~(np.isin(ids, tokenizer.all_special_ids) | ~attention)
    chosen = masked = random = kept = total = 0
    for stream in range(20):
        corrupted, labels = masker(ids, attention, np.arange(len(ids)), seed=7, stream=stream)
        c = labels != IGNORE_INDEX
        chosen += c.sum()
        total += maskable.sum()
        masked += (corrupted[c] == tokenizer.mask_token_id).sum()
        kept += (corrupted[c] == ids[c]).sum()
        random += ((corrupted[c] != ids[c]) & (corrupted[c] != tokenizer.mask_token_id)).sum()
    assert abs(chosen / total - 0.15) < 0.003
    assert abs(masked / chosen - 0.8) < 0.01
    assert abs(random / chosen - 0.1) < 0.008
    assert abs(kept / chosen - 0.1) < 0.008  # includes random draws of the same token (~1e-5)


def test_random_replacements_are_never_special(tokenizer):
    ids, attention = _batch(tokenizer)
    masker = Masker(tokenizer, MaskingSpec(probability=0.5, mask_replace_prob=0.0, random_replace_prob=1.0))
    corrupted, labels = masker(ids, attention, np.arange(len(ids)), seed=1, stream=0)
    replaced = corrupted[labels != IGNORE_INDEX]
    assert not np.isin(replaced, tokenizer.all_special_ids).any()
    assert len(np.unique(replaced)) > 1000  # spread over the vocabulary


def test_masks_depend_only_on_seed_stream_and_example(tokenizer):
    ids, attention = _batch(tokenizer, rows=8)
    masker = Masker(tokenizer, MaskingSpec())
    a = masker(ids, attention, np.arange(8), seed=3, stream=0)
    b = masker(ids, attention, np.arange(8), seed=3, stream=0)
    # the same examples in another batch composition get the same masks
    half = masker(ids[4:], attention[4:], np.arange(4, 8), seed=3, stream=0)
    other_epoch = masker(ids, attention, np.arange(8), seed=3, stream=1)
    other_seed = masker(ids, attention, np.arange(8), seed=4, stream=0)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.array_equal(a[1][4:], half[1])
    assert not np.array_equal(a[1], other_epoch[1])
    assert not np.array_equal(a[1], other_seed[1])


def test_inputs_are_not_modified(tokenizer):
    ids, attention = _batch(tokenizer, rows=4)
    before = ids.copy()
    Masker(tokenizer, MaskingSpec())(ids, attention, np.arange(4), seed=0, stream=0)
    assert np.array_equal(ids, before)


def test_whole_words_are_never_split(tokenizer):
    text = "unbelievably tokenization of extraordinarily hyperparameterized transformers " * 6
    enc = tokenizer([text] * 32)
    ids = np.array(enc["input_ids"])
    words = np.array([[-1 if w is None else w for w in enc.word_ids(i)] for i in range(32)])
    attention = np.ones_like(ids, bool)
    masker = Masker(tokenizer, MaskingSpec(probability=0.3, whole_word=True))
    share = []
    for stream in range(10):
        _, labels = masker(ids, attention, np.arange(32), seed=0, stream=stream, word_ids=words)
        chosen = labels != IGNORE_INDEX
        for row in range(32):
            for w in np.unique(words[row][words[row] >= 0]):
                pieces = chosen[row][words[row] == w]
                assert pieces.all() or not pieces.any()
        share.append(chosen[:, 1:-1].mean())
    assert abs(np.mean(share) - 0.3) < 0.03


def test_whole_word_mask_needs_word_ids(tokenizer):
    ids, attention = _batch(tokenizer, rows=2)
    with pytest.raises(Exception, match="word ids"):
        Masker(tokenizer, MaskingSpec(whole_word=True))(ids, attention, np.arange(2), seed=0, stream=0)


def test_rates_agree_with_transformers_collator(tokenizer):
    """Same choice, [MASK] and random rates as DataCollatorForLanguageModeling, within sampling error."""
    from transformers import DataCollatorForLanguageModeling

    ids, attention = _batch(tokenizer, rows=256)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=0)
    torch.manual_seed(0)
    features = [{"input_ids": row[a].tolist()} for row, a in zip(ids, attention)]
    ours = Masker(tokenizer, MaskingSpec())

    def rates(corrupted, labels, original):
        c = labels != IGNORE_INDEX
        maskable = ~np.isin(original, tokenizer.all_special_ids)
        return np.array([c.sum() / maskable.sum(), (corrupted[c] == tokenizer.mask_token_id).mean()])

    theirs_rates, ours_rates = [], []
    for stream in range(5):
        out = collator(features)
        padded = out["input_ids"].numpy()
        original = np.where(out["labels"].numpy() != IGNORE_INDEX, out["labels"].numpy(), padded)
        theirs_rates.append(rates(padded, out["labels"].numpy(), original))
        c, l = ours(ids, attention, np.arange(len(ids)), seed=0, stream=stream)
        ours_rates.append(rates(c, l, np.where(attention, ids, tokenizer.pad_token_id)))
    assert np.allclose(np.mean(theirs_rates, 0), np.mean(ours_rates, 0), atol=0.01)


class _NotFast:
    """A tokenizer that gives no word ids (what a Python-only tokenizer looks like to mlmtune)."""

    def __init__(self, inner):
        self._inner = inner
        self.is_fast = False

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __len__(self):
        return len(self._inner)


def test_whole_word_mask_refuses_a_tokenizer_without_word_ids(tokenizer):
    from mlmtune.errors import ConfigError

    with pytest.raises(ConfigError, match="--whole-word-mask"):
        Masker(_NotFast(tokenizer), MaskingSpec(whole_word=True))
    Masker(_NotFast(tokenizer), MaskingSpec())  # token masking needs no word ids


def test_whole_words_share_one_action(tokenizer):
    """80/10/10 applies per word: a chosen word is all [MASK], or all random, or all kept."""
    text = "unbelievably extraordinarily hyperparameterized tokenization " * 8
    enc = tokenizer([text] * 64)
    ids = np.array(enc["input_ids"])
    words = np.array([[-1 if w is None else w for w in enc.word_ids(i)] for i in range(64)])
    masker = Masker(tokenizer, MaskingSpec(probability=0.5, whole_word=True))
    corrupted, labels = masker(ids, np.ones_like(ids, bool), np.arange(64), seed=2, stream=0, word_ids=words)
    actions = {"mask": 0, "other": 0}
    for row in range(64):
        for w in np.unique(words[row][words[row] >= 0]):
            at = words[row] == w
            if (labels[row][at] == IGNORE_INDEX).all():
                continue
            is_mask = corrupted[row][at] == tokenizer.mask_token_id
            assert is_mask.all() or not is_mask.any()
            actions["mask" if is_mask.all() else "other"] += 1
    assert 0.7 < actions["mask"] / (actions["mask"] + actions["other"]) < 0.9


def test_eval_masks_are_identical_in_a_fresh_process(tokenizer, news_folder):
    """'Masked once with a fixed seed': a new interpreter draws the same evaluation masks."""
    import hashlib
    import subprocess
    import sys

    code = (
        "import hashlib, sys; from mlmtune.model.tokenizer import load_tokenizer; from mlmtune.data.sources import read_corpus;"
        "from mlmtune.data.blocks import prepare; from mlmtune.data.batching import eval_batches;"
        "from mlmtune.data.masking import Masker, MaskingSpec;"
        "tok = load_tokenizer('minilm'); s = prepare(read_corpus([sys.argv[1]]), tok, chunk_size=64, eval_size=30, seed=9);"
        "bs = eval_batches(s.eval, Masker(tok, MaskingSpec()), seed=9, batch_size=8, pad_id=0);"
        "print(hashlib.sha256(b''.join(b.input_ids.numpy().tobytes() + b.labels.numpy().tobytes() for b in bs)).hexdigest())"
    )
    out = subprocess.run([sys.executable, "-c", code, news_folder], capture_output=True, text=True, check=True)
    from mlmtune.data.batching import eval_batches
    from mlmtune.data.blocks import prepare
    from mlmtune.data.sources import read_corpus

    s = prepare(read_corpus([news_folder]), tokenizer, chunk_size=64, eval_size=30, seed=9)
    here = eval_batches(s.eval, Masker(tokenizer, MaskingSpec()), seed=9, batch_size=8, pad_id=0)
    digest = hashlib.sha256(b"".join(b.input_ids.numpy().tobytes() + b.labels.numpy().tobytes() for b in here))
    assert out.stdout.strip() == digest.hexdigest()
    assert sum(b.n_masked for b in here) > 0


@pytest.fixture(scope="module")
def one_word_tokenizer(family_models, tmp_path_factory) -> str:
    """XLM-R's model and vocabulary with a tokenizer.json that has no pre-tokenizer (spaces become '▁' in
    its normaliser, as some SentencePiece conversions do): every text is one word to it."""
    import shutil

    from tokenizers import normalizers
    from transformers import TokenizersBackend

    from mlmtune.model.tokenizer import load_tokenizer

    built = family_models["xlm-roberta"]
    folder = tmp_path_factory.mktemp("one-word") / "model"
    shutil.copytree(built.mlm, folder)
    backend = load_tokenizer(built.mlm).backend_tokenizer
    backend.pre_tokenizer = None
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    TokenizersBackend(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
                      unk_token="<unk>", pad_token="<pad>", mask_token="<mask>").save_pretrained(folder)
    return str(folder)


def test_whole_word_mask_refuses_a_tokenizer_without_word_boundaries(one_word_tokenizer, news_folder, tmp_path,
                                                                     capsys):
    """Word ids from a tokenizer without a pre-tokenizer are 0 for a whole text: whole-word masking would mask a
    block whole or not at all. Refused in one line, before anything is written; token masking is fine."""
    from helpers import assert_clean_error, run_cli, train_argv

    from mlmtune.errors import ConfigError
    from mlmtune.model.tokenizer import load_tokenizer

    tok = load_tokenizer(one_word_tokenizer)
    assert set(tok("one two three", add_special_tokens=False).word_ids()) == {0}
    with pytest.raises(ConfigError, match="--whole-word-mask needs word boundaries"):
        Masker(tok, MaskingSpec(whole_word=True))
    Masker(tok, MaskingSpec())
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *train_argv(one_word_tokenizer, news_folder, out, "--whole-word-mask"))
    assert_clean_error(code, err, "word boundaries", "pre-tokenizer", "drop --whole-word-mask")
    assert not out.exists()
