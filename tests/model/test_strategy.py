"""How the processes hold the model (model/strategy.py): what --fsdp, --deepspeed and an Accelerate
config ask for, each refusal one line naming why, and a DeepSpeed config's "auto" values taken from
mlmtune's options. The runs themselves (torchrun, gloo) are in tests/training/test_sharded.py."""

from __future__ import annotations

import json

import pytest
from helpers import assert_clean_error, run_cli, train_argv

from mlmtune.config import build_config
from mlmtune.errors import ConfigError
from mlmtune.model import strategy


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_CONFIG_FILE", "FSDP_VERSION",
                 "FSDP_CPU_RAM_EFFICIENT_LOADING", "RANK"):
        monkeypatch.delenv(name, raising=False)


def ds_file(tmp_path, **config):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 2}, **config}))
    return str(path)


def test_plain_processes_hold_a_whole_model_each():
    assert strategy.choose(build_config({}), world=2, gpu=False).name == "ddp"


def test_fsdp_on_cpus_is_installed_after_the_accelerator_and_wraps_layers():
    chosen = strategy.choose(build_config({"fsdp": True}), world=2, gpu=False)
    assert chosen.name == "fsdp" and chosen.on_cpu and chosen.accelerator_kwargs() == {}
    assert chosen.plugin.fsdp_version == 2
    on_gpus = strategy.choose(build_config({"fsdp": True}), world=2, gpu=True)
    assert set(on_gpus.accelerator_kwargs()) == {"fsdp_plugin"}


@pytest.mark.parametrize("options, env, needles", [
    ({"fsdp": True}, {}, ["--fsdp", "one", "torchrun"]),
    ({"fsdp": True, "add_tokens": "5"}, {}, ["--add-tokens", "--fsdp"]),
    ({"deepspeed": "ds.json"}, {"ACCELERATE_USE_FSDP": "true"}, ["FSDP and DeepSpeed"]),
    ({}, {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, ["version 1", "CPUs", "fsdp_version: 2"]),
    ({}, {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"},
     ["cpu_ram_efficient_loading", "false"]),
])
def test_a_strategy_that_cannot_run_is_refused_naming_why(monkeypatch, options, env, needles):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    world = 1 if options == {"fsdp": True} else 2
    with pytest.raises(ConfigError) as err:
        strategy.choose(build_config(options), world=world, gpu=False)
    for needle in needles:
        assert needle in str(err.value)


def test_a_refusal_is_said_by_the_first_process_only(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ConfigError) as err:
        strategy.choose(build_config({"fsdp": True}), world=1, gpu=False)
    assert err.value.quiet
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError) as err:
        strategy.choose(build_config({"fsdp": True}), world=1, gpu=False)
    assert not err.value.quiet


def test_one_process_asked_to_shard_is_one_error_line_and_writes_nothing(capsys, tiny_bert, news_folder, tmp_path):
    code, _, err = run_cli(capsys, *train_argv(tiny_bert, news_folder, tmp_path / "out", "--fsdp"))
    assert_clean_error(code, err, "--fsdp", "torchrun")
    assert not (tmp_path / "out").exists()


def test_deepspeed_without_its_package_is_refused(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def no_deepspeed(name, *args, **kwargs):
        if name == "deepspeed":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_deepspeed)
    with pytest.raises(ConfigError, match="pip install deepspeed"):
        strategy.choose(build_config({"deepspeed": ds_file(tmp_path)}), world=2, gpu=False)


@pytest.fixture
def deepspeed_present(monkeypatch):
    """The config logic needs no DeepSpeed itself (Accelerate's plugin is plain Python)."""
    monkeypatch.setattr(strategy, "require_deepspeed", lambda: None)


def test_deepspeed_auto_values_are_mlmtunes_options(deepspeed_present, tmp_path):
    path = ds_file(tmp_path, train_micro_batch_size_per_gpu="auto", gradient_clipping="auto")
    cfg = build_config({"deepspeed": path, "batch_size": 8, "gradient_accumulation_steps": 3, "max_grad_norm": 0.25})
    chosen = strategy.choose(cfg, world=2, gpu=False)
    ds = chosen.plugin.deepspeed_config
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["train_batch_size"]) == (8, 3, 48)
    assert ds["gradient_clipping"] == 0.25  # else DeepSpeed would clip at Accelerate's default 1.0
    no_clip = strategy.choose(build_config({"deepspeed": path, "max_grad_norm": None}), world=2, gpu=False)
    assert no_clip.plugin.deepspeed_config["gradient_clipping"] == 0.0  # DeepSpeed's "no clipping"


def test_zero3_gathers_the_whole_model_on_save(deepspeed_present, tmp_path):
    path = tmp_path / "ds3.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 3,
                                                      "stage3_gather_16bit_weights_on_model_save": False}}))
    ds = strategy.choose(build_config({"deepspeed": str(path)}), world=2, gpu=False).plugin.deepspeed_config
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


@pytest.mark.parametrize("config, needles", [
    ({"train_micro_batch_size_per_gpu": 4}, ["train_micro_batch_size_per_gpu", "--batch-size", "auto"]),
    ({"gradient_clipping": 0.5}, ["gradient_clipping", "--max-grad-norm"]),
    ({"optimizer": {"type": "Adam"}}, ["optimizer", "remove"]),
    ({"scheduler": {"type": "WarmupLR"}}, ["scheduler", "remove"]),
])
def test_a_deepspeed_config_that_contradicts_mlmtune_is_refused(deepspeed_present, tmp_path, config, needles):
    with pytest.raises(ConfigError) as err:
        strategy.choose(build_config({"deepspeed": ds_file(tmp_path, **config), "batch_size": 8}), world=2, gpu=False)
    for needle in needles:
        assert needle in str(err.value)


@pytest.mark.parametrize("text, needle", [(None, "no such file"), ("{not json", "not JSON"),
                                          ('{"fp16": {}}', "zero_optimization")])
def test_a_broken_deepspeed_file_is_one_line(deepspeed_present, tmp_path, text, needle):
    path = tmp_path / "ds.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        strategy.choose(build_config({"deepspeed": str(path)}), world=2, gpu=False)


def test_an_accelerate_configs_deepspeed_file_is_checked_as_the_flags_file(deepspeed_present, monkeypatch, tmp_path):
    """`accelerate launch` with a deepspeed_config_file: a value that file sets is not "auto"; one that
    contradicts a flag is refused as with --deepspeed, and a broken file is named as the Accelerate one."""
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", ds_file(tmp_path, gradient_clipping=0.5))
    with pytest.raises(ConfigError, match="gradient_clipping.*--max-grad-norm"):
        strategy.choose(build_config({"max_grad_norm": 1.0}), world=2, gpu=False)
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="Accelerate config's deepspeed_config_file.*no such file"):
        strategy.choose(build_config({}), world=2, gpu=False)
