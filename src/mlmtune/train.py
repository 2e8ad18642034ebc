"""`mlmtune train`: fit(config) -> results. The one training loop.

Setup runs in an order that matters: validate everything and read the data *before* the output
folder is touched (bad input leaves nothing behind), then build model, optimizer and schedule,
hand them to Accelerate, and only then restore a checkpoint (load_state needs prepared objects).
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .batching import Batch, epoch_order, eval_batches, make_batch, process_batches
from .checkpoints import complete_checkpoints, load_checkpoint, save_checkpoint
from .chunking import check_lengths, fingerprint, splits_from_config
from .config import Config, build_config, resume_mismatch, validate
from .errors import CheckpointError, ConfigError, DataError, Interrupted, OutputError, TrainingError
from .masking import Masker, MaskingSpec
from .metrics import EvalResult, MetricsLog, evaluate_batches
from .modeling import (MaskedLMObjective, load_masked_lm, load_tokenizer, max_positions, precision_note,
                       resolve_precision, use_training_attention)
from .outputs import (atomic_write_json, check_output_dir, clear_output_dir, finite_json, remove_temporaries,
                      run_written, save_model, versions, write_problem, writing)
from .streaming import StreamingData, open_documents, stream_batches

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
        accelerator.init_trackers(name, config=_flat_for_tracker(cfg))
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
    if accelerator.is_main_process and (note := precision_note(accelerator.mixed_precision, accelerator.device)):
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


class Taken:
    """Whether this run has made the output folder its own yet (cleared it, written run.json)."""

    def __init__(self):
        self.taken = False


def run_inputs(cfg: Config) -> list[tuple[str, str]]:
    """The local files and folders a run reads: --output-dir may never be or hold one of them."""
    from .modeling import resolve_model

    inputs = [("--data", d) for d in cfg.data if d.strip()]
    try:
        inputs.append(("--model", resolve_model(cfg.model)))
    except Exception:  # a missing built-in model fails later, with its own message
        inputs.append(("--model", cfg.model))
    if cfg.tokenizer:
        inputs.append(("--tokenizer", cfg.tokenizer))
    return inputs


class _AbortOnSignal:
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


def fit(cfg: Config) -> dict:
    """Validate, check the output folder, then train. A new run that fails before it has a checkpoint
    or a final model leaves nothing behind; a failed write is one error line."""
    started = time.perf_counter()
    validate(cfg)
    check_tracker(cfg.report_to)
    out = Path(os.path.expanduser(cfg.output_dir))
    check_output_dir(out, overwrite=cfg.overwrite, resume=cfg.resume, inputs=run_inputs(cfg))
    resume_from = _checkpoint_to_resume(cfg, out) if cfg.resume else None
    existed = out.exists()
    taken = Taken()
    try:
        with _AbortOnSignal():
            return _fit(cfg, out, resume_from, started, taken)
    except BaseException as exc:
        rank0 = os.environ.get("RANK", "0") == "0"
        if rank0 and taken.taken:
            remove_temporaries(out)
            if not cfg.resume:
                _undo_new_run(out, existed)
        problem = write_problem(exc, out) if isinstance(exc, OSError) else None
        if problem is not None:
            raise OutputError(f"cannot write into {out}: {problem}; free space or fix the permissions, or choose "
                              "another --output-dir") from None
        raise


def _undo_new_run(out: Path, existed: bool) -> None:
    """A new run that failed before its first checkpoint and its final model: remove what it wrote,
    so the same command can simply be run again."""
    if complete_checkpoints(out) or (out / "results.json").exists():
        return
    for p in sorted(run_written(out), key=lambda p: p.name == "run.json"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
    if not existed:
        with contextlib.suppress(OSError):
            out.rmdir()  # only when empty


def _fit(cfg: Config, out: Path, resume_from: Path | None, started: float, taken: Taken) -> dict:
    accelerator = make_accelerator(cfg, out)
    main = accelerator.is_main_process
    say = accelerator.print
    world = accelerator.num_processes

    # --- data: read, split, cut; every process does the same deterministic work
    tokenizer = load_tokenizer(cfg.model, cfg.tokenizer)
    limit = max_positions(cfg.model, tokenizer)
    train_masker = Masker(tokenizer, MaskingSpec(cfg.mlm_probability, cfg.mask_replace_prob,
                                                 cfg.random_replace_prob, cfg.whole_word_mask))
    eval_masker = Masker(tokenizer, MaskingSpec(cfg.eval_mlm_probability, cfg.mask_replace_prob,
                                                cfg.random_replace_prob, cfg.whole_word_mask))
    if cfg.report:  # the report fills the probes' masks after training: check them before
        for probe in cfg.probe:
            if "[MASK]" not in probe and tokenizer.mask_token not in probe:
                raise ConfigError(f"--probe {probe!r} has no [MASK]: write [MASK] where a word should be filled in")
    stream = None
    if cfg.streaming:
        check_lengths(cfg, limit)
        stream = StreamingData(
            open_documents(cfg.data, split=cfg.data_split, text_column=cfg.text_column, encoding=cfg.encoding,
                           line_by_line=cfg.line_by_line),
            tokenizer, chunk_size=cfg.chunk_size, line_by_line=cfg.line_by_line, max_length=cfg.max_length or limit,
            eval_size=cfg.eval_size, seed=cfg.seed)
        eval_blocks, train_blocks = stream.eval, None
        data_summary = {"streaming": True, "eval_documents": stream.eval_documents, "eval_examples": len(stream.eval),
                        "eval_tokens": stream.eval.num_tokens, "eval_fingerprint": fingerprint(stream.eval)}
        steps_per_epoch = 0  # unknown: a stream has no length
    else:
        splits = splits_from_config(cfg, tokenizer, limit)
        eval_blocks, train_blocks, data_summary = splits.eval, splits.train, splits.summary()
        steps_per_epoch = len(train_blocks) // (cfg.batch_size * world) // cfg.gradient_accumulation_steps
        if steps_per_epoch == 0:
            needed = cfg.batch_size * world * cfg.gradient_accumulation_steps
            fix = (f"raise --train-size to at least {needed} or lower --batch-size"
                   if cfg.train_size is not None and cfg.train_size < needed else "lower --batch-size or add text")
            raise ConfigError(
                f"{len(train_blocks)} training examples make no full optimizer step of "
                f"{cfg.batch_size} x {world} processes x {cfg.gradient_accumulation_steps} accumulation: {fix}"
            )
        if cfg.resume:
            check_same_data(out, resume_from, data_summary)
        if data_summary.get("duplicates_dropped"):
            say(f"note: dropped {data_summary['duplicates_dropped']:,} repeated documents before the split, so no "
                "evaluation text is also training text")
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_steps or math.ceil(cfg.warmup_ratio * total_steps)

    prepare_seconds = time.perf_counter() - started

    # --- the evaluation set, masked once and kept
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    multiple = 8 if cfg.line_by_line else 1
    eval_set = eval_batches(eval_blocks, eval_masker, seed=cfg.seed, batch_size=cfg.eval_batch_size or 2 * cfg.batch_size,
                            pad_id=pad_id, pad_to_multiple_of=multiple,
                            rank=accelerator.process_index, world=world)
    eval_masked = accelerator.reduce(torch.tensor(float(sum(b.n_masked for b in eval_set)), device=accelerator.device), "sum")
    if eval_masked == 0:
        raise DataError(f"the fixed evaluation masks chose no token of the {eval_blocks.num_tokens:,} evaluation "
                        f"tokens (--eval-mlm-probability {cfg.eval_mlm_probability:g}): raise it (0.15 is the "
                        "standard) or --eval-size")

    # --- model, optimizer, schedule
    loaded = load_masked_lm(cfg.model, seed=cfg.seed)
    if loaded.new_parameters:
        say(f"note: {cfg.model} has no MLM head; created one ({len(loaded.new_parameters)} new tensors, "
            f"decoder tied to the word embeddings), trained at --head-lr {cfg.head_lr:g}")
    use_training_attention(loaded.model, accelerator.device)
    objective = MaskedLMObjective(loaded.model)
    optimizer = build_optimizer(objective.model, lr=cfg.lr, head_lr=cfg.head_lr,
                                weight_decay=cfg.weight_decay, new_parameters=loaded.new_parameters)
    from transformers import get_scheduler

    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    if cfg.compile:
        objective = torch.compile(objective)

    # --- nothing was written until here; now the output folder is ours
    taken.taken = True
    if main:
        with writing("the run's files", out):
            if cfg.overwrite:
                clear_output_dir(out)
            out.mkdir(parents=True, exist_ok=True)
            remove_temporaries(out)  # of a save an earlier run had cut short
    accelerator.wait_for_everyone()
    objective, optimizer, scheduler = accelerator.prepare(objective, optimizer, scheduler)
    start_tracker(accelerator, cfg, out.name)  # before run.json: a tracker that cannot start leaves no run behind
    if main and not cfg.resume:
        with writing("run.json", out):
            atomic_write_json(out / "run.json", run_record(cfg, accelerator, data_summary, loaded.new_parameters,
                                                           total_steps, steps_per_epoch))

    metrics = MetricsLog(out / "metrics.jsonl", enabled=main)
    device = accelerator.device

    def evaluate(step: int, epoch: float, log: bool = True) -> EvalResult:
        t0 = time.perf_counter()
        result = evaluate_batches(objective, eval_set, device, reduce=lambda t: accelerator.reduce(t, "sum"))
        record = {"type": "eval", "step": step, "epoch": round(epoch, 4), **result.as_dict(),
                  "seconds": round(time.perf_counter() - t0, 3)}
        if log:
            metrics.write(finite_json(record))
        if cfg.report_to != "none":
            accelerator.log({"eval/perplexity": result.perplexity, "eval/accuracy": result.accuracy}, step=step)
        when = "before training" if step == 0 else f"step {step}" + (f" (epoch {epoch:.2f})" if epoch else "")
        say(f"eval {when}: perplexity {result.perplexity:,.2f}, accuracy {result.accuracy:.1%} "
            f"on {result.masked_tokens:,} masked tokens")
        return result

    # --- resume or baseline
    counters = {"tokens": 0, "train_seconds": 0.0, "eval_seconds": 0.0, "baseline_perplexity": None}
    start = 0
    last_eval = None
    if resume_from is not None:
        state = load_checkpoint(accelerator, resume_from)
        start = int(state["step"])
        counters.update({k: state.get(k, v) for k, v in counters.items()})
        metrics.truncate_after(start)
        say(f"resumed from {resume_from} at step {start} of {total_steps}")
    else:
        t0 = time.perf_counter()
        last_eval = evaluate(0, 0.0)
        counters["eval_seconds"] += time.perf_counter() - t0
        counters["baseline_perplexity"] = last_eval.perplexity

    def micro_batches(first_step: int):
        """This process's micro-batches from optimizer step `first_step` on, epoch after epoch."""
        accum = cfg.gradient_accumulation_steps
        if stream is not None:
            start_block = first_step * accum * cfg.batch_size * world
            for blocks, ids in stream_batches(stream, start_block=start_block, batch_size=cfg.batch_size,
                                              rank=accelerator.process_index, world=world):
                yield make_batch(blocks, np.arange(len(ids)), train_masker, seed=cfg.seed, stream=0,
                                 pad_id=pad_id, pad_to_multiple_of=multiple, sample_ids=ids)
            return
        epoch, skip = divmod(first_step, steps_per_epoch)
        lengths = train_blocks.lengths if cfg.line_by_line else None
        while True:
            order = epoch_order(len(train_blocks), seed=cfg.seed, epoch=epoch, lengths=lengths,
                                global_batch=cfg.batch_size * world)
            mine = process_batches(order, batch_size=cfg.batch_size, rank=accelerator.process_index, world=world)
            for indices in mine[skip * accum:steps_per_epoch * accum]:
                yield make_batch(train_blocks, indices, train_masker, seed=cfg.seed, stream=epoch,
                                 pad_id=pad_id, pad_to_multiple_of=multiple)
            epoch, skip = epoch + 1, 0

    def checkpoint(step: int) -> Path:
        with writing(f"the checkpoint of step {step}", out):
            return save_checkpoint(accelerator, out, step, {**counters, "config": cfg.to_dict(), "data": data_summary},
                                   cfg.keep_checkpoints)

    from tqdm.auto import tqdm

    data = micro_batches(start)
    accum = cfg.gradient_accumulation_steps
    bar = tqdm(total=total_steps, initial=start, disable=not main, desc="train", unit="step", dynamic_ncols=True)
    window = {"nll": 0.0, "masked": 0, "tokens": 0, "seconds": 0.0}
    objective.train()
    with StopFlag() as stop, bar:
        for step in range(start + 1, total_steps + 1):
            t0 = time.perf_counter()
            # 1) one optimizer step = `accum` micro-batches. The loss is the NLL summed over the
            #    masked tokens of all of them on all processes, divided by their number, so it does
            #    not depend on how the global batch is split. DDP averages gradients over processes
            #    and Accelerate divides by `accum`, hence `* world * accum`.
            micro: list[Batch] = [next(data) for _ in range(accum)]
            n_masked = accelerator.reduce(torch.tensor(float(sum(b.n_masked for b in micro)), device=device), "sum")
            step_nll = torch.zeros((), device=device)
            for b in micro:
                b = b.to(device)
                with accelerator.accumulate(objective):  # gradients sync on the last micro-batch only
                    nll, _ = objective(b.input_ids, b.attention_mask, b.labels)
                    accelerator.backward(nll * (world * accum) / n_masked.clamp(min=1))
                step_nll += nll.detach()
            # 2) agree on the step's loss and on stopping (a signal may reach one process only);
            #    float() waits for the device, once per step, so a NaN never reaches the weights
            flags = accelerator.reduce(torch.stack([step_nll.float(), torch.tensor(float(stop.signum or 0), device=device)]), "sum")
            nll_sum, stop_requested = float(flags[0]), bool(flags[1] > 0)
            if not math.isfinite(nll_sum):
                optimizer.zero_grad(set_to_none=True)
                kept = complete_checkpoints(out)
                where = f"the last good checkpoint is {kept[-1]}" if kept else "no checkpoint was saved"
                raise TrainingError(f"loss is {nll_sum} at step {step}; {where}: lower --lr or --head-lr, or use --precision fp32")
            # 3) clip, step, schedule
            if cfg.max_grad_norm:
                accelerator.clip_grad_norm_(objective.parameters(), cfg.max_grad_norm)
            optimizer.step()
            if not accelerator.optimizer_step_was_skipped:  # fp16: the grad scaler skips inf steps
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            # 4) account and log
            dt = time.perf_counter() - t0
            tokens = sum(b.n_tokens for b in micro) * world
            counters["tokens"] += tokens
            counters["train_seconds"] += dt
            window["nll"] += nll_sum
            window["masked"] += int(n_masked)
            window["tokens"] += tokens
            window["seconds"] += dt
            epoch = step / steps_per_epoch if steps_per_epoch else 0.0
            bar.update(1)
            if step % cfg.log_every == 0 or step == total_steps:
                loss = window["nll"] / max(window["masked"], 1)
                tps = window["tokens"] / max(window["seconds"], 1e-9)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tps:,.0f}")
                metrics.write({"type": "train", "step": step, "epoch": round(epoch, 4), "loss": loss,
                               "lr": scheduler.get_last_lr()[0], "tokens_per_second": tps,
                               "masked_tokens": window["masked"]})
                if cfg.report_to != "none":
                    accelerator.log({"train/loss": loss, "train/tokens_per_second": tps}, step=step)
                window = {"nll": 0.0, "masked": 0, "tokens": 0, "seconds": 0.0}
            # 5) evaluate and checkpoint when due
            epoch_end = steps_per_epoch > 0 and step % steps_per_epoch == 0
            if epoch_end or step == total_steps or (cfg.eval_every and step % cfg.eval_every == 0):
                t1 = time.perf_counter()
                bar.clear()
                last_eval = evaluate(step, epoch)
                counters["eval_seconds"] += time.perf_counter() - t1
            if stop_requested or epoch_end or (cfg.save_every and step % cfg.save_every == 0):
                path = checkpoint(step)
            if stop_requested:
                signum = signal.SIGTERM if (stop.signum or signal.SIGTERM) == signal.SIGTERM else signal.SIGINT
                raise Interrupted(
                    f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint saved in {path}. "
                    f"Resume with: mlmtune train --config {out / 'run.json'} --resume",
                    SIGNAL_EXIT[signum],
                )

    # --- the final model, in the standard layout, and the figures
    if last_eval is None or start == total_steps:  # a finished run resumed: its last eval is logged already
        last_eval = evaluate(total_steps, total_steps / steps_per_epoch if steps_per_epoch else 0.0,
                             log=start != total_steps)
    state_dict = accelerator.get_state_dict(objective)
    results = {
        "steps": total_steps,
        "train_tokens": counters["tokens"],
        "train_seconds": round(counters["train_seconds"], 3),
        "train_tokens_per_second": counters["tokens"] / max(counters["train_seconds"], 1e-9),
        "eval_seconds": round(counters["eval_seconds"], 3),
        "prepare_seconds": round(prepare_seconds, 3),  # this session: reading, tokenizing, cutting
        "wall_seconds": round(time.perf_counter() - started, 3),  # this session, up to the final save
        "baseline_perplexity": counters["baseline_perplexity"],
        "eval_perplexity": last_eval.perplexity,
        "eval_accuracy": last_eval.accuracy,
        "eval_masked_tokens": last_eval.masked_tokens,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "processes": world,
        "precision": accelerator.mixed_precision,
    }
    if main:
        inner = accelerator.unwrap_model(objective)
        inner = getattr(inner, "_orig_mod", inner)  # torch.compile wrapper
        # Keys of the objective's state dict are "model.<hf key>" ("_orig_mod." inserted by compile).
        model_state = {k.replace("_orig_mod.", "").removeprefix("model."): v for k, v in state_dict.items()}
        check_finite_weights(model_state, complete_checkpoints(out))
        with writing("the final model", out):
            save_model(inner.model, tokenizer, out, state_dict=model_state)
            atomic_write_json(out / "results.json", results)
        say(f"saved the model to {out} (pipeline('fill-mask', model='{out}') loads it)")
    accelerator.wait_for_everyone()
    if cfg.report_to != "none":
        accelerator.end_training()
    if main and cfg.report:
        from .report import write_report

        write_report(out, base_model=cfg.model, probes=cfg.probe, say=say)
    _shutdown(accelerator)
    return results


