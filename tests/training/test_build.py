"""The model as a run builds it (training/build.py): --head-init on a model with or without a head,
and --dropout."""

from __future__ import annotations

import json

import torch
from helpers import assert_ok, records, run_cli, tiny, train_argv

from mlmtune.training.fit import fit


def test_random_head_init_skips_the_warm_start(tmp_path, tiny_encoder, news_folder):
    results = fit(tiny(tiny_encoder, news_folder, tmp_path / "random", max_steps=2, head_init="random"))
    assert results["warm_start_perplexity"] is None
    assert "warm_start" not in {r["type"] for r in records(tmp_path / "random")}


def test_head_init_warm_on_a_model_with_a_head_is_a_note(capsys, tmp_path, tiny_bert, news_folder):
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, out, "--head-init", "prefit"))
    assert_ok(code, err)
    assert "has its own MLM head, so --head-init prefit leaves it as it is" in stdout
    assert json.loads((out / "results.json").read_text())["warm_start_perplexity"] is None


def test_dropout_zero_trains_like_a_model_without_dropout(tmp_path, tiny_bert, no_dropout_bert, news_folder):
    """tiny_bert and no_dropout_bert start from the same weights; only their dropout differs."""
    from safetensors.torch import load_file

    def weights(model, name, **extra):
        fit(tiny(model, news_folder, tmp_path / name, max_steps=3, **extra))
        return load_file(str(tmp_path / name / "model.safetensors"))

    off = weights(tiny_bert, "off", dropout=0.0)
    plain = weights(no_dropout_bert, "plain")
    kept = weights(tiny_bert, "kept")
    assert all(torch.allclose(off[k], plain[k], atol=1e-6) for k in plain)
    assert any(not torch.allclose(kept[k], plain[k], atol=1e-6) for k in plain)
    saved = json.loads((tmp_path / "off" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == 0.1 and saved["attention_probs_dropout_prob"] == 0.1
