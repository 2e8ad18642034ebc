"""The one source of truth for options: dataclasses whose fields are the CLI flags, the YAML keys
and the `config` of run.json. Defaults live here and nowhere else.

A config file is flat: each key is a flag name with `_` for `-` (`chunk_size: 128`). Groups only
order `--help` and `--print-config`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shlex
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

STREAMING_EVAL_SIZE = 1000  # --eval-size none with --streaming: a stream's evaluation set is held in memory

DEFAULT_PROBES = [
    "The [MASK] is happy.",
    "The government announced a new [MASK] on Tuesday.",
    "Shares in the company [MASK] sharply after the report.",
    "She scored the winning [MASK] in the final minute.",
]


def _opt(default, help: str, **meta):
    """A config field: `help` becomes the flag's --help text."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class DataConfig:
    data: list[str] = _opt(
        ["bbc-news"],
        "text source, repeatable: a .txt file, a folder of .txt files, a .jsonl/.json/.csv/.tsv/.parquet "
        "file, a Hugging Face dataset name (e.g. imdb), or the built-in offline corpus bbc-news",
        metavar="SOURCE",
    )
    data_split: str = _opt("train", "split to read from a Hugging Face dataset")
    eval_split: str | None = _opt(
        None, "split of a Hugging Face dataset to evaluate on (default: hold out documents)"
    )
    eval_data: list[str] = _opt(
        [], "evaluation text, repeatable, any source --data takes: nothing is then held out of --data, and the "
        "whole of it (exact repeats and text --data also holds dropped, at most --eval-size examples) is the "
        "fixed-mask evaluation set (default: hold out documents of --data)", metavar="SOURCE",
    )
    text_column: str = _opt("text", "column holding the text in .jsonl/.json/.csv/.tsv/.parquet and Hub data")
    encoding: str = _opt("utf-8", "encoding of .txt files (bbc-news is always latin-1)")
    line_by_line: bool = _opt(
        False, "one example per non-empty line, padded per batch, instead of concatenate-and-cut"
    )
    line_per_document: bool = _opt(
        False, "each non-empty line of a .txt file is one document, as run_mlm.py's --train_file reads it, "
        "concatenated and cut into --chunk-size blocks like any text (--line-by-line pads each line instead)"
    )
    chunk_size: int = _opt(128, "tokens per block when concatenating and cutting")
    max_length: int | None = _opt(
        None, "longest example in --line-by-line mode, longer lines are truncated (default: model maximum)"
    )
    train_size: int | None = _opt(None, "keep this many training examples, drawn with --seed (default: all)")
    eval_size: int | None = _opt(
        1000, "keep at most this many evaluation examples, drawn with --seed (none: all of them; with --streaming "
        f"{STREAMING_EVAL_SIZE})"
    )
    eval_fraction: float = _opt(
        0.1, "share of documents held out for evaluation when the source has no eval split"
    )
    streaming: bool = _opt(
        False, "stream the training text instead of loading it (corpora larger than memory; needs --max-steps or --max-time)"
    )


@dataclass
class MaskingConfig:
    mlm_probability: float = _opt(0.15, "share of tokens chosen for prediction in training")
    eval_mlm_probability: float = _opt(
        0.15, "share of tokens chosen in the fixed evaluation masks (keep 0.15 to compare runs)"
    )
    mask_replace_prob: float = _opt(0.8, "share of chosen tokens replaced by the mask token")
    random_replace_prob: float = _opt(
        0.1, "share of chosen tokens replaced by a random non-special token (the rest stay as they are)"
    )
    whole_word_mask: bool = _opt(False, "choose whole words: all pieces of a word are masked together")


@dataclass
class ModelConfig:
    model: str = _opt(
        "minilm",
        "Hugging Face model id or local folder; `minilm` is the built-in offline all-MiniLM-L6-v2",
    )
    tokenizer: str | None = _opt(None, "tokenizer id or folder, when it is not beside the model")
    head_lr: float = _opt(
        1e-3, "learning rate of parameters the checkpoint lacks (a new MLM head)"
    )
    head_init: str | None = _opt(
        None, "start of a grown MLM head: warm (output bias = log unigram frequency of the training text), "
        "prefit (warm, then the head alone pre-fit on cached frozen features) or random; only for a model "
        "without an MLM head (default: warm)", choices=["warm", "prefit", "random"],
    )
    dropout: float | None = _opt(
        None, "dropout probability while training, in place of the model's own (hidden and attention); 0 "
        "turns it off: faster steps on a CPU, and a short adaptation run needs no regularising. The saved "
        "config keeps the model's own values (default: the model's)",
    )
    precision: str = _opt(
        "auto", "auto (bf16 where the device supports it, else fp32), fp32, bf16 or fp16",
        choices=["auto", "fp32", "bf16", "fp16"],
    )
    compile: bool = _opt(False, "torch.compile the model (slow start, faster steps on some devices)")
    # domain vocabulary (vocab.py)
    add_tokens: str | None = _opt(
        None, "add words to the vocabulary: N (the N most frequent words of the training text the tokenizer cuts "
        "into pieces, seen at least --min-count times) or FILE (one word a line); each new row starts as the mean of "
        "its pieces' rows", metavar="N|FILE", number_or_text=True,
    )
    min_count: int = _opt(20, "with --add-tokens N: the fewest occurrences a word needs")
    new_token_lr: float | None = _opt(
        None, "learning rate of the added words' rows (input, decoder and bias), a scale on their update "
        "(default: --head-lr)",
    )