def check_finite_weights(state: dict, checkpoints: list[Path]) -> None:
    """Never save a model with a NaN or infinite weight (a loss can stay finite while one goes bad)."""
    for name, tensor in state.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            where = f"the last good checkpoint is {checkpoints[-1]}" if checkpoints else "no checkpoint was saved"
            raise TrainingError(f"the trained weight {name} holds NaN or infinity, so no model was saved ({where}): "
                                "lower --lr, --head-lr or --weight-decay, or use --precision fp32")


DATA_FIELDS = ("train_examples", "train_tokens", "train_fingerprint", "eval_examples", "eval_tokens", "eval_fingerprint")


def check_same_data(out: Path, checkpoint: Path | None, now: dict) -> None:
    """--resume must see the very tokens the run started with: the run.json and the checkpoint record
    counts and a hash of the prepared blocks."""
    import json

    recorded = []
    for path, key in ((out / "run.json", "data"), (checkpoint / "trainer_state.json" if checkpoint else None, "data")):
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get(key) if path else None
        except (OSError, ValueError, AttributeError):
            value = None
        if isinstance(value, dict):
            recorded.append((path, value))
    for path, saved in recorded:
        for field in DATA_FIELDS:
            if field in saved and field in now and saved[field] != now[field]:
                side = "training" if field.startswith("train") else "evaluation"
                raise ConfigError(
                    f"--resume: the {side} data changed since the run started ({field} was {saved[field]!r} in "
                    f"{path}, now {now[field]!r}): resume with the same --data files unchanged, or start a new run "
                    "with --overwrite"
                )


