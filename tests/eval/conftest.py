"""TODO"""

from __future__ import annotations

import pytest
from helpers import save_tiny


@pytest.fixture(scope="module")
def other_bert(tmp_path_factory, tokenizer) -> str:
    """A second tiny BERT with the same tokenizer as tiny_bert and other weights."""
    from transformers import BertForMaskedLM

    return save_tiny(tmp_path_factory.mktemp("other-bert"), BertForMaskedLM, tokenizer, seed=1)
