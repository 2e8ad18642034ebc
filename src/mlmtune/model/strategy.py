"""How the processes of a job hold the model: a whole copy each (DDP, the default), sharded by FSDP2
(`--fsdp`, or an Accelerate FSDP config), or sharded by DeepSpeed ZeRO (`--deepspeed FILE`, or an
Accelerate DeepSpeed config).

Accelerate switches to FSDP or DeepSpeed only on GPU-like devices: under torchrun on CPUs it forms a
gloo group and runs DDP, whatever was asked, without a word. So the strategy is decided here, from the
flags and the launcher's environment, before the Accelerator is made. On GPUs the plugin goes to the
Accelerator as usual; on CPUs the Accelerator is made for the gloo group and the plugin installed on
its state afterwards (`Strategy.install`), which is how the tests shard on CPU. A strategy that cannot
run is one error line naming why, raised on every process (printed by the first only).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

# Accelerate's own switches: `accelerate launch` with an FSDP or DeepSpeed config sets them.
FSDP_ENV, DEEPSPEED_ENV = "ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"


def env_flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("true", "1", "yes")


def everywhere(exc: ConfigError) -> ConfigError:
    """A refusal every process of the job reaches alike: only the first prints it (cli.main reads `quiet`)."""
    exc.quiet = os.environ.get("RANK", "0") != "0"
    return exc


@dataclass
class Strategy:
    name: str  # "ddp", "fsdp" or "deepspeed"
    plugin: object | None = None
    on_cpu: bool = False  # installed on the state after the Accelerator is made (Accelerate ignores it on CPUs)

    @property
    def sharded(self) -> bool:
        return self.name != "ddp"

    def accelerator_kwargs(self) -> dict:
        """What the Accelerator takes: the plugin, except on CPUs (where Accelerate would drop it)."""
        if self.on_cpu or self.plugin is None:
            return {}
        return {"fsdp_plugin" if self.name == "fsdp" else "deepspeed_plugin": self.plugin}

    def install(self, accelerator) -> None:
        """On CPUs: make the gloo job's Accelerator shard as asked (the state Accelerate sets on GPUs)."""
        if not self.on_cpu:
            return
        from accelerate.state import PartialState
        from accelerate.utils import DistributedType

        state = accelerator.state
        if self.name == "fsdp":
            kind = DistributedType.FSDP
            state.fsdp_plugin = self.plugin
            if state.mixed_precision != "no":
                self.plugin.set_mixed_precision(state.mixed_precision)
        else:
            import deepspeed

            kind = DistributedType.DEEPSPEED
            self.plugin.set_mixed_precision(state.mixed_precision)
            self.plugin.select(_from_accelerator_state=True)
            state.deepspeed_plugins = self.plugin
            accelerator.deepspeed_engine_wrapped = None  # what Accelerator() sets when given the plugin
            state._mixed_precision = "no"  # DeepSpeed casts by its config; Accelerate adds no autocast (as on GPUs)
            deepspeed.init_distributed(dist_backend="gloo")  # wraps the gloo group Accelerate made
        state.distributed_type = kind
        PartialState._shared_state["distributed_type"] = kind


def choose(cfg, *, world: int, gpu: bool) -> Strategy:
    """The strategy `cfg` and the launcher ask for, checked: what cannot run raises a ConfigError."""
    fsdp = bool(getattr(cfg, "fsdp", False)) or env_flag(FSDP_ENV)
    deepspeed = getattr(cfg, "deepspeed", None) or (env_flag(DEEPSPEED_ENV) and "accelerate config")
    if not fsdp and not deepspeed:
        return Strategy("ddp")
    if fsdp and deepspeed:
        raise everywhere(ConfigError("FSDP and DeepSpeed are both asked for (--fsdp or an Accelerate FSDP config, "
                                     "--deepspeed or an Accelerate DeepSpeed config): keep one"))
    name = "--fsdp" if fsdp else "--deepspeed"
    if getattr(cfg, "add_tokens", None) is not None:
        raise everywhere(ConfigError(f"--add-tokens is not available with {name}: its learning rate for the new rows "
                                     "and its masked-word measure need whole weights in each process; drop one"))
    if world < 2 and not (gpu and deepspeed):
        raise everywhere(ConfigError(
            f"{name} shards the model across processes, and this job has one: launch it with torchrun "
            "--nproc_per_node N -m mlmtune train ... (or accelerate launch), or drop it"))
    if fsdp:
        return Strategy("fsdp", fsdp_plugin(gpu=gpu), on_cpu=not gpu)
    return Strategy("deepspeed", deepspeed_plugin(cfg, world=world), on_cpu=not gpu)


