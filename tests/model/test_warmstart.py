"""A grown head starts warm (model/warmstart.py): the output bias from the unigram frequencies, and the
pre-fit on features the frozen encoder computed once."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import records, tiny

from mlmtune.model.warmstart import output_bias, unigram_log_frequency
from mlmtune.training.fit import fit

# --- the unigram bias ---------------------------------------------------------------------------

def test_unigram_bias_is_the_log_frequency():
    tokens = np.array([5, 5, 5, 7, 1, 1])  # 1 is a special token: never a target
    bias = unigram_log_frequency(tokens, 10, never=[1])
    probs = bias.exp()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert probs[5] > probs[7] > probs[0]  # seen thrice > once > never
    assert probs[1] == pytest.approx(probs[0].item())  # the special token counts as unseen
    assert bias[5].item() == pytest.approx(math.log((3 + 1) / (4 + 10)))


@pytest.mark.parametrize("family", ["bert", "distilbert", "electra", "mpnet", "roberta", "modernbert", "albert",
                                    "deberta-v2"])
def test_the_output_bias_is_the_one_the_logits_add(family):
    """The bias the warm start sets is the one each family's head adds to its logits, however the head names it."""
    from families import FAMILIES, Ids, build_model, model_config

    model = build_model(FAMILIES[family], model_config(FAMILIES[family], Ids(500, pad=1, bos=0, eos=2, cls=0, sep=2)))
    _assert_logits_move_with(model.eval(), output_bias(model))


def test_debertas_newer_head_keeps_its_vocabulary_bias_apart():
    """legacy=False: get_output_embeddings() is the head's dense layer, whose bias has a hidden size's length."""
    from transformers import DebertaV2Config, DebertaV2ForMaskedLM

    model = DebertaV2ForMaskedLM(DebertaV2Config(vocab_size=500, hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=64, legacy=False)).eval()
    assert model.get_output_embeddings().bias.shape == (32,)
    bias = output_bias(model)
    assert bias is model.lm_predictions.lm_head.bias
    _assert_logits_move_with(model, bias)


def _assert_logits_move_with(model, bias):
    ids = torch.randint(5, 500, (1, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        bias.add_(torch.arange(500, dtype=bias.dtype))
        after = model(input_ids=ids).logits
    assert torch.allclose(after - before, torch.arange(500, dtype=after.dtype).expand_as(after), atol=1e-4)


# --- warm start on a model without a head -------------------------------------------------------

@pytest.mark.parametrize("head_init", ["warm", pytest.param("prefit", marks=pytest.mark.slow)])
def test_warm_start_lowers_perplexity_and_is_recorded(tmp_path, tiny_encoder, news_folder, head_init):
    out = tmp_path / "warm"
    results = fit(tiny(tiny_encoder, news_folder, out, max_steps=2, head_init=head_init))
    fresh, warm = results["baseline_perplexity"], results["warm_start_perplexity"]
    assert warm < fresh / 5  # a fresh head sits near the vocabulary size; the bias alone beats that
    kinds = [(r["type"], r["step"]) for r in records(out) if r["type"] != "train"]
    assert kinds[:2] == [("eval", 0), ("warm_start", 0)]
    assert json.loads((out / "results.json").read_text())["warm_start_perplexity"] == pytest.approx(warm)
    # reproducible from the seed
    again = fit(tiny(tiny_encoder, news_folder, tmp_path / "again", max_steps=2, head_init=head_init))
    assert again["warm_start_perplexity"] == pytest.approx(warm, rel=1e-6)


def test_the_prefit_trains_only_the_new_head(tmp_path, tiny_encoder, news_folder, monkeypatch):
    """The encoder is frozen during the pre-fit: only the new parameters change."""
    import mlmtune.model.warmstart as w
    from mlmtune.model.load import load_masked_lm

    seen = {}
    real = w.warm_start_head

    def spy(model, *args, **kwargs):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        report = real(model, *args, **kwargs)
        seen["changed"] = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
        seen["report"] = report
        return report

    monkeypatch.setattr(w, "warm_start_head", spy)
    fit(tiny(tiny_encoder, news_folder, tmp_path / "spy", max_steps=1, head_init="prefit"))
    new = set(load_masked_lm(tiny_encoder).new_parameters)
    assert seen["changed"] and seen["changed"] <= new
    assert seen["report"].features > 0 and seen["report"].loss_after < seen["report"].loss_before
