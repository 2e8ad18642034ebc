"""The masked-position objective (model/objective.py): the head applied to labelled positions only gives
the full loss and gradients, for every family of tests/families.py (and DeBERTa v1 and BERT's relatives,
whose head is guessed and checked), with the training attention too; a model whose head cannot be
applied to the masked positions alone computes its full logits and says so."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from families import FAMILIES, Ids, build_model, model_config

from mlmtune.model.load import use_training_attention
from mlmtune.model.objective import HEAD_MODULES, MaskedLMObjective, full_logits_note, masked_positions_head

IDS = Ids(vocab_size=500, pad=1, bos=0, eos=2, cls=0, sep=2)


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


def _family(name: str):
    """A tiny masked LM of a family of tests/families.py, vocabulary 500, seeded."""
    return build_model(FAMILIES[name], model_config(FAMILIES[name], IDS))


def _labelled(seed: int):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 500, (4, 24), generator=g)
    attention = torch.ones_like(ids)
    attention[2, 18:] = 0
    labels = torch.where(torch.rand(ids.shape, generator=g) < 0.2, ids, torch.full_like(ids, -100))
    labels[attention == 0] = -100
    return ids, attention, labels


def assert_sparse_is_full(model, *, atol: float = 1e-5):
    """The masked-position loss, correct count and gradients equal the model's full logits' (fp32)."""
    ids, attention, labels = _labelled(1)
    sparse = MaskedLMObjective(model).eval()
    assert sparse.head is not None
    nll, correct = sparse(ids, attention, labels)
    full = model(input_ids=ids, attention_mask=attention).logits
    expected = F.cross_entropy(full.view(-1, full.shape[-1]), labels.view(-1), reduction="sum", ignore_index=-100)
    assert torch.allclose(nll, expected, rtol=1e-5, atol=atol)
    picked = labels != -100
    assert torch.allclose(sparse.head(model.base_model(input_ids=ids, attention_mask=attention)[0][picked]),
                          full[picked], atol=atol)
    assert int(correct) == int((full[picked].argmax(-1) == labels[picked]).sum())
    # and the gradients agree, of every parameter
    model.zero_grad()
    nll.backward()
    g_sparse = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    full2 = model(input_ids=ids, attention_mask=attention).logits
    F.cross_entropy(full2.view(-1, full2.shape[-1]), labels.view(-1), reduction="sum").backward()
    g_full = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert g_sparse.keys() == g_full.keys()
    for name, grad in g_full.items():
        assert torch.allclose(g_sparse[name], grad, atol=atol), name


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_masked_only_head_gives_the_full_loss(kind):
    assert_sparse_is_full(_tiny(kind).eval())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_familys_head_runs_on_the_masked_positions_alone(family):
    model = _family(family).eval()
    assert model.config.model_type in HEAD_MODULES or model.config.model_type == "deberta-v2"
    assert full_logits_note(model) is None
    assert_sparse_is_full(model)


def test_debertas_newer_head_takes_the_word_embeddings():
    """DeBERTa's `legacy=False` head (lm_predictions) multiplies by the word embeddings it is handed."""
    from transformers import DebertaV2Config, DebertaV2ForMaskedLM

    torch.manual_seed(0)
    model = DebertaV2ForMaskedLM(DebertaV2Config(vocab_size=500, hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=64, legacy=False)).eval()
    assert not hasattr(model, "cls")
    assert_sparse_is_full(model)


def _bert_relative(kind: str):
    """Tiny models of families HEAD_MODULES does not list, whose head is guessed and checked."""
    import transformers

    config, model = {"deberta": ("DebertaConfig", "DebertaForMaskedLM"),
                      "megatron-bert": ("MegatronBertConfig", "MegatronBertForMaskedLM"),
                      "roformer": ("RoFormerConfig", "RoFormerForMaskedLM")}[kind]
    torch.manual_seed(0)
    extra = {"embedding_size": 32} if kind == "roformer" else {}
    return getattr(transformers, model)(getattr(transformers, config)(
        vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **extra))


@pytest.mark.parametrize("kind", ["deberta", "megatron-bert", "roformer"])
def test_the_head_of_another_family_is_guessed_and_checked(kind):
    model = _bert_relative(kind).eval()
    assert model.config.model_type not in HEAD_MODULES
    assert full_logits_note(model) is None
    assert_sparse_is_full(model)


