"""Shared fixtures: tiny models built here (never downloaded), the minilm tokenizer, small corpora.

HF_HUB_OFFLINE / HF_DATASETS_OFFLINE make any accidental Hub access fail at once instead of
waiting on a network that is not there.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import random
from pathlib import Path

import pytest

from mlmtune.data.sources import bbc_news_folder
from mlmtune.model.load import quiet_transformers
from mlmtune.model.tokenizer import load_tokenizer

quiet_transformers()


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer("minilm")


def tiny_bert_config(vocab_size: int, **overrides):
    from transformers import BertConfig

    values = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=128, type_vocab_size=2)
    values.update(overrides)
    return BertConfig(**values)


def save_tiny(folder, model_class, tokenizer, *, seed: int = 0, **overrides) -> str:
    """A tiny `model_class` (BertForMaskedLM, BertModel) with the tokenizer's vocabulary, weights drawn
    from `seed`, saved with the tokenizer in `folder`."""
    import torch

    torch.manual_seed(seed)
    model_class(tiny_bert_config(len(tokenizer), **overrides)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


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


def bbc_files(n: int, seed: int = 0) -> list[Path]:
    files = sorted(bbc_news_folder().rglob("*.txt"))
    return random.Random(seed).sample(files, n)


@pytest.fixture(scope="session")
def news_folder(tmp_path_factory) -> str:
    """40 BBC articles as a folder of .txt files (40 documents, ~20k tokens)."""
    folder = tmp_path_factory.mktemp("news")
    for i, path in enumerate(bbc_files(40)):
        (folder / f"{i:03d}.txt").write_text(path.read_text(encoding="latin-1"), encoding="utf-8")
    return str(folder)
