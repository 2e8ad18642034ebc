"""Loading a tokenizer (model/tokenizer.py)."""

from __future__ import annotations

import pytest

from mlmtune.errors import ModelError
from mlmtune.model.tokenizer import load_tokenizer


def test_folder_without_tokenizer_is_a_model_error(tmp_path, tiny_bert):
    import shutil

    for name in ("config.json", "model.safetensors"):
        shutil.copy(f"{tiny_bert}/{name}", tmp_path / name)
    with pytest.raises(ModelError, match="tokenizer"):
        load_tokenizer(str(tmp_path))