@dataclass
class TrainConfig:
    output_dir: str = _opt("runs/mlmtune", "folder for the model, metrics and checkpoints")
    epochs: int = _opt(3, "passes over the training data (ignored when --max-steps or --max-time is given)")
    max_steps: int | None = _opt(None, "stop after this many optimizer steps")
    max_time: str | None = _opt(
        None, "time budget for the warm start and the training steps (90s, 6m, 1.5h); without --max-steps "
        "the learning rate warms up and decays over the budget (evaluations do not count)", metavar="DURATION",
    )
    batch_size: int = _opt(16, "examples per process per micro-batch")
    eval_batch_size: int | None = _opt(None, "examples per evaluation batch (default: 2 x --batch-size)")
    gradient_accumulation_steps: int = _opt(1, "micro-batches per optimizer step")
    lr: float = _opt(5e-5, "peak learning rate of the pretrained parameters")
    weight_decay: float = _opt(0.01, "AdamW weight decay (never on biases and LayerNorm)")
    warmup_steps: int = _opt(0, "linear warm-up steps (overrides --warmup-ratio when > 0)")
    warmup_ratio: float = _opt(0.0, "warm-up as a share of all optimizer steps")
    max_grad_norm: float | None = _opt(1.0, "clip the gradient norm to this (none: no clipping)")
    freeze_layers: int = _opt(
        0, "train without the lowest N encoder layers (and the embeddings but the word rows) for the first "
        "--freeze-until of the run: no backward through them, so those steps are cheaper; then all train (one process)",
    )
    freeze_until: float = _opt(0.5, "with --freeze-layers: the share of the run (steps or budget) they stay frozen")
    eval_every: int | None = _opt(None, "evaluate every N optimizer steps (default: 8 times over the plan, or at each eighth of a --max-time budget, on a quarter of the eval set; the last step on all of it)")
    log_every: int = _opt(10, "append a training record to metrics.jsonl every N steps")
    save_every: int | None = _opt(None, "save a full training checkpoint every N optimizer steps")
    keep_checkpoints: int = _opt(2, "how many of the newest checkpoints to keep")
    seed: int = _opt(42, "seed of the split, sampling, masks, head init and dropout")
    probe: list[str] = _opt(DEFAULT_PROBES, "sentence with a mask for the report, repeatable", metavar="TEXT")
    report_to: str = _opt(
        "none", "experiment tracker besides metrics.jsonl (wandb: WANDB_MODE=offline logs without an account, "
        "under OUTPUT/wandb)", choices=["none", "tensorboard", "mlflow", "wandb"]
    )
    report: bool = _opt(True, "write report.html at the end of training")
    overwrite: bool = _opt(False, "replace an output folder that holds another run (only the files a run writes)")
    resume: bool = _opt(False, "continue from the newest complete checkpoint in --output-dir")
    # several processes (model/strategy.py, training/peers.py)
    fsdp: bool = _opt(
        False, "shard the weights, gradients and optimizer state across the processes (PyTorch FSDP2 through "
        "Accelerate) instead of a whole copy in each; under torchrun or accelerate launch (an Accelerate FSDP "
        "config does the same)",
    )
    deepspeed: str | None = _opt(
        None, "train with DeepSpeed ZeRO through Accelerate, with this DeepSpeed config (JSON); its \"auto\" values "
        "are mlmtune's batch size, accumulation, --max-grad-norm and precision (an Accelerate DeepSpeed config does "
        "the same)", metavar="FILE",
    )
    dist_timeout: str = _opt(
        "5m", "with several processes: how long one waits for the others before the job ends with an error naming "
        "the process that stopped answering (90s, 5m, 1h)", metavar="DURATION",
    )
    push_to_hub: str | None = _opt(
        None, "after training, upload the output folder (model, tokenizer, model card, report; not the "
        "checkpoints) to this Hugging Face Hub model repository, e.g. me/bert-news; needs a token (HF_TOKEN "
        "or `hf auth login`)", metavar="REPO",
    )


