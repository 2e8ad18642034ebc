"""--report-to: tensorboard, mlflow or wandb through Accelerate's trackers (metrics.jsonl is written either way)."""

from __future__ import annotations

import importlib.util
import os

from ..config import Config
from ..errors import ConfigError

TRACKER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
TRACKER_HINTS = {"mlflow": " (MLFLOW_TRACKING_URI)", "wandb": " (WANDB_MODE=offline logs without an account)"}


def check_tracker(report_to: str) -> None:

    package = TRACKER_PACKAGES.get(report_to)
    if package and importlib.util.find_spec(package) is None:
        raise ConfigError(f"--report-to {report_to} needs the {package} package: pip install {package}, "
                          "or use --report-to none (metrics.jsonl is always written)")


def start_tracker(accelerator, cfg: Config, name: str) -> None:
    """--report-to through Accelerate's trackers; a tracker's own setup error becomes one line."""
    if cfg.report_to == "none":
        return
    try:
        accelerator.init_trackers(name, config=flat_for_tracker(cfg), init_kwargs=tracker_options(cfg))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        hint = TRACKER_HINTS.get(cfg.report_to, "")
        raise ConfigError(f"--report-to {cfg.report_to} could not start: {first}: fix the tracker's "
                          f"settings{hint} or use --report-to none (metrics.jsonl is always written)") from None


def tracker_options(cfg: Config) -> dict:
    """wandb writes its files (offline runs, logs) under OUTPUT/wandb, never ./wandb in the working directory."""
    if cfg.report_to == "wandb":
        return {"wandb": {"dir": os.path.expanduser(cfg.output_dir)}}
    return {}


def flat_for_tracker(cfg: Config) -> dict:
    return {k: (", ".join(v) if isinstance(v, list) else v) for k, v in cfg.to_dict().items() if v is not None}
