from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mlmtune.errors import ModelError
from mlmtune.model.load import load_masked_lm, max_positions, use_training_attention
from mlmtune.model.objective import MaskedLMObjective
from mlmtune.model.tokenizer import load_tokenizer


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


def test_an_encoder_without_head_gets_a_new_tied_head(tiny_encoder):
    a = load_masked_lm(tiny_encoder, seed=3)
    b = load_masked_lm(tiny_encoder, seed=3)
    assert a.new_parameters and all(n.startswith("cls.") for n in a.new_parameters)
    assert a.model.cls.predictions.decoder.weight is a.model.bert.embeddings.word_embeddings.weight
    for name in a.new_parameters:  # a grown head is reproducible from the seed
        assert torch.equal(dict(a.model.named_parameters())[name], dict(b.model.named_parameters())[name])


def test_a_complete_mlm_has_no_new_parameters(tiny_bert):
    assert load_masked_lm(tiny_bert).new_parameters == []


def test_folder_without_tokenizer_is_a_model_error(tmp_path, tiny_bert):
    import shutil

    for name in ("config.json", "model.safetensors"):
        shutil.copy(f"{tiny_bert}/{name}", tmp_path / name)
    with pytest.raises(ModelError, match="tokenizer"):
        load_tokenizer(str(tmp_path))


def test_max_positions_is_the_smaller_limit(tiny_bert, tokenizer):
    assert max_positions(tiny_bert, tokenizer) == 128


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_takes_bf16_only_where_the_cpu_has_it(monkeypatch, native):
    import mlmtune.model.device as modeling

    monkeypatch.setattr(modeling.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(modeling, "cpu_has_native_bf16", lambda: native)
    assert modeling.resolve_precision("auto") == ("bf16" if native else "no")
    assert modeling.resolve_precision("fp32") == "no"
    assert modeling.resolve_precision("bf16") == "bf16"  # asked for: honoured, with a note where it is emulated
    note = modeling.precision_note("bf16", torch.device("cpu"))
    assert (note is None) == native
    if note:
        assert "--precision auto or fp32" in note
    assert modeling.precision_note("no", torch.device("cpu")) is None


def test_fp16_without_a_gpu_runs_fp32_and_says_so(monkeypatch):
    import mlmtune.model.device as modeling

    monkeypatch.setattr(modeling, "gpu_available", lambda: False)
    assert modeling.resolve_precision("fp16") == "no"  # what Accelerate really runs on a CPU (and run.json records)
    note = modeling.precision_note("no", torch.device("cpu"), requested="fp16")
    assert note is not None and "fp16 needs a GPU" in note and "fp32" in note and "\n" not in note
    assert modeling.precision_note("no", torch.device("cpu"), requested="fp32") is None
    assert modeling.precision_note("no", torch.device("cpu"), requested="auto") is None
    monkeypatch.setattr(modeling, "gpu_available", lambda: True)
    assert modeling.resolve_precision("fp16") == "fp16"


def test_a_tokenizer_larger_than_the_embeddings_is_refused(tmp_path, tokenizer):
    from transformers import BertConfig, BertForMaskedLM

    small = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, max_position_embeddings=64)
    BertForMaskedLM(small).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=r"has 30,522 tokens but the model .* has only 1,000 token embeddings: .*--tokenizer"):
        load_masked_lm(str(tmp_path), tokenizer=tokenizer)
    with pytest.raises(ModelError, match="1,000 token embeddings"):
        max_positions(str(tmp_path), tokenizer)  # checked from config.json, before any data is read
    assert load_masked_lm(str(tmp_path)).new_parameters == []  # without a tokenizer: no check


def test_a_model_whose_tokenizer_fits_loads(tiny_bert, tokenizer):
    assert load_masked_lm(tiny_bert, tokenizer=tokenizer).model.get_input_embeddings().num_embeddings == len(tokenizer)


@pytest.mark.parametrize("content, needle", [("[]", "a JSON list"), ("7", "a JSON int"), ('{"model_type": ', "not valid JSON")])
def test_a_damaged_config_json_is_named(tmp_path, tiny_bert, content, needle):
    import shutil

    folder = Path(shutil.copytree(tiny_bert, tmp_path / "model"))
    (folder / "config.json").write_text(content)
    for load in (lambda: load_tokenizer(str(folder)), lambda: load_masked_lm(str(folder)),
                 lambda: max_positions(str(folder), None)):
        with pytest.raises(ModelError, match=f"config.json is damaged \\({needle}"):
            load()
