"""The Python API (mlmtune/__init__.py): train, evaluate and fill_mask called again and again in one
process, bad input as typed errors, and `import mlmtune` without torch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mlmtune.model.fill_mask import FillMask


@pytest.mark.slow
def test_python_api_works_again_and_again(tiny_bert, news_folder, tmp_path):
    import mlmtune
    from mlmtune.errors import ConfigError, InputError, MlmtuneError

    small = dict(chunk_size=32, eval_size=8, seed=0, precision="fp32")
    perplexities = []
    for i in range(3):  # interleaved: importing the stages must not replace the functions
        results = mlmtune.train(model=tiny_bert, data=[news_folder], output_dir=str(tmp_path / f"run{i}"),
                                batch_size=4, max_steps=1, report=False, **small)
        assert results["steps"] == 1 and (tmp_path / f"run{i}" / "model.safetensors").is_file()
        perplexities.append(mlmtune.evaluate(tiny_bert, news_folder, **small).perplexity)
        top = mlmtune.fill_mask(tiny_bert, "The [MASK] is happy.", top_k=3)
        assert len(top) == 3 and all(set(p) == {"score", "token", "token_str", "sequence"} for p in top)  # the pipeline's shape
        assert callable(mlmtune.train) and callable(mlmtune.evaluate) and callable(mlmtune.fill_mask)
    assert perplexities[0] == perplexities[1] == perplexities[2]  # the same fixed masks every time

    # bad input through the API: typed errors, never SystemExit
    with pytest.raises(ConfigError):
        mlmtune.train(model=tiny_bert, data=[news_folder], output_dir=str(tmp_path / "bad"), no_such_option=1)
    with pytest.raises(ConfigError):
        mlmtune.evaluate(tiny_bert, news_folder, no_such_option=1)
    with pytest.raises(InputError):
        mlmtune.fill_mask(tiny_bert, "no mask here")
    with pytest.raises(MlmtuneError):
        mlmtune.evaluate(tiny_bert, str(tmp_path / "missing.txt"), **small)
    # the submodules stay importable
    from mlmtune.training.fit import fit

    assert callable(fit) and "mlmtune.train" not in sys.modules  # no module of the API function's name


def test_python_api_in_a_fresh_process_without_torch_at_import(tmp_path):
    code = (
        "import sys, mlmtune\n"
        "assert 'torch' not in sys.modules, 'import mlmtune loaded torch'\n"
        "for _ in range(2):\n"
        "    for call in (lambda: mlmtune.evaluate('m', 'd', bogus=1), lambda: mlmtune.train(bogus=1)):\n"
        "        try:\n"
        "            call()\n"
        "        except mlmtune.MlmtuneError:\n"
        "            pass\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_the_package_fill_mask_takes_targets(tiny_bert):
    import mlmtune

    assert mlmtune.fill_mask(tiny_bert, "The [MASK] is happy.", 3, targets=["cat"]) == \
        FillMask(tiny_bert)("The [MASK] is happy.", 3, targets=["cat"])
