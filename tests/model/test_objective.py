"""The masked-position objective (model/objective.py): the head applied to labelled positions only gives
the full loss and gradients, for BERT, RoBERTa and DistilBERT, with the training attention too."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlmtune.model.load import use_training_attention
from mlmtune.model.objective import MaskedLMObjective


def _tiny(kind: str):
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        DistilBertConfig,
        DistilBertForMaskedLM,
        RobertaConfig,
        RobertaForMaskedLM,
    )

    torch.manual_seed(0)
    if kind == "bert":
        return BertForMaskedLM(BertConfig(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                          intermediate_size=64, max_position_embeddings=64))
    if kind == "roberta":
        return RobertaForMaskedLM(RobertaConfig(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                intermediate_size=64, max_position_embeddings=66, pad_token_id=1))
    return DistilBertForMaskedLM(DistilBertConfig(vocab_size=500, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                                  max_position_embeddings=64))


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_masked_only_head_gives_the_full_loss(kind):
    model = _tiny(kind).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 500, (4, 24), generator=g)
    attention = torch.ones_like(ids)
    attention[2, 18:] = 0
    labels = torch.where(torch.rand(ids.shape, generator=g) < 0.2, ids, torch.full_like(ids, -100))
    labels[attention == 0] = -100
    sparse = MaskedLMObjective(model).eval()
    assert sparse.head is not None
    nll, correct = sparse(ids, attention, labels)
    full = model(input_ids=ids, attention_mask=attention).logits
    expected = F.cross_entropy(full.view(-1, full.shape[-1]), labels.view(-1), reduction="sum", ignore_index=-100)
    assert torch.allclose(nll, expected, rtol=1e-5, atol=1e-5)
    picked = labels != -100
    assert int(correct) == int((full[picked].argmax(-1) == labels[picked]).sum())
    # and the gradients agree
    model.zero_grad()
    nll.backward()
    g_sparse = model.get_input_embeddings().weight.grad.clone()
    model.zero_grad()
    full2 = model(input_ids=ids, attention_mask=attention).logits
    F.cross_entropy(full2.view(-1, full2.shape[-1]), labels.view(-1), reduction="sum").backward()
    assert torch.allclose(g_sparse, model.get_input_embeddings().weight.grad, atol=1e-5)


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_training_attention_on_cpu_computes_the_same_loss_and_gradients(kind):
    # fit() trains with the eager attention on a CPU (faster there than SDPA with dropout); it must be
    # the same function of the weights as the default SDPA that evaluation and users' pipelines load.
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 500, (3, 20), generator=g)
    attention = torch.ones_like(ids)
    attention[1, 12:] = 0
    labels = torch.where(torch.rand(ids.shape, generator=g) < 0.3, ids, torch.full_like(ids, -100))
    labels[attention == 0] = -100
    results = []
    for switch in (False, True):
        model = _tiny(kind).eval()  # the same weights both times (seeded)
        before = model.config._attn_implementation
        if switch:
            assert use_training_attention(model, torch.device("cpu")) == "eager"
            assert model.config._attn_implementation == "eager" != before
        nll, correct = MaskedLMObjective(model).eval()(ids, attention, labels)
        nll.backward()
        results.append((nll.detach(), int(correct), model.get_input_embeddings().weight.grad))
    (nll_a, correct_a, grad_a), (nll_b, correct_b, grad_b) = results
    assert torch.allclose(nll_a, nll_b, rtol=1e-5) and correct_a == correct_b
    assert torch.allclose(grad_a, grad_b, atol=1e-5)
    # GPUs keep their default
    assert use_training_attention(_tiny(kind), torch.device("cuda")) is None


def test_training_mode_skips_the_accuracy_count():
    model = _tiny("bert")
    ids = torch.randint(5, 500, (2, 16), generator=torch.Generator().manual_seed(0))
    objective = MaskedLMObjective(model).eval()
    with torch.no_grad():  # label every position with the model's own guess: in eval mode all are correct
        labels = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.argmax(-1)
    torch.manual_seed(0)
    nll_eval, correct_eval = objective(ids, torch.ones_like(ids), labels)
    objective.train()
    nll_train, correct_train = objective(ids, torch.ones_like(ids), labels)
    assert int(correct_eval) == labels.numel() and int(correct_train) == 0
    assert torch.isfinite(nll_train)
