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


# --- typed results: dicts with attributes, a readable repr, a table in a notebook ---------------------

SMALL = dict(chunk_size=32, eval_size=8, seed=0, precision="fp32")


def test_evaluate_and_compare_return_named_results_with_the_word_measures(tiny_bert, finished_run, news_folder):
    import json

    import mlmtune

    quiet = lambda message: None  # noqa: E731
    result = mlmtune.evaluate(tiny_bert, news_folder, say=quiet, **SMALL)
    assert isinstance(result, mlmtune.ModelResult) and isinstance(result, dict)
    assert result.perplexity == result["perplexity"] and result.masked_tokens > 0
    assert result.masked_words > 0 and 0 <= result.word_accuracy <= 1  # the word measure, as evaluate --json has it
    assert repr(result).startswith("ModelResult(model=") and f"perplexity={result.perplexity:,.2f}" in repr(result)
    assert "<table>" in result._repr_html_() and json.loads(json.dumps(result)) == result.as_dict()
    rows = mlmtune.compare([tiny_bert, str(finished_run)], news_folder, say=quiet, **SMALL)
    assert isinstance(rows, mlmtune.Comparison) and [r.model for r in rows] == [tiny_bert, str(finished_run)]
    assert rows[0] == result  # the same masks, the same figures, the same names
    assert "perplexity and accuracy: the same fixed masks" in repr(rows) and repr(rows).startswith("model ")
    assert rows._repr_html_().count("<tr>") == 3 and json.loads(json.dumps(rows))[1]["model"] == str(finished_run)


def test_train_returns_a_result_that_is_still_the_dict(tiny_bert, news_folder, tmp_path):
    import json

    import mlmtune

    result = mlmtune.train(model=tiny_bert, data=[news_folder], output_dir=str(tmp_path / "run"), batch_size=4,
                           max_steps=1, report=False, **SMALL)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert isinstance(result, mlmtune.TrainResult) and dict(result) == saved  # results.json's figures, as before
    assert result.steps == result["steps"] == 1 and result.output_dir == str(tmp_path / "run")
    assert repr(result).startswith(f"TrainResult({str(tmp_path / 'run')!r}: steps=1, ")
    assert "eval_perplexity=" in repr(result) and "<table>" in result._repr_html_()


def test_fill_mask_and_its_predictions_read_as_the_pipeline(tiny_bert):
    import mlmtune

    fm = mlmtune.FillMask(tiny_bert)
    assert repr(fm).startswith(f"FillMask({tiny_bert!r}: ") and "tokens" in repr(fm) and "[MASK]" in repr(fm)
    prediction = fm.predict(["The [MASK] is happy."], top_k=2)[0][0][0]
    assert isinstance(prediction.token, int)  # the id, as the pipeline's dict has it (it was the string)
    assert prediction.as_dict()["token"] == prediction.token == fm("The [MASK] is happy.", top_k=2)[0]["token"]
    assert prediction.word == prediction.token_str.strip() and repr(prediction).startswith(f"Prediction({prediction.word!r}")


def test_a_corpus_is_prepared_once_per_process_until_a_file_changes(tiny_bert, news_folder, tmp_path, monkeypatch):
    """Each evaluate re-read and re-tokenized the corpus (~12 s for bbc-news on 2 cores)."""
    import shutil

    import mlmtune
    import mlmtune.data.blocks as blocks

    data = shutil.copytree(news_folder, tmp_path / "news")  # paths no other test has prepared
    monkeypatch.setenv("MLMTUNE_CACHE", "off")  # the memo itself, not the tokenize-once disk cache
    calls = []
    tokenize = blocks.tokenize
    monkeypatch.setattr(blocks, "tokenize", lambda *a, **k: calls.append(1) or tokenize(*a, **k))
    quiet = lambda message: None  # noqa: E731
    first = mlmtune.evaluate(tiny_bert, str(data), say=quiet, **SMALL)
    assert len(calls) == 1
    again = mlmtune.evaluate(tiny_bert, str(data), say=quiet, **SMALL)
    assert len(calls) == 1 and again == first  # nothing read or tokenized again
    smaller = mlmtune.evaluate(tiny_bert, str(data), say=quiet, **{**SMALL, "eval_size": 4})
    assert len(calls) == 1  # a smaller evaluation set is a choice among the same blocks: no tokenizing
    assert smaller.masked_tokens < first.masked_tokens
    mlmtune.evaluate(tiny_bert, str(data), say=quiet, **{**SMALL, "chunk_size": 48})
    assert len(calls) == 2  # another cut: prepared again
    article = sorted(data.glob("*.txt"))[0]
    article.write_text(article.read_text() + " One more sentence.")
    mlmtune.evaluate(tiny_bert, str(data), say=quiet, **SMALL)
    assert len(calls) == 3  # a file changed: read and prepared again
