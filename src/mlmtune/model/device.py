"""Where and in what precision a model runs: --precision resolved for the device, autocast, and the
Accelerator every command (train, evaluate) runs on, processes and all."""

from __future__ import annotations

import contextlib
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch

from ..config import Config, parse_duration
from .strategy import DEEPSPEED_ENV, FSDP_ENV, Strategy, choose

GROUP_TIMEOUT_GRACE = 30.0  # seconds the process group waits beyond --dist-timeout


def cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def gpu_available() -> bool:
    """A device other than the CPU (CUDA, MPS, XPU, ...) that Accelerate will train on."""
    if torch.cuda.is_available():
        return True
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    return bool(accelerator is not None and accelerator.is_available())


def precision_note(mixed_precision: str, device: torch.device, requested: str | None = None) -> str | None:
    """A one-line note when the precision that runs is not the one asked for, or is slow:
    - bf16 on a CPU that only emulates it (no AVX512-BF16/AMX): measured on an AVX2 EPYC, a minilm
      step took ~47 s in bf16 against ~2.2 s in fp32;
    - fp16 (`requested`, the --precision value) without a GPU: resolve_precision runs fp32 instead."""
    if requested == "fp16" and mixed_precision == "no":
        return ("note: --precision fp16 needs a GPU, and there is none, so this run computes in fp32: "
                "use --precision auto or fp32 to silence this note")
    if mixed_precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        return ("note: this CPU has no native bf16 (AVX512-BF16 or AMX), so --precision bf16 is emulated "
                "and many times slower than fp32: use --precision auto or fp32")
    return None


def resolve_precision(precision: str) -> str:
    """--precision -> Accelerate's mixed_precision ('no', 'bf16', 'fp16'): what will really run.

    auto: bf16 where the device computes it natively (CUDA from Ampere on, a CPU with AVX512-BF16 or
    AMX); fp16 with loss scaling on an older GPU (V100, T4); else fp32. fp16 needs a GPU: on a CPU
    Accelerate would silently run fp32 while reporting fp16, so it is fp32 here (and run.json records
    it). Weights and the loss stay fp32 either way; autocast runs the matmuls.
    """
    if precision == "fp32":
        return "no"
    if precision == "fp16":
        return "fp16" if gpu_available() else "no"
    if precision == "bf16":
        return precision
    if torch.cuda.is_available():  # bf16 in hardware (Ampere on); else fp16 with loss scaling (V100, T4), not
        # torch's bf16 emulation, which is slower than fp32
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    return "bf16" if cpu_has_native_bf16() else "no"


def autocast_for(precision: str, device):
    """A context factory running the matmuls in the precision `precision` (--precision) resolves to,
    as Accelerate does for `mlmtune evaluate`: bf16 or fp16 autocast, or nothing for fp32."""
    import torch

    mixed = resolve_precision(precision)
    if mixed == "no":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if mixed == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def make_accelerator(cfg: Config, output_dir: Path | None = None, *, training: bool = False):
    """The Accelerator of a command, processes and all. `training`: the strategy --fsdp, --deepspeed or
    the launcher's Accelerate config asks for (model/strategy.py), and --dist-timeout for the process
    group; `evaluate` runs every process with a whole model."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs, ProjectConfiguration

    tracker = None if cfg.report_to == "none" or output_dir is None else cfg.report_to
    world = int(os.environ.get("WORLD_SIZE", "1"))
    gpu = torch.cuda.is_available()
    strategy = choose(cfg, world=world, gpu=gpu) if training else Strategy("ddp")
    # Under torchrun without GPUs Accelerate only forms a (gloo) process group when told cpu=True.
    cpu_group = world > 1 and not gpu
    try:  # a second run in one process (the Python API) may ask for another precision
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state()
    except (ImportError, AttributeError):  # pragma: no cover - other Accelerate versions
        pass
    # Accelerate sets these when given a plugin; a later run in this process must not inherit them.
    environ = {name: os.environ.get(name) for name in (FSDP_ENV, DEEPSPEED_ENV)}
    try:
        accelerator = Accelerator(
            cpu=cpu_group,
            gradient_accumulation_steps=getattr(cfg, "gradient_accumulation_steps", 1),
            mixed_precision=resolve_precision(cfg.precision),
            # The schedule counts optimizer steps of the whole job; by default Accelerate would step it
            # once per process per step.
            step_scheduler_with_optimizer=False,
            log_with=tracker,
            project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir))
            if output_dir is not None else None,
            kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=group_timeout(cfg)))],
            **strategy.accelerator_kwargs(),
        )
    finally:
        for name, value in environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    strategy.install(accelerator)
    if strategy.name == "deepspeed":  # transformers would load the next model partitioned (zero.Init): mlmtune
        from transformers.integrations import unset_hf_deepspeed_config  # scores and warm-starts it whole first

        unset_hf_deepspeed_config()
    accelerator.mlmtune_strategy = strategy
    # Here, so that train and evaluate both warn; stderr keeps `evaluate --json` clean.
    if accelerator.is_main_process and (note := precision_note(accelerator.mixed_precision, accelerator.device,
                                                                requested=cfg.precision)):
        print(note, file=sys.stderr)
    return accelerator


def group_timeout(cfg) -> float:
    """The process group's timeout: --dist-timeout and a grace, so that the peer watch
    (training/peers.py), which can name the process that stopped answering, speaks first."""
    return parse_duration(getattr(cfg, "dist_timeout", None) or "5m", "--dist-timeout") + GROUP_TIMEOUT_GRACE


def shutdown(accelerator) -> None:
    """Leave the process group cleanly, so torchrun's workers exit without an abort."""
    if accelerator.num_processes > 1 and torch.distributed.is_initialized():
        accelerator.wait_for_everyone()
        torch.distributed.destroy_process_group()


def unwrap(accelerator, objective):
    """The objective without Accelerate's (DDP) or torch.compile's wrapper."""
    return accelerator.unwrap_model(objective, keep_torch_compile=False)