def test_a_head_that_is_not_its_modules_in_order_falls_back_to_the_full_logits_and_says_so():
    """A masked LM whose head does more than apply its modules to the hidden states (here: a scale on the
    logits) is not guessed: the full logits, the same loss, and a note naming the model."""
    from transformers import BertConfig, BertForMaskedLM

    class Scaled(BertForMaskedLM):
        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            out = super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            out.logits = out.logits * 2.0
            return out

    torch.manual_seed(0)
    config = BertConfig(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64)
    config.model_type = "scaled-bert"  # not a family mlmtune knows
    model = Scaled(config).eval()
    assert masked_positions_head(model) is None
    note = full_logits_note(model)
    assert note.startswith("note: ") and "Scaled" in note and "every position" in note
    ids, attention, labels = _labelled(2)
    nll, _ = MaskedLMObjective(model).eval()(ids, attention, labels)
    full = model(input_ids=ids, attention_mask=attention).logits
    expected = F.cross_entropy(full.view(-1, full.shape[-1]), labels.view(-1), reduction="sum", ignore_index=-100)
    assert torch.allclose(nll, expected, rtol=1e-5)
    assert model.training is False  # the check put the model back as it was


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


# --- static slots for --compile, tied weights for sharded saves, the layers FSDP wraps -------------

def _batches(n: int, vocab: int = 500):
    from mlmtune.data.batching import Batch

    g = torch.Generator().manual_seed(2)
    for _ in range(n):
        ids = torch.randint(5, vocab, (4, 32), generator=g)
        labels = torch.where(torch.rand(4, 32, generator=g) < 0.15, ids, -100)
        yield Batch(ids, torch.ones_like(ids), labels, int((labels != -100).sum()), ids.numel())


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_static_slots_give_the_same_loss_count_and_gradients(kind):
    from mlmtune.data.batching import slot_capacity, with_slots

    model = _tiny(kind).eval()
    objective = MaskedLMObjective(model)
    capacity = slot_capacity(4, 32, 0.15)
    for batch in _batches(3):
        slotted = with_slots(batch, capacity)
        assert len(slotted.positions) == capacity > batch.n_masked  # padded
        results = []
        for b in (batch, slotted):
            model.zero_grad()
            nll, correct = objective(*b.tensors())
            nll.backward()
            results.append((nll.item(), int(correct), model.get_input_embeddings().weight.grad.clone()))
        (nll_a, correct_a, grad_a), (nll_b, correct_b, grad_b) = results
        assert nll_b == pytest.approx(nll_a, rel=1e-5) and correct_b == correct_a
        assert torch.allclose(grad_a, grad_b, atol=1e-6)


def test_a_batch_above_its_slots_takes_more():
    from mlmtune.data.batching import SLOT_STEP, with_slots

    batch = next(_batches(1))
    slotted = with_slots(batch, SLOT_STEP)  # fewer slots than masked positions
    assert len(slotted.positions) >= batch.n_masked and len(slotted.positions) % SLOT_STEP == 0
    assert int((slotted.targets != -100).sum()) == batch.n_masked


def test_compiled_objective_compiles_once_with_static_slots():
    """torch.compile (dynamo; the backend does not matter for what it captures) makes one graph for every
    batch when the labelled positions come in static slots, and a graph per batch from a boolean index."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from mlmtune.data.batching import slot_capacity, with_slots

    objective = MaskedLMObjective(_tiny("bert")).train()
    graphs = {}
    for slots in (None, slot_capacity(4, 32, 0.15)):
        torch._dynamo.reset()
        counters.clear()
        compiled = torch.compile(objective, backend="eager")
        for batch in _batches(6):
            nll, _ = compiled(*(with_slots(batch, slots) if slots else batch).tensors())
            nll.backward()
        graphs[slots is not None] = counters["stats"]["unique_graphs"]
    torch._dynamo.reset()
    assert graphs[True] == 1
    assert graphs[False] > 1


def test_tied_tensors_gathered_apart_are_saved_once(tmp_path):
    """A state dict gathered from shards (FSDP, ZeRO-3) holds a copy per tied name; retied, the model is
    saved with each tensor once, as from one process."""
    from safetensors.torch import load_file

    from mlmtune.model.objective import retie, tied_groups

    model = _tiny("bert")
    groups = tied_groups(model)
    assert ["bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"] in groups

    def gathered():  # separate copies, as a gather gives (save_pretrained empties the dict it is given)
        return {k: v.clone() for k, v in model.state_dict().items()}

    model.save_pretrained(tmp_path / "apart", state_dict=gathered())
    model.save_pretrained(tmp_path / "retied", state_dict=retie(gathered(), groups))
    model.save_pretrained(tmp_path / "one", state_dict=model.state_dict())
    apart, retied, one = (load_file(tmp_path / d / "model.safetensors") for d in ("apart", "retied", "one"))
    assert set(retied) == set(one) and len(apart) > len(one)
    assert all(torch.equal(retied[k], one[k]) for k in one)


def test_fsdp_wraps_the_layers_but_not_the_tied_embeddings():
    from mlmtune.model.objective import separable_layers

    assert separable_layers(_tiny("bert")) == ["BertLayer"]  # BertEmbeddings holds the tied word embeddings
    assert MaskedLMObjective(_tiny("roberta"))._no_split_modules == ["RobertaLayer"]