GROUPS: dict[str, type] = {  # attribute names differ from field names (`data`, `model`) on purpose
    "dataset": DataConfig,
    "masking": MaskingConfig,
    "modeling": ModelConfig,
    "training": TrainConfig,
}


# Fields that may change between a run and its --resume: they do not change what is learned.
RESUMABLE_CHANGES = {
    "resume", "overwrite", "output_dir", "log_every", "save_every", "keep_checkpoints",
    "report_to", "report", "probe", "eval_every", "eval_batch_size", "push_to_hub", "dist_timeout",
    # how the processes hold the model: run.json's `strategy` records the one that ran (an Accelerate
    # config gives it too), and --resume checks that (training/resume.check_same_strategy)
    "fsdp", "deepspeed",
}


# The planned length may change too: a --resume with a larger total trains further (continuation.py).
TOTALS = {"max_steps", "epochs", "max_time"}


@dataclass
class Config:
    """Every option of a run, grouped. Attribute access is flat: `cfg.lr`, `cfg.chunk_size`."""

    dataset: DataConfig = field(default_factory=DataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    modeling: ModelConfig = field(default_factory=ModelConfig)
    training: TrainConfig = field(default_factory=TrainConfig)

    def __getattr__(self, name: str) -> Any:  # only called when normal lookup fails
        group = FIELD_GROUP.get(name)
        if group is None:
            raise AttributeError(name)
        return getattr(object.__getattribute__(self, group), name)

    def to_dict(self) -> dict[str, Any]:
        """Flat mapping, in group order: what --print-config and run.json show."""
        out: dict[str, Any] = {}
        for group in GROUPS:
            out.update(dataclasses.asdict(getattr(self, group)))
        return out

    def replace(self, **changes: Any) -> "Config":
        return build_config(self.to_dict(), changes)


FIELDS: dict[str, dataclasses.Field] = {}
FIELD_GROUP: dict[str, str] = {}
for _group, _cls in GROUPS.items():
    for _f in fields(_cls):
        FIELDS[_f.name] = _f
        FIELD_GROUP[_f.name] = _group


def _hint(name: str):
    group_cls = GROUPS[FIELD_GROUP[name]]
    return typing.get_type_hints(group_cls)[name]


def _coerce(name: str, value: Any) -> Any:
    """Check `value` against the field's type; convert the harmless cases (1 -> 1.0, '5e-5' -> 5e-05)."""
    hint = _hint(name)
    args = typing.get_args(hint)
    optional = (typing.get_origin(hint) in (typing.Union, types.UnionType)) and type(None) in args
    if optional:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"config key '{name}' (--{name.replace('_', '-')}) must be {expected}, got {value!r}")

    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return list(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise bad("true or false")
    if hint is int:
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise bad("an integer")
    if hint is float:
        if isinstance(value, bool):
            raise bad("a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise bad("a number")
    if hint is str:
        if isinstance(value, str):
            return value
        if FIELDS[name].metadata.get("number_or_text") and isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # `add_tokens: 100` in YAML
        raise bad("a string")
    raise AssertionError(f"unhandled type {hint} for {name}")  # pragma: no cover


def build_config(*layers: dict[str, Any]) -> Config:
    """Defaults, then each layer in turn (file, then flags). A Trainer / run_mlm name (ALIASES) counts as
    its field; unknown keys, a field named twice in one layer and wrong types raise."""
    values: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
    for layer in layers:
        for key, value in canonical_layer(layer).items():
            values[FIELD_GROUP[key]][key] = _coerce(key, value)
    return Config(**{g: cls(**values[g]) for g, cls in GROUPS.items()})


# --- the names a Trainer or run_mlm.py user types -------------------------------------------------
#
# transformers' TrainingArguments and examples/pytorch/language-modeling/run_mlm.py name some options
# otherwise. Each name below means exactly one mlmtune option: it is accepted as a flag (--learning_rate
# or --learning-rate), a YAML key and a keyword of mlmtune.train / evaluate, and stored under
# mlmtune's own name (run.json, --print-config). Every option's own name with `_` is a flag too
# (--output_dir, --chunk_size, --mlm_probability, --line_by_line).
ALIASES: dict[str, str] = {
    "learning_rate": "lr",
    "per_device_train_batch_size": "batch_size",
    "per_device_eval_batch_size": "eval_batch_size",
    "num_train_epochs": "epochs",
    "model_name_or_path": "model",
    "tokenizer_name": "tokenizer",
    "train_file": "data",
    "dataset_name": "data",
    "validation_file": "eval_data",
    "max_train_samples": "train_size",
    "max_eval_samples": "eval_size",
    "overwrite_output_dir": "overwrite",
    "logging_steps": "log_every",
    "eval_steps": "eval_every",
    "save_steps": "save_every",
    "save_total_limit": "keep_checkpoints",
    "torch_compile": "compile",
    "hub_model_id": "push_to_hub",
    "resume_from_checkpoint": "resume",  # a checkpoint folder of the run, or true (see resume_from_checkpoint)
}

# Trainer / run_mlm names that mean no single mlmtune option: refused with what to write instead.
NOT_ALIASES: dict[str, str] = {
    "max_seq_length": "run_mlm's --max_seq_length is two options here: --chunk-size (the blocks text is "
                      "concatenated and cut into) or --max-length (the longest line with --line-by-line)",
    "validation_split_percentage": "use --eval-fraction, a share rather than a percentage (5 percent is 0.05)",
    "do_train": "mlmtune train always trains and evaluates: drop it",
    "do_eval": "mlmtune train always trains and evaluates: drop it (mlmtune evaluate scores a model alone)",
}


def canonical_name(key: str) -> str | None:
    """The field a config key names (its own name or an ALIASES name, `-` or `_`), or None."""
    key = key.replace("-", "_")
    return key if key in FIELDS else ALIASES.get(key)


def canonical_layer(layer: dict[str, Any]) -> dict[str, Any]:
    """One layer of options (a file, the flags, keywords) under mlmtune's own names: aliases translated,
    an unknown key or a field given under two names an error."""
    out: dict[str, Any] = {}
    named: dict[str, str] = {}
    for key, value in layer.items():
        if not isinstance(key, str):
            raise ConfigError(f"config key {key!r} must be a flag name such as chunk_size; "
                              "see `mlmtune train --print-config`")
        name = canonical_name(key)
        if name is None:
            flat = key.replace("-", "_")
            if flat in NOT_ALIASES:
                raise ConfigError(f"'{key}' (--{flat}) is not an mlmtune option: {NOT_ALIASES[flat]}")
            close = [k for k in FIELDS if k.replace("_", "") == key.replace("_", "").replace("-", "")]
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{key}'{hint}; see `mlmtune train --print-config`")
        if name in named:
            raise ConfigError(f"'{named[name]}' and '{key}' both set {name} (--{name.replace('_', '-')}): keep one")
        named[name] = key
        flat = key.replace("-", "_")
        if flat == "resume_from_checkpoint":
            out.update(resume_from_checkpoint(value, layer))
        elif flat == "num_train_epochs":
            out[name] = whole_epochs(value)
        else:
            out[name] = value
    return out


def whole_epochs(value: Any) -> Any:
    """--num_train_epochs 3.0 (the Trainer's float) -> 3; a fraction of an epoch is not a plan mlmtune makes."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value  # _coerce names the key and the value
    if isinstance(value, bool) or not math.isfinite(number) or not number.is_integer():
        raise ConfigError(f"num_train_epochs must be a whole number of epochs here, got {value!r}: give e.g. 3, or "
                          "--max-steps for part of an epoch")
    return int(number)


_CHECKPOINT = re.compile(r"^step-(\d+)$")  # run/layout's checkpoint folders (a folder named so is complete)


def resume_from_checkpoint(value: Any, layer: dict[str, Any]) -> dict[str, Any]:
    """The Trainer's resume_from_checkpoint: true (the newest checkpoint of --output-dir) or the path of a
    checkpoint folder. mlmtune continues a run from its newest complete checkpoint, so PATH must be that:
    OUTPUT/checkpoints/step-N with no newer step folder beside it. It sets --resume, and --output-dir to
    OUTPUT when none is given (a different one is a contradiction)."""
    if isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in ("true", "false")):
        return {"resume": value is True or str(value).strip().lower() == "true"}
    if value is None:
        return {}
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"resume_from_checkpoint must be a checkpoint folder or true, got {value!r}")
    path = Path(os.path.expanduser(value.rstrip("/")))
    found = _CHECKPOINT.match(path.name)
    if not path.is_dir():
        raise ConfigError(f"--resume_from_checkpoint {value}: no such folder; give a run's checkpoint "
                          "(OUTPUT/checkpoints/step-N) or use --resume with --output-dir OUTPUT")
    if not found or path.parent.name != "checkpoints":
        raise ConfigError(f"--resume_from_checkpoint {value} is not an mlmtune checkpoint (OUTPUT/checkpoints/step-N): "
                          "mlmtune resumes its own runs (--resume --output-dir OUTPUT); to start from another "
                          "model's weights, such as a Trainer checkpoint-N folder, pass it as --model")
    run = path.parent.parent
    newer = sorted(int(m.group(1)) for p in path.parent.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir())
    if newer and newer[-1] > int(found.group(1)):
        raise ConfigError(f"--resume_from_checkpoint {value}: the run in {run} has a newer checkpoint (step "
                          f"{newer[-1]}), and mlmtune resumes from the newest one: pass that one, or delete the "
                          "newer checkpoints to go back")
    given = next((layer[k] for k in layer if isinstance(k, str) and k.replace("-", "_") == "output_dir"), None)
    if given is not None and Path(os.path.expanduser(str(given))).resolve() != run.resolve():
        raise ConfigError(f"--resume_from_checkpoint {value} is a checkpoint of {run}, not of --output-dir {given}: "
                          f"drop --output-dir, or give --output-dir {run}")
    return {"resume": True, **({} if given is not None else {"output_dir": str(run)})}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config. The run.json of an output folder is accepted as it is (config_layer)."""
    return config_layer(read_config_file(path), path)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML or JSON file holds, as it is (a run.json with its versions and data too)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist: give the path of a .yaml or run.json file")
    try:
        text = path.read_text(encoding="utf-8")
        loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"config file {path} cannot be parsed ({first}): fix its syntax") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value")
    return loaded


def is_run_record(loaded: Any) -> bool:
    """A run.json mlmtune wrote: an object with a config and versions."""
    return isinstance(loaded, dict) and isinstance(loaded.get("config"), dict) and isinstance(loaded.get("versions"), dict)


def config_layer(loaded: dict[str, Any], path: str | Path | None = None) -> dict[str, Any]:
    """The options of a config file's mapping: a run.json's `config`, less the per-invocation flags (a
    config file never overwrites or resumes by itself). Read from `path`, the run.json of a run folder is
    that run wherever it lies: run_paths."""
    if "config" in loaded and "versions" in loaded:  # an output folder's run.json
        config = loaded["config"]
        if isinstance(config, dict):
            config = {k: v for k, v in config.items() if k not in ("overwrite", "resume")}
            folder = run_folder_of(path, loaded) if path is not None else None
            if folder is not None:
                config.update(run_paths(loaded, folder))
        return config
    return loaded


# The options that name files or folders: a run.json keeps them as typed, relative to where it started.
PATH_FIELDS = ("model", "tokenizer", "data", "eval_data", "add_tokens")


def run_folder_of(path: str | Path, loaded: Any) -> Path | None:
    """The run folder whose run.json `path` is (a file named run.json that mlmtune wrote), or None."""
    path = Path(path)
    return path.parent if path.name == "run.json" and is_run_record(loaded) else None


def run_started_in(record: dict[str, Any], folder: Path) -> Path | None:
    """Where the run in `folder` was started: run.json's `started_in` when that folder exists; for a
    run.json without it, what its relative output_dir says (runs/x in /a/b/runs/x: /a/b); else None."""
    recorded = record.get("started_in")
    if isinstance(recorded, str) and os.path.isabs(recorded) and Path(recorded).is_dir():
        return Path(recorded)
    output_dir = record.get("config", {}).get("output_dir")
    if not isinstance(output_dir, str) or not output_dir or os.path.isabs(output_dir):
        return None
    parts, here = Path(os.path.normpath(output_dir)).parts, folder.resolve().parts
    if ".." in parts or here[len(here) - len(parts):] != parts:
        return None
    return Path(*here[:len(here) - len(parts)])


def run_paths(record: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A run.json read as the run in `folder`, from wherever the command runs: its output folder is
    `folder` (a copy of a run is its own run: --resume continues the copy), and its relative paths
    (--data news) lead where they led when the run started (run_started_in), as paths relative to here;
    one that does not exist there stays as typed. `train --config` and `evaluate --config` both read a
    run.json so."""
    changes: dict[str, Any] = {"output_dir": str(folder)}
    started = run_started_in(record, folder)
    if started is None:
        return changes

    def rebased(value: Any) -> Any:
        if not isinstance(value, str) or not value.strip() or os.path.isabs(os.path.expanduser(value)):
            return value
        there = started / value
        return os.path.relpath(there) if there.exists() else value

    config = record.get("config", {})
    for name in PATH_FIELDS:
        value = config.get(name)
        if isinstance(value, list):
            changes[name] = [rebased(v) for v in value]
        elif isinstance(value, str):
            changes[name] = rebased(value)
    return changes


def check_resume_folder(config_path: str | Path, output_dir: str) -> None:
    """`--config RUN/run.json --resume` continues RUN: an --output-dir that names another folder is refused,
    naming both (continuing the one would change what the other's run.json describes)."""
    folder = run_folder_of(config_path, read_config_file(config_path))
    if folder is None:
        return
    if os.path.realpath(os.path.expanduser(output_dir)) != os.path.realpath(folder):
        raise ConfigError(f"--resume continues the run whose run.json --config names, in {folder}, but --output-dir "
                          f"is {output_dir}: drop --output-dir to continue {folder}, or give --config "
                          f"{Path(output_dir) / 'run.json'} to continue {output_dir}")


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML, one commented block per group; `--config` reads it back."""
    flat = cfg.to_dict()
    parts = []
    for group, cls in GROUPS.items():
        block = {f.name: flat[f.name] for f in fields(cls)}
        parts.append(f"# {group}\n" + yaml.safe_dump(block, sort_keys=False, allow_unicode=True, width=100))
    return "\n".join(parts)


def to_command(cfg: Config, command: str = "train") -> str:
    """The config as a command that runs as written: `mlmtune train` and a flag for every value that
    differs from its default, each shell-quoted (`--flag=value`, so a value that starts with '-' stays
    a value). Never --overwrite or --resume: like run.json, it does not replace or continue a run."""
    words = ["mlmtune", command]
    values = cfg.to_dict()
    implied = dependent_defaults({**values, **dict.fromkeys(FOLLOWING)})  # a value that follows the others: no flag
    for name, value in values.items():
        f = FIELDS[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if value == default or name in ("overwrite", "resume") or (name in implied and value == implied[name]):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            words.extend(f"{flag}={v}" for v in value)
        else:
            words.append(f"{flag}={'none' if value is None else value}")
    return shlex.join(words)


def validate(cfg: Config, *, training: bool = True) -> None:
    """Every problem with the values, in one message naming each flag."""
    problems: list[str] = []

    def check(ok: bool, text: str) -> None:
        if not ok:
            problems.append(text)

    for name in FIELDS:  # every float option: a NaN or infinity would train a model of NaNs
        v = getattr(cfg, name)
        if isinstance(v, float) and not math.isfinite(v):
            problems.append(f"--{name.replace('_', '-')} must be a finite number, got {v}")
    if problems:
        raise ConfigError("; ".join(problems))
    check(bool(cfg.output_dir.strip()), "--output-dir is empty: name a folder for the model and metrics, e.g. runs/mine")
    check("\0" not in cfg.output_dir, "--output-dir must not contain a NUL character")
    for name in ("mlm_probability", "eval_mlm_probability"):
        v = getattr(cfg, name)
        check(0 < v < 1 and math.isfinite(v), f"--{name.replace('_', '-')} must be between 0 and 1 (exclusive), got {v}")
    for name in ("mask_replace_prob", "random_replace_prob"):
        v = getattr(cfg, name)
        check(0 <= v <= 1, f"--{name.replace('_', '-')} must be between 0 and 1, got {v}")
    check(
        cfg.mask_replace_prob + cfg.random_replace_prob <= 1 + 1e-9,
        "--mask-replace-prob + --random-replace-prob must not exceed 1",
    )
    check(cfg.chunk_size > 0, f"--chunk-size must be a positive number of tokens, got {cfg.chunk_size}")
    check(cfg.max_length is None or cfg.max_length > 2, f"--max-length must be at least 3, got {cfg.max_length}")
    check(cfg.train_size is None or cfg.train_size > 0, f"--train-size must be positive, got {cfg.train_size}")
    check(cfg.eval_size is None or cfg.eval_size > 0, f"--eval-size must be positive, got {cfg.eval_size}")
    check(0 < cfg.eval_fraction < 1, f"--eval-fraction must be between 0 and 1, got {cfg.eval_fraction}")
    check(cfg.dropout is None or 0 <= cfg.dropout < 1, f"--dropout must be in [0, 1), got {cfg.dropout}")
    check(len(cfg.data) > 0 or (not training and bool(cfg.eval_data)), "--data needs at least one source")
    problems.extend(eval_data_problems(cfg))
    check(0 <= cfg.seed < 2**32, f"--seed must be between 0 and 2**32 - 1, got {cfg.seed}")
    for name, f in FIELDS.items():
        choices = f.metadata.get("choices")
        if choices and getattr(cfg, name) is not None and getattr(cfg, name) not in choices:
            problems.append(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, got {getattr(cfg, name)!r}")
    check(cfg.batch_size > 0, f"--batch-size must be positive, got {cfg.batch_size}")
    check(cfg.eval_batch_size is None or cfg.eval_batch_size > 0, "--eval-batch-size must be positive")
    if training:
        check(cfg.epochs > 0, f"--epochs must be positive, got {cfg.epochs}")
        check(cfg.max_steps is None or cfg.max_steps > 0, f"--max-steps must be positive, got {cfg.max_steps}")
        check(cfg.gradient_accumulation_steps > 0, "--gradient-accumulation-steps must be positive")
        check(cfg.lr > 0 and math.isfinite(cfg.lr), f"--lr must be positive, got {cfg.lr}")
        check(cfg.head_lr > 0 and math.isfinite(cfg.head_lr), f"--head-lr must be positive, got {cfg.head_lr}")
        check(cfg.weight_decay >= 0, f"--weight-decay must not be negative, got {cfg.weight_decay}")
        # AdamW multiplies each weight by (1 - lr * weight_decay) per step: at 1 or more it flips or zeroes it
        check(cfg.weight_decay * max(cfg.lr, cfg.head_lr) < 1,
              f"--weight-decay {cfg.weight_decay:g} times the learning rate ({max(cfg.lr, cfg.head_lr):g}) must be "
              "below 1 (AdamW would zero or flip every weight): use a weight decay such as 0.01")
        check(cfg.warmup_steps >= 0, f"--warmup-steps must not be negative, got {cfg.warmup_steps}")
        check(0 <= cfg.warmup_ratio < 1, f"--warmup-ratio must be in [0, 1), got {cfg.warmup_ratio}")
        check(cfg.max_grad_norm is None or cfg.max_grad_norm > 0, "--max-grad-norm must be positive or none")
        check(cfg.freeze_layers >= 0, f"--freeze-layers must not be negative, got {cfg.freeze_layers}")
        check(0 < cfg.freeze_until <= 1, f"--freeze-until must be in (0, 1], got {cfg.freeze_until}")
        check(cfg.eval_every is None or cfg.eval_every > 0, "--eval-every must be positive")
        check(cfg.log_every > 0, "--log-every must be positive")
        check(cfg.save_every is None or cfg.save_every > 0, "--save-every must be positive")
        check(cfg.keep_checkpoints > 0, "--keep-checkpoints must be at least 1")
        check(not (cfg.streaming and cfg.max_steps is None and cfg.max_time is None),
              "--streaming needs --max-steps or --max-time (a stream has no length)")
        if cfg.max_time is not None:

            try:
                parse_duration(cfg.max_time)
            except ConfigError as exc:
                problems.append(str(exc))
        check(not (cfg.resume and cfg.overwrite), "--resume and --overwrite contradict each other: pick one")
        check(not (cfg.fsdp and cfg.deepspeed), "--fsdp and --deepspeed both shard the model, each its own way: "
              "pick one")
        try:
            parse_duration(cfg.dist_timeout, "--dist-timeout")
        except ConfigError as exc:
            problems.append(str(exc))
        check(all(cfg_text.strip() for cfg_text in cfg.probe), "--probe must not be empty")
        problems.extend(vocabulary_problems(cfg))
    if problems:
        raise ConfigError("; ".join(problems))


def eval_data_problems(cfg: Config) -> list[str]:
    """--eval-data replaces the held-out part of --data: options that shape a held-out part contradict it."""
    if not cfg.eval_data:
        return []
    problems = [f"--eval-data {s!r} is empty: give a file, a folder or a dataset name" for s in cfg.eval_data
                if not s.strip()]
    if cfg.eval_split is not None:
        problems.append("--eval-data and --eval-split both name the evaluation text: keep one")
    if cfg.eval_fraction != FIELDS["eval_fraction"].default:
        problems.append(f"--eval-fraction {cfg.eval_fraction:g} has no effect with --eval-data (nothing is held out "
                        "of --data): drop --eval-fraction")
    return problems


def vocabulary_problems(cfg: Config) -> list[str]:
    """--add-tokens, --min-count, --new-token-lr (the file itself is read with the tokenizer, in train)."""

    problems = []
    if cfg.min_count < 1:
        problems.append(f"--min-count must be at least 1, got {cfg.min_count}")
    if cfg.new_token_lr is not None and not cfg.new_token_lr > 0:
        problems.append(f"--new-token-lr must be positive, got {cfg.new_token_lr:g}")
    if cfg.add_tokens is None:
        if cfg.new_token_lr is not None:
            problems.append("--new-token-lr needs --add-tokens (it is the learning rate of the added words)")
        return problems
    try:
        parse_count(cfg.add_tokens)
    except ConfigError as exc:
        problems.append(str(exc))
    if cfg.streaming:
        problems.append("--add-tokens reads the whole training text (to count its words and measure the pieces per "
                        "word) and is not available with --streaming: drop one of them")
    return problems


# Options whose default (None) follows other options; dependent_defaults fills them in.
FOLLOWING = ("head_init", "eval_batch_size", "new_token_lr")


def dependent_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """The options left to follow others (None in `values`, a flat config), filled in from the others: the
    one place these defaults are decided."""
    out: dict[str, Any] = {}
    if values.get("head_init") is None:
        out["head_init"] = "warm"  # only a grown head is started; a model's own head is left as it is
    batch = values.get("batch_size")
    if values.get("eval_batch_size") is None and isinstance(batch, int) and batch > 0:
        out["eval_batch_size"] = 2 * batch  # no gradients to keep: twice the training batch fits
    if values.get("new_token_lr") is None and values.get("add_tokens") is not None:
        out["new_token_lr"] = values.get("head_lr")
    if values.get("eval_size") is None and values.get("streaming"):
        out["eval_size"] = STREAMING_EVAL_SIZE
    return out


def resolve(cfg: Config) -> Config:
    """`cfg` with every dependent default filled in (dependent_defaults), once, before anything runs:
    what --print-config shows, run.json records, and every phase of a run reads."""
    changes = dependent_defaults(cfg.to_dict())
    return cfg.replace(**changes) if changes else cfg


def resume_mismatch(saved: dict[str, Any], current: Config) -> str | None:
    """The first field that differs between a checkpoint's config and this run's, or None."""
    now = current.to_dict()
    saved = {**saved, **dependent_defaults(saved)}  # a run.json that left them to follow others
    now = {**now, **dependent_defaults(now)}
    for key, value in now.items():
        if key in RESUMABLE_CHANGES or key in TOTALS:
            continue
        if key in saved and saved[key] != value and not (key in PATH_FIELDS and same_paths(saved[key], value)):
            return f"{key} was {saved[key]!r} in the checkpoint, now {value!r}"
    return None


def same_paths(a: Any, b: Any) -> bool:
    """Two values of a path option name the same existing files (runs/x/../news and news)."""
    a, b = (v if isinstance(v, list) else [v] for v in (a, b))
    if len(a) != len(b) or not all(isinstance(v, str) for v in a + b):
        return False
    try:
        return all(os.path.exists(x) and os.path.exists(y) and os.path.samefile(x, y) for x, y in zip(a, b))
    except OSError:
        return False


def parse_count(value: str | None) -> int | None:
    """--add-tokens N -> N; a FILE -> None. A whole number below 1 is a ConfigError."""
    if value is None:
        return None
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        n = int(text)
        if Path(text).is_file():  # `--add-tokens 5` beside a file named 5: which one was meant?
            raise ConfigError(f"--add-tokens {text} is a number of words and also a file in this folder: write "
                              f"./{text} for the file, or a number with no file of that name")
        if n < 1:
            raise ConfigError(f"--add-tokens {text} adds no word: give a number of words of at least 1 (e.g. 100), "
                              "or a file with one word a line")
        return n
    if not text:
        raise ConfigError("--add-tokens is empty: give a number of words (e.g. 100) or a file with one word a line")
    return None


# The options `evaluate` reads; the rest of a config (optimizer, schedule, output) is ignored.
EVALUATE_FIELDS = [
    "data", "data_split", "eval_split", "eval_data", "text_column", "encoding", "line_by_line", "line_per_document",
    "chunk_size",
    "max_length", "eval_size", "eval_fraction", "eval_mlm_probability", "mask_replace_prob",
    "random_replace_prob", "whole_word_mask", "model", "tokenizer", "precision", "seed",
    "eval_batch_size", "batch_size",
]


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|sec|m|min|h|hr|d)?\s*$")
_UNIT = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}
MAX_BUDGET = 30 * 86400  # 30 days: anything longer is a typo


def parse_duration(text: str, flag: str = "--max-time") -> float:
    """'90s', '6m', '1.5h', '2d' or plain seconds -> seconds (positive, finite, at most 30 days)."""
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigError(f"{flag} {text!r} is not a duration: write it as 90s, 6m or 1.5h")
    seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if not math.isfinite(seconds) or seconds < 1 or seconds > MAX_BUDGET:
        raise ConfigError(f"{flag} {text!r} must be at least 1 second and at most 30 days: write it as 90s, 6m or 1.5h")
    return seconds


VOCAB_FIELDS = ["data", "data_split", "text_column", "encoding", "model", "tokenizer", "min_count"]