def fsdp_plugin(*, gpu: bool):
    """FSDP2, layer by layer (MaskedLMObjective names the layers), with sharded checkpoints; an
    Accelerate FSDP config's own settings where it gives them."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    if env_flag(FSDP_ENV):  # accelerate launch with an FSDP config: its settings
        try:
            plugin = FullyShardedDataParallelPlugin()
        except ValueError as exc:
            raise everywhere(ConfigError(f"the Accelerate FSDP config cannot be used ({first_line(exc)}): fix it "
                                         "with accelerate config")) from None
    else:
        plugin = FullyShardedDataParallelPlugin(fsdp_version=2, reshard_after_forward=True,
                                                auto_wrap_policy="transformer_based_wrap",
                                                state_dict_type="SHARDED_STATE_DICT")
    if plugin.fsdp_version != 2 and not gpu:
        raise everywhere(ConfigError("FSDP version 1 does not run on CPUs (Accelerate gives it a device id): set "
                                     "fsdp_version: 2 in the Accelerate config, or use --fsdp (FSDP2)"))
    if plugin.cpu_ram_efficient_loading:
        raise everywhere(ConfigError("fsdp_cpu_ram_efficient_loading is not supported: mlmtune scores the model "
                                     "(and warm-starts a grown head) in every process before sharding it, so each "
                                     "needs its weights; set it to false in the Accelerate config"))
    return plugin


def deepspeed_plugin(cfg, *, world: int):
    """A DeepSpeed plugin from --deepspeed FILE (or the Accelerate config), its "auto" values mlmtune's:
    the batch per process, the accumulation, --max-grad-norm (DeepSpeed clips inside its own step, so
    the flag would otherwise be ignored), and ZeRO-3's 16-bit gather on save (else the final model
    could not be written whole). A value the config fixes otherwise is refused, naming both."""
    require_deepspeed()
    from accelerate.utils import DeepSpeedPlugin

    path = getattr(cfg, "deepspeed", None)
    env_file = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none")
    # the file as written (one line for a missing or broken one): a key it leaves out is "auto"
    written = (read_deepspeed_config(path) if path else
               read_deepspeed_config(env_file, "the Accelerate config's deepspeed_config_file") if env_file != "none"
               else {})
    try:
        plugin = DeepSpeedPlugin(hf_ds_config=str(Path(os.path.expanduser(path)).resolve()) if path else None,
                                 zero3_init_flag=False)
    except (ValueError, KeyError, TypeError) as exc:
        raise everywhere(ConfigError(f"the DeepSpeed config cannot be used ({first_line(exc)}): fix it")) from None
    ds = plugin.deepspeed_config
    for section in ("optimizer", "scheduler"):
        if section in ds:
            raise everywhere(ConfigError(f"the DeepSpeed config has a {section!r} section, but mlmtune builds its own "
                                         "AdamW groups and learning-rate schedule: remove that section"))
    accum = cfg.gradient_accumulation_steps
    wanted = {"train_micro_batch_size_per_gpu": (cfg.batch_size, "--batch-size"),
              "gradient_accumulation_steps": (accum, "--gradient-accumulation-steps"),
              "train_batch_size": (cfg.batch_size * accum * world, "--batch-size x processes x accumulation"),
              # DeepSpeed: 0 is no clipping
              "gradient_clipping": (cfg.max_grad_norm or 0.0, "--max-grad-norm")}
    for key, (value, flag) in wanted.items():
        given = written.get(key, "auto")  # an Accelerate config without a file: only the plugin's defaults
        if given == "auto":
            ds[key] = value
        elif differs(given, value):
            raise everywhere(ConfigError(f"the DeepSpeed config sets {key} to {given!r} and mlmtune's {flag} says "
                                         f"{value!r}: write \"auto\" there, so mlmtune's options decide"))
    zero = ds.setdefault("zero_optimization", {})
    if int(zero.get("stage", 0) or 0) == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # the final model is saved whole
        plugin.zero3_save_16bit_model = True
    return plugin


def require_deepspeed() -> None:
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise everywhere(ConfigError("DeepSpeed is asked for, but the deepspeed package is not installed: "
                                     "pip install deepspeed, or use --fsdp")) from None


def differs(given, value) -> bool:
    try:
        return float(given) != float(value)
    except (TypeError, ValueError):
        return True


def read_deepspeed_config(path: str, what: str = "--deepspeed") -> dict:
    """The DeepSpeed config as written, checked for what mlmtune needs of it."""
    file = Path(os.path.expanduser(path))
    if not file.is_file():
        raise everywhere(ConfigError(f"{what} {path}: no such file: give a DeepSpeed config (JSON) with a "
                                     "zero_optimization section"))
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise everywhere(ConfigError(f"{what} {path} is not JSON ({first_line(exc)}): fix its syntax")) from None
    if not isinstance(config, dict) or not isinstance(config.get("zero_optimization"), dict):
        raise everywhere(ConfigError(f"{what} {path} has no zero_optimization section: add one, e.g. "
                                     "\"zero_optimization\": {\"stage\": 2}"))
    return config


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
