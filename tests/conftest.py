"""Fixtures every folder of tests uses: tiny models built here (never downloaded), the minilm
tokenizer, small corpora, and the runs that tests read (each trained once per session; a test that
changes one takes a copy). Plain helpers are in helpers.py; a fixture only one folder uses is in that
folder's conftest.py.

HF_HUB_OFFLINE / HF_DATASETS_OFFLINE make any accidental Hub access fail at once instead of
waiting on a network that is not there.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import atexit
import json
import shutil
import tempfile

if "MLMTUNE_CACHE" not in os.environ:  # the session's own tokenize-once cache (subprocesses inherit it), never ~/.cache
    os.environ["MLMTUNE_CACHE"] = tempfile.mkdtemp(prefix="mlmtune-test-cache-")
    atexit.register(shutil.rmtree, os.environ["MLMTUNE_CACHE"], ignore_errors=True)
from pathlib import Path

import pytest

pytest.register_assert_rewrite("helpers")  # its asserts explain themselves as a test module's do

from helpers import RARE, bbc_files, save_tiny, snapshot, tiny_bert_config, train_args, train_argv, vocab_train_args

from mlmtune.cli import main
from mlmtune.model.load import quiet_transformers
from mlmtune.model.tokenizer import load_tokenizer

quiet_transformers()


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer("minilm")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, tokenizer) -> str:
    """A 2-layer BertForMaskedLM with the minilm vocabulary, saved with its tokenizer."""
    from transformers import BertForMaskedLM

    return save_tiny(tmp_path_factory.mktemp("tiny-bert"), BertForMaskedLM, tokenizer)


@pytest.fixture(scope="session")
def no_dropout_bert(tmp_path_factory, tokenizer) -> str:
    """Dropout draws depend on how a batch is split; without dropout, splits must agree."""
    from transformers import BertForMaskedLM

    return save_tiny(tmp_path_factory.mktemp("bert-no-dropout"), BertForMaskedLM, tokenizer,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory, tokenizer) -> str:
    """A BertModel with no MLM head (the shape of a sentence encoder such as minilm)."""
    from transformers import BertModel

    return save_tiny(tmp_path_factory.mktemp("tiny-encoder"), BertModel, tokenizer)


@pytest.fixture(scope="session")
def news_folder(tmp_path_factory) -> str:
    """40 BBC articles as a folder of .txt files (40 documents, ~20k tokens)."""
    folder = tmp_path_factory.mktemp("news")
    for i, path in enumerate(bbc_files(40)):
        (folder / f"{i:03d}.txt").write_text(path.read_text(encoding="latin-1"), encoding="utf-8")
    return str(folder)


# --- one finished run, trained once: read it, or change a copy of it --------------------------------

@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_bert, news_folder) -> Path:
    """A finished 2-step run of tiny_bert on news_folder: checkpoints at steps 1 and 2, a report and a
    model card, in a folder named news-bert. Shared by every test that only reads a run: a test that
    changes it takes run_copy (checked: the folder must be as trained when the session ends)."""
    out = tmp_path_factory.mktemp("finished") / "news-bert"
    code = main([str(a) for a in train_argv(tiny_bert, news_folder, out, "--max-steps", "2", "--save-every", "1",
                                            "--report")])
    assert code == 0
    assert len(list((out / "checkpoints").glob("step-*"))) == 2
    trained = snapshot(out)
    yield out
    assert snapshot(out) == trained, "a test changed the shared finished_run: it should take run_copy"


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A copy of finished_run of this test's own, to change."""
    return Path(shutil.copytree(finished_run, tmp_path / "copy"))


# --- a domain corpus and a run that added words to the vocabulary ----------------------------------

@pytest.fixture(scope="session")
def domain_folder(tmp_path_factory, news_folder) -> str:
    """The 40 news articles, each with a few made-up domain words that the tokenizer cuts."""
    folder = tmp_path_factory.mktemp("domain")
    for i, path in enumerate(sorted(Path(news_folder).glob("*.txt"))):
        text = path.read_text(encoding="utf-8")
        extra = " ".join(f"The {RARE[(i + k) % 3]} report." for k in range(4))
        (folder / path.name).write_text(extra + "\n" + text, encoding="utf-8")
    return str(folder)


