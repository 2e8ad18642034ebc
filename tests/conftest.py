"""Shared fixtures: tiny models built here (never downloaded), the minilm tokenizer, small corpora.

HF_HUB_OFFLINE / HF_DATASETS_OFFLINE make any accidental Hub access fail at once instead of
waiting on a network that is not there.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import shutil
from pathlib import Path

import pytest

pytest.register_assert_rewrite("helpers")  # its asserts explain themselves as a test module's do

from helpers import RARE, bbc_files, save_tiny, snapshot, train_argv, vocab_train_args
from hub_standin import HubStandIn
from huggingface_hub import constants

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


# --- the Hub: a local stand-in, or no token ------------------------------------------------------

@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The stand-in, and this process's huggingface_hub pointed at it with its token (HF_ENDPOINT and
    HF_HUB_OFFLINE are read when huggingface_hub is imported, so the constants are patched)."""
    with HubStandIn() as standin:
        monkeypatch.setattr(constants, "ENDPOINT", standin.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", standin.token)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        yield standin


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-stored-tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


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
