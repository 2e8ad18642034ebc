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


# --- a tokenizer without a fast version (PhoBERT's) is refused --------------------------------------

@pytest.fixture(scope="module")
def phobert_like(tmp_path_factory) -> str:
    from families import save_phobert_like

    return save_phobert_like(tmp_path_factory.mktemp("phobert-like"))


def test_a_slow_only_tokenizer_is_refused_naming_why_and_what_instead(phobert_like):
    with pytest.raises(ModelError, match=r"PhobertTokenizer\) has no fast version.*: use xlm-roberta-base"):
        load_tokenizer(phobert_like)


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "vocab", "serve"])
def test_every_command_refuses_a_slow_only_tokenizer_in_one_line(command, phobert_like, news_folder, tmp_path,
                                                                 capsys):
    from helpers import assert_clean_error_no_stdout, eval_argv, run_cli, train_argv

    out = tmp_path / "out"
    argv = {"train": train_argv(phobert_like, news_folder, out),
            "evaluate": eval_argv(phobert_like, news_folder),
            "predict": ["predict", "--model", phobert_like, "The [MASK] is happy."],
            "vocab": ["vocab", "--model", phobert_like, "--data", news_folder],
            "serve": ["serve", "--model", phobert_like, "--port", "0"]}[command]
    code, stdout, err = run_cli(capsys, *argv)
    err = "".join(line for line in err.splitlines(True) if not line.startswith("loading "))  # serve's progress
    assert_clean_error_no_stdout(code, stdout, err, "PhobertTokenizer", "no fast version", "xlm-roberta-base")
    assert not out.exists()