@pytest.fixture(scope="session")
def vocab_run(tmp_path_factory, tiny_bert, domain_folder) -> Path:
    """A 6-step run on domain_folder that added RARE to the vocabulary. Shared: a test that changes it
    takes vocab_run_copy."""
    out = tmp_path_factory.mktemp("vocab-run") / "run"
    words = tmp_path_factory.mktemp("words") / "words.txt"
    words.write_text("\n".join(RARE) + "\n", encoding="utf-8")
    assert main([str(a) for a in vocab_train_args(tiny_bert, domain_folder, out, "--add-tokens", words)]) == 0
    trained = snapshot(out)
    yield out
    assert snapshot(out) == trained, "a test changed the shared vocab_run: it should take vocab_run_copy"


@pytest.fixture
def vocab_run_copy(vocab_run, tmp_path) -> Path:
    return Path(shutil.copytree(vocab_run, tmp_path / "vocab-run"))


# --- more tiny models ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def small_model(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """A BERT with a 1,000-row vocabulary: alone (no tokenizer), and with the 30,522-token minilm
    tokenizer saved beside it (what `serve` and `predict` would load)."""
    import torch
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("small")
    model = BertForMaskedLM(tiny_bert_config(1000))
    model.save_pretrained(folder / "small")
    model.save_pretrained(folder / "with-big-tokenizer")
    tokenizer.save_pretrained(folder / "with-big-tokenizer")
    return {"alone": folder / "small", "with-tokenizer": folder / "with-big-tokenizer"}


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory) -> str:
    """A 2-layer RobertaForMaskedLM with a byte-level BPE tokenizer trained here (mask token `<mask>`)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["The cat is happy. Shares in the company fell sharply. Café naïve 東京 über."] * 20,
                            vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    merges = [tuple(line.split()) for line in (folder / "merges.txt").read_text().splitlines()[1:] if line]
    tokenizer = RobertaTokenizerFast(vocab=json.loads((folder / "vocab.json").read_text()), merges=merges,
                                     model_max_length=64)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=66, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    RobertaForMaskedLM(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def family_models(tmp_path_factory):
    """The masked-LM families users bring (tests/families.py), each a tiny masked LM and a headless base with
    the family's own tokenizer trained here; built on first use, once per session."""
    from families import FamilyModels

    return FamilyModels(tmp_path_factory.mktemp("families"))


# --- separate validation text, and a run evaluated on it ------------------------------------------

@pytest.fixture(scope="session")
def split_news(news_folder, tmp_path_factory) -> tuple[str, str]:
    """The 40 articles as a training folder of 30 and a validation folder of 10."""
    root = tmp_path_factory.mktemp("split-news")
    files = sorted(Path(news_folder).glob("*.txt"))
    for name, part in (("train", files[:30]), ("valid", files[30:])):
        (root / name).mkdir()
        for f in part:
            (root / name / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    return str(root / "train"), str(root / "valid")


@pytest.fixture(scope="session")
def eval_data_run(tiny_bert, split_news, tmp_path_factory):
    """A 4-step run on the training folder, evaluated on the validation folder (the whole of it)."""
    train, valid = split_news
    out = tmp_path_factory.mktemp("eval-data") / "run"
    code = main([str(a) for a in train_args(tiny_bert, out, "--data", train, "--eval-data", valid,
                                            "--eval-size", "none", "--max-steps", 4)])
    assert code == 0
    trained = snapshot(out)
    yield out
    assert snapshot(out) == trained, "a test changed the shared eval_data_run: it should change a copy"


# --- a headless browser: Debian's chromium driven by playwright --------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _sync_playwright():
    if not CHROMIUM.exists():
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM} (as root: apt-get install chromium, or make browser)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install 'mlmtune[test]'); "
                    "it drives /usr/bin/chromium, no browser download needed")
    return sync_playwright


@pytest.fixture(scope="module")
def browser():
    """Chromium, headless; the test is skipped (saying why) without /usr/bin/chromium or playwright."""
    sync_playwright = _sync_playwright()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