def _checkpoint_to_resume(cfg: Config, out: Path) -> Path:
    import json

    try:
        saved = json.loads((out / "run.json").read_text(encoding="utf-8"))["config"]
        assert isinstance(saved, dict)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AssertionError):
        raise CheckpointError(f"{out / 'run.json'} is damaged: it must be the run.json mlmtune wrote; "
                              "start again with --overwrite") from None
    problem = resume_mismatch(saved, cfg)
    if problem:
        raise ConfigError(f"--resume needs the config of the run in {out}: {problem}; "
                          f"resume with --config {out / 'run.json'} --resume")
    found = complete_checkpoints(out)
    if not found:
        raise CheckpointError(f"--resume: {out} has no complete checkpoint: start again with --overwrite "
                              "(use --save-every N to save checkpoints more often)")
    return found[-1]


def run_record(cfg: Config, accelerator, data_summary: dict, new_parameters: list[str], total_steps: int,
               steps_per_epoch: int) -> dict:
    return {
        "config": cfg.to_dict(),
        "versions": versions(),
        "processes": accelerator.num_processes,
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
        "data": data_summary,
        "new_parameters": new_parameters,
        "total_steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _flat_for_tracker(cfg: Config) -> dict:
    return {k: (", ".join(v) if isinstance(v, list) else v) for k, v in cfg.to_dict().items() if v is not None}


def _shutdown(accelerator) -> None:
    """Leave the process group cleanly, so torchrun's workers exit without an abort."""
    if accelerator.num_processes > 1 and torch.distributed.is_initialized():
        accelerator.wait_for_everyone()
        torch.distributed.destroy_process_group()


def train(config: Config | dict | None = None, **overrides) -> dict:
    """Python API: `mlmtune.train(model="minilm", data=["bbc-news"], max_steps=100)`."""
    base = config.to_dict() if isinstance(config, Config) else dict(config or {})
    return fit(build_config(base, overrides))
