"""`mlmtune train`: fit(config) -> results. The recipe, phase by phase:

  1. prepare_data        read, deduplicate, split, cut; mask the evaluation set once        (prepare.py)
  2. load_model          the masked LM, a grown head, the added words' rows; build_trainable:
                         the objective, AdamW, the schedule by steps or by a --max-time budget (build.py)
  3. before training     score the model as loaded, then warm-start a grown head and score it (build.py)
  4. take_output_dir     only now is anything written: --overwrite sets the old run aside, run.json,
                         Accelerate's prepare
  5. restore             --resume: the newest complete checkpoint, a longer plan taken up    (resume.py)
  6. train_loop          the loop; `train_step` is one optimizer step                (loop.py, step.py)
  7. finish              final evaluation, finite-weight check, the model in the Hugging Face layout,
                         its card, results.json; the report; then --push-to-hub uploads the folder

Phases 1-3 write nothing, so bad input, a signal or a failure there leaves the output folder as it
was. Each phase takes what it uses and returns what the next one needs.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import torch

from ..config import Config, build_config, resolve, to_command, validate
from ..errors import TrainingError
from ..model.device import make_accelerator, shutdown, unwrap
from ..run.card import write_card
from ..run.checkpoints import load_checkpoint, save_checkpoint
from ..run.files import atomic_write_json, save_model, versions, writing
from ..run.hub import check_hub_access, push
from ..run.layout import complete_checkpoints, remove_temporaries
from ..run.metrics_log import MetricsLog, utc_iso
from ..run.ownership import Folder, check_output_dir, discard, failure_rules, put_back, run_inputs, set_aside_old_run
from ..run.report import write_report
from ..run.sentence import keep_sentence_encoder, write_sentence_files
from .budget import Totals, plan_totals
from .build import Baseline, Trainable, build_trainable, load_model, score_base_words, score_before_training, warm_start
from .evaluations import Evaluations
from .loop import train_loop
from .prepare import Data, prepare_data, say_data
from .resume import Resume, check_not_shorter, continue_plan, find_resume
from .signals import AbortOnSignal
from .step import TrainState
from .trackers import check_tracker, start_tracker
from .vocabulary import add_rows


def fit(cfg: Config) -> dict:
    """Train as `cfg` says and return results.json's figures. Everything is checked before anything is
    written; a new run that fails before it has a checkpoint or a final model leaves nothing behind
    (run/ownership.failure_rules), and a failed write is one error line."""
    started = time.perf_counter()
    validate(cfg)
    cfg = resolve(cfg)
    check_tracker(cfg.report_to)
    check_hub_access(cfg.push_to_hub)  # offline or no token: say so before training, not after
    out = Path(os.path.expanduser(cfg.output_dir))
    record = check_output_dir(out, overwrite=cfg.overwrite, resume=cfg.resume, inputs=run_inputs(cfg))
    resume = find_resume(cfg, out, record) if cfg.resume else None
    with failure_rules(out, resume=cfg.resume) as folder, AbortOnSignal():
        accelerator = make_accelerator(cfg, out)
        say, world = accelerator.print, accelerator.num_processes
        started_at = time.time()  # wall clock, for results.json's started_at
        # 1. data
        data = prepare_data(cfg, accelerator, resume, say)
        totals = plan_totals(cfg, data.steps_per_epoch)
        if resume is not None:  # training further is fine, a total below what is done is not
            check_not_shorter(resume, totals, cfg)
        say_data(data, cfg, world=world, say=say)
        prepare_seconds = time.perf_counter() - started
        state, baseline = TrainState(), Baseline()
        evaluations = Evaluations(accelerator, data.eval_set, steps_per_epoch=data.steps_per_epoch,
                                  words=data.vocabulary.tuned_words if data.vocabulary else None,
                                  report_to=cfg.report_to, say=say)
        # 2. model, optimizer, schedule
        loaded = load_model(cfg, accelerator, data, say)
        if data.vocabulary is not None:  # the base scored on the masked words once, with its own tokenizer
            if resume is None:
                baseline.word = score_base_words(loaded.model, data.vocabulary.base_words, accelerator, evaluations,
                                                 vocabulary_size=data.vocabulary.first_id, say=say)
            add_rows(loaded.model, data.vocabulary, len(data.tokenizer))
        trainable = build_trainable(cfg, loaded, data, totals, processes=world)
        # 3. before training (nothing written yet)
        if resume is None:
            score_before_training(trainable, accelerator, evaluations, state, baseline)
            warm_start(cfg, accelerator, data, loaded, trainable, evaluations, state, baseline, say)
        # 4. the output folder becomes this run's
        log = take_output_dir(cfg, accelerator, folder, trainable,
                              record=lambda: run_record(cfg, accelerator, data, loaded.new_parameters, totals))
        evaluations.attach(log)
        # 5. resume
        if resume is not None:
            state, baseline = restore(cfg, accelerator, resume, trainable, totals, log, say)

        def checkpoint(step: int) -> Path:
            check_finite_weights(dict(unwrap(accelerator, trainable.objective).named_parameters()),
                                 complete_checkpoints(out))
            with writing(f"the checkpoint of step {step}", out):
                return save_checkpoint(accelerator, out, step,
                                       {**state.counters(), **baseline.record(), "config": cfg.to_dict(),
                                        "data": data.summary}, cfg.keep_checkpoints)

        # 6. the loop
        batches = data.batches(cfg, state.step, rank=accelerator.process_index, world=world)
        train_loop(accelerator, trainable.objective, trainable.optimizer, trainable.scheduler, batches, state, totals,
                   cfg, out=out, log=log, checkpoint=checkpoint,
                   evaluate=lambda step, when: evaluations(trainable.objective, step, when, state),
                   before_step=trainable.freezer.update if trainable.freezer else None)
        # 7. finish
        if evaluations.last_step != state.step:  # no step ran in this session (a finished run resumed: its last
            # eval is logged already; or a budget the warm start spent: its model is scored and logged here)
            evaluations(trainable.objective, state.step, f"step {state.step}", state, log=resume is None)
            if resume is None:
                say("note: the warm start spent the whole --max-time budget, so no training step ran: give a "
                    "larger budget")
        results = results_record(accelerator, state, baseline, evaluations, totals, data,
                                 prepare_seconds=prepare_seconds, started=started, started_at=started_at)
        return finish(cfg, accelerator, out, trainable, data, results, say)


def train(config: Config | dict | None = None, **overrides) -> dict:
    """Python API: `mlmtune.train(model="minilm", data=["bbc-news"], max_steps=100)`."""
    base = config.to_dict() if isinstance(config, Config) else dict(config or {})
    return fit(build_config(base, overrides))


def results_record(accelerator, state: TrainState, baseline: Baseline, evaluations: Evaluations, totals: Totals,
                   data: Data, *, prepare_seconds: float, started: float, started_at: float) -> dict:
    """results.json's figures (the model's files are added when it is saved)."""
    results = {
        "steps": state.step,
        "max_time_seconds": totals.budget,
        "train_tokens": state.tokens,
        "train_seconds": round(state.train_seconds, 3),
        "train_tokens_per_second": state.tokens / max(state.train_seconds, 1e-9),
        "warm_start_seconds": round(state.warm_seconds, 3),
        "budget_seconds_spent": round(state.budget_spent, 3),
        "eval_seconds": round(state.eval_seconds, 3),
        "prepare_seconds": round(prepare_seconds, 3),  # this session: reading, tokenizing, cutting
        "wall_seconds": round(time.perf_counter() - started, 3),  # this session, up to the final save
        "baseline_perplexity": baseline.perplexity,
        "baseline_accuracy": baseline.accuracy,
        "warm_start_perplexity": baseline.warm_start_perplexity,
        "eval_perplexity": evaluations.last.perplexity,
        "eval_accuracy": evaluations.last.accuracy,
        "eval_masked_tokens": evaluations.last.masked_tokens,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "processes": accelerator.num_processes,
        "precision": accelerator.mixed_precision,
        # this session's start and its end, before the final save (wall_seconds spans the same)
        "started_at": utc_iso(started_at),
        "finished_at": utc_iso(),
    }
    if data.vocabulary is not None:  # the vocabulary-independent measure, before adding words and now
        results.update({"added_tokens": len(data.vocabulary.words),
                        "pieces_per_word_before": round(data.vocabulary.pieces_per_word_before, 4),
                        "pieces_per_word_after": round(data.vocabulary.pieces_per_word_after, 4),
                        "base_word_bits_per_char": (baseline.word or {}).get("word_bits_per_char"),
                        "base_word_accuracy": (baseline.word or {}).get("word_accuracy"),
                        **(evaluations.last_word or {})})
    return results


def take_output_dir(cfg: Config, accelerator, folder: Folder, trainable: Trainable, record) -> MetricsLog:
    """--overwrite sets the earlier run aside (renames) and puts it back if the new run cannot start
    (a tracker that fails, a full disk); it is deleted once run.json is written. Accelerate prepares
    the objective, optimizer and schedule. Returns the run's metrics.jsonl."""
    out, main, aside = folder.path, accelerator.is_main_process, None
    if main:
        with writing("the run's files", out):
            out.mkdir(parents=True, exist_ok=True)
            remove_temporaries(out)  # of a save an earlier run had cut short
            if cfg.overwrite:
                aside = set_aside_old_run(out)
    try:
        accelerator.wait_for_everyone()
        trainable.objective, trainable.optimizer, trainable.scheduler = accelerator.prepare(
            trainable.objective, trainable.optimizer, trainable.scheduler)
        start_tracker(accelerator, cfg, out.name)
        if main and not cfg.resume:
            with writing("run.json", out):
                atomic_write_json(out / "run.json", record())
    except BaseException:
        if main:
            put_back(aside, out)
        raise
    folder.taken = True
    discard(aside)
    return MetricsLog(out / "metrics.jsonl", enabled=main)


