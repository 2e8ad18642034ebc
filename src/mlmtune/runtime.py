"""The machinery a training run stands on: the Accelerator, trackers, the optimizer, signals.

Components only; the recipe that uses them, phase by phase, is train.py.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from pathlib import Path

import torch

from .config import Config
from .errors import ConfigError, Interrupted
from .modeling import precision_note, resolve_precision

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


TRACKER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


def check_tracker(report_to: str) -> None:
    import importlib.util

    package = TRACKER_PACKAGES.get(report_to)
    if package and importlib.util.find_spec(package) is None:
        raise ConfigError(f"--report-to {report_to} needs the {package} package: pip install {package}, "
                          "or use --report-to none (metrics.jsonl is always written)")


def start_tracker(accelerator, cfg: Config, name: str) -> None:
    """--report-to through Accelerate's trackers; a tracker's own setup error becomes one line."""
    if cfg.report_to == "none":
        return
    try:
        accelerator.init_trackers(name, config=flat_for_tracker(cfg))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        hint = " (MLFLOW_TRACKING_URI)" if cfg.report_to == "mlflow" else ""
        raise ConfigError(f"--report-to {cfg.report_to} could not start: {first}: fix the tracker's "
                          f"settings{hint} or use --report-to none (metrics.jsonl is always written)") from None


def make_accelerator(cfg: Config, output_dir: Path | None = None):
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    tracker = None if cfg.report_to == "none" or output_dir is None else cfg.report_to
    # Under torchrun without GPUs Accelerate only forms a (gloo) process group when told cpu=True.
    cpu_group = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    try:  # a second run in one process (the Python API) may ask for another precision
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state()
    except (ImportError, AttributeError):  # pragma: no cover - other Accelerate versions
        pass
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
    )
    # Here, so that train and evaluate both warn; stderr keeps `evaluate --json` clean.
    if accelerator.is_main_process and (note := precision_note(accelerator.mixed_precision, accelerator.device,
                                                                requested=cfg.precision)):
        print(note, file=sys.stderr)
    return accelerator


def build_optimizer(model: torch.nn.Module, *, lr: float, head_lr: float, weight_decay: float,
                    new_parameters: list[str]) -> torch.optim.Optimizer:
    """AdamW in four groups: pretrained/new x decayed/not. Biases and norm weights (ndim < 2) never decay;
    parameters the checkpoint lacked (a grown head) learn at head_lr."""
    new = set(new_parameters)
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((name in new, p.ndim >= 2), []).append(p)
    param_groups = [
        {"params": ps, "lr": head_lr if is_new else lr, "weight_decay": weight_decay if decays else 0.0}
        for (is_new, decays), ps in sorted(groups.items())
    ]
    fused = {"fused": True} if all(p.device.type in ("cpu", "cuda") for p in model.parameters()) else {}
    try:
        return torch.optim.AdamW(param_groups, lr=lr, **fused)
    except (RuntimeError, TypeError):  # fused kernels missing for this device or dtype
        return torch.optim.AdamW(param_groups, lr=lr, foreach=True)


class StopFlag:
    """SIGINT/SIGTERM ask the loop to stop after the current step; a second SIGINT stops at once."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig in SIGNAL_EXIT:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. called from a server): no handlers
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


class AbortOnSignal:
    """Before the loop (reading, tokenizing, the baseline) and after it, SIGTERM stops the run like
    Ctrl-C does: an exception, so what the run wrote is removed or kept as a failure's rules say.
    Inside the loop StopFlag takes over (finish the step, save a checkpoint)."""

    def __enter__(self):
        self._previous = None
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            pass
        return self

    @staticmethod
    def _handle(signum, frame):
        raise Interrupted("stopped by SIGTERM outside a training step; files are whole, and a new run without "
                          "a checkpoint leaves nothing behind: run the command again", SIGNAL_EXIT[signal.SIGTERM])

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def flat_for_tracker(cfg: Config) -> dict:
    return {k: (", ".join(v) if isinstance(v, list) else v) for k, v in cfg.to_dict().items() if v is not None}


def shutdown(accelerator) -> None:
    """Leave the process group cleanly, so torchrun's workers exit without an abort."""
    if accelerator.num_processes > 1 and torch.distributed.is_initialized():
        accelerator.wait_for_everyone()
        torch.distributed.destroy_process_group()
