"""--freeze-layers N --freeze-until F: the lowest N layers train only after F of the run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import assert_clean_error, run_cli, tiny_run, train_argv
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM

from mlmtune.errors import ConfigError
from mlmtune.model.objective import MaskedLMObjective
from mlmtune.run.layout import complete_checkpoints
from mlmtune.training.fit import fit
from mlmtune.training.freeze import LowerLayersFrozen, encoder_layers


def saved(folder) -> dict[str, torch.Tensor]:
    return load_file(Path(folder) / "model.safetensors")


def moved(before: dict, after: dict, prefix: str) -> bool:
    keys = [k for k in before if k.startswith(prefix)]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


@pytest.mark.filterwarnings("ignore:Full backward hook")  # layer 1 of 2: its inputs need no gradient
def test_frozen_layers_take_no_gradient_and_no_backward(tiny_bert):
    model = AutoModelForMaskedLM.from_pretrained(tiny_bert)
    freezer = LowerLayersFrozen(model, 1, until=0.5)
    freezer.update(0.0)
    ids = torch.randint(5, 500, (2, 16), generator=torch.Generator().manual_seed(0))
    labels = torch.where(torch.rand(ids.shape, generator=torch.Generator().manual_seed(1)) < 0.3, ids, -100)
    entered = []  # the backward of a frozen layer would run this hook
    layers = encoder_layers(model)
    layers[0].register_full_backward_hook(lambda *a: entered.append(0))
    layers[1].register_full_backward_hook(lambda *a: entered.append(1))
    nll, _ = MaskedLMObjective(model).train()(ids, torch.ones_like(ids), labels)
    nll.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is None for n, g in grads.items() if ".layer.0." in n or "position_embeddings" in n
               or "embeddings.LayerNorm" in n)
    assert all(g is not None for n, g in grads.items() if ".layer.1." in n)
    assert grads["bert.embeddings.word_embeddings.weight"] is not None  # the tied decoder trains it
    assert entered == [1]
    # thawed: the whole model again
    freezer.update(0.5)
    model.zero_grad(set_to_none=True)
    nll, _ = MaskedLMObjective(model).train()(ids, torch.ones_like(ids), labels)
    nll.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "token_type" not in n)


def test_a_run_trains_the_lower_layers_only_after_the_frozen_share(tiny_bert, news_folder, tmp_path):
    start = saved(tiny_bert)
    fit(tiny_run(tiny_bert, news_folder, tmp_path / "all", max_steps=2, freeze_layers=1, freeze_until=1.0))
    frozen = saved(tmp_path / "all")
    assert not moved(start, frozen, "bert.encoder.layer.0.")
    assert not moved(start, frozen, "bert.embeddings.position_embeddings")
    assert moved(start, frozen, "bert.encoder.layer.1.")
    assert moved(start, frozen, "bert.embeddings.word_embeddings")
    fit(tiny_run(tiny_bert, news_folder, tmp_path / "half", max_steps=4, freeze_layers=1, freeze_until=0.5))
    assert moved(start, saved(tmp_path / "half"), "bert.encoder.layer.0.")


def test_a_run_resumed_while_frozen_ends_as_one_that_was_not_stopped(tiny_bert, news_folder, tmp_path):
    straight = tmp_path / "straight"
    cfg = tiny_run(tiny_bert, news_folder, straight, max_steps=4, freeze_layers=1, freeze_until=0.5, save_every=1,
                   keep_checkpoints=4)
    fit(cfg)
    again = Path(shutil.copytree(straight, tmp_path / "again"))
    for checkpoint in complete_checkpoints(again)[1:]:  # back to step 1: frozen, and thawed at step 3
        shutil.rmtree(checkpoint)
    fit(cfg.replace(output_dir=str(again), resume=True))
    a, b = saved(straight), saved(again)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert json.loads((again / "results.json").read_text())["steps"] == 4


def test_freeze_layers_beyond_the_model_or_out_of_range_is_one_line(tiny_bert, news_folder, tmp_path, capsys):
    with pytest.raises(ConfigError, match="more than the model's 2 encoder layers"):
        fit(tiny_run(tiny_bert, news_folder, tmp_path / "x", freeze_layers=3))
    assert not (tmp_path / "x").exists()
    code, out, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "y", "--freeze-until", "0"))
    assert_clean_error(code, err, "--freeze-until must be in (0, 1]")
    code, out, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "y", "--freeze-layers", "-1"))
    assert_clean_error(code, err, "--freeze-layers must not be negative")


def test_a_model_without_a_layer_list_is_refused():
    from transformers import AlbertConfig, AlbertForMaskedLM

    model = AlbertForMaskedLM(AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=3,
                                           num_attention_heads=2, intermediate_size=64))
    with pytest.raises(ConfigError, match="no list of 3 encoder layers"):
        LowerLayersFrozen(model, 1, until=0.5)


def test_the_share_of_the_run_follows_steps_or_the_budget():
    # --freeze-until is a share of the steps for a step plan, of the budget for a --max-time run
    from mlmtune.training.budget import Totals

    assert Totals(total_steps=8, budget=None, steps_per_epoch=4).progress(2, 999.0) == 0.25
    assert Totals(total_steps=None, budget=100.0, steps_per_epoch=4).progress(50, 30.0) == 0.3
    assert Totals(total_steps=None, budget=100.0, steps_per_epoch=4).progress(50, 130.0) == 1.0


def test_more_than_one_process_is_refused_before_anything_is_built():
    # DDP syncs the parameters that took gradients when it wrapped the model: thawed ones would not sync
    from mlmtune.config import build_config
    from mlmtune.training.build import build_trainable

    cfg = build_config({"model": "m", "data": ["d"], "freeze_layers": 2})
    with pytest.raises(ConfigError, match="--freeze-layers trains with one process, and this run has 2"):
        build_trainable(cfg, None, None, None, processes=2)