def run_record(cfg: Config, accelerator, data: Data, new_parameters: list[str], totals: Totals) -> dict:
    return {
        # run.json is a config for later runs (--config): never one that overwrites or resumes by itself
        "config": {**cfg.to_dict(), "overwrite": False, "resume": False},
        "versions": versions(),
        "processes": accelerator.num_processes,
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
        "data": data.summary,
        "new_parameters": new_parameters,
        **({"vocabulary": data.vocabulary.record()} if data.vocabulary is not None else {}),
        "total_steps": totals.total_steps,
        "max_time_seconds": totals.budget,
        "steps_per_epoch": totals.steps_per_epoch,
        "command": to_command(cfg),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def restore(cfg: Config, accelerator, resume: Resume, trainable: Trainable, totals: Totals, log: MetricsLog,
            say=print) -> tuple[TrainState, Baseline]:
    """The newest complete checkpoint: weights, optimizer, schedule, RNG states, the counters; the
    metrics after it dropped. A longer plan than run.json's is taken up here (resume.continue_plan)."""
    load_checkpoint(accelerator, resume.checkpoint)
    state, baseline = TrainState.restored(resume.state), Baseline.restored(resume.state)
    log.truncate_after(state.step)
    goal = f"of {totals.total_steps}" if totals.total_steps else \
        f"with {max(0.0, totals.budget - state.budget_spent):.0f} s of the budget left"
    say(f"resumed from {resume.checkpoint} at step {state.step} {goal}")
    continue_plan(cfg, resume, trainable.scheduler, totals, state, main=accelerator.is_main_process, say=say)
    return state, baseline


def finish(cfg: Config, accelerator, out: Path, trainable: Trainable, data: Data, results: dict, say=print) -> dict:
    """The model in the Hugging Face layout (a sentence encoder's files kept), its card, results.json;
    then the report, and --push-to-hub once the folder is complete (a failed upload loses nothing)."""
    main = accelerator.is_main_process
    state_dict = accelerator.get_state_dict(trainable.objective)
    if main:
        model = unwrap(accelerator, trainable.objective).model
        # Keys of the objective's state dict are "model.<hf key>" ("_orig_mod." inserted by compile).
        model_state = {k.replace("_orig_mod.", "").removeprefix("model."): v for k, v in state_dict.items()}
        check_finite_weights(model_state, complete_checkpoints(out))
        layout = keep_sentence_encoder(cfg.model, model, model_state)
        with writing("the final model", out):
            results["files"] = save_model(model, data.tokenizer, out, state_dict=model_state)
            if layout is not None:
                results["files"] += write_sentence_files(layout, out)
            results["files"] += write_card(out, results=results, repo=cfg.push_to_hub, say=say)
            atomic_write_json(out / "results.json", results)
        say(f"saved the model to {out} (pipeline('fill-mask', model='{out}') loads it)")
    accelerator.wait_for_everyone()
    if cfg.report_to != "none":
        accelerator.end_training()
    if main and cfg.report:
        write_report(out, base_model=cfg.model, probes=cfg.probe, say=say)
    shutdown(accelerator)
    if main and cfg.push_to_hub:
        push(out, cfg.push_to_hub, say=say)
    return results


def check_finite_weights(state: dict, checkpoints: list[Path]) -> None:
    """Never save a model with a NaN or infinite weight (a loss can stay finite while one goes bad)."""
    for name, tensor in state.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            where = f"the last good checkpoint is {checkpoints[-1]}" if checkpoints else "no checkpoint was saved"
            raise TrainingError(f"the weight {name} holds NaN or infinity, so it is not saved ({where}): "
                                "lower --lr, --head-lr or --weight-decay, or use --precision fp32")


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
