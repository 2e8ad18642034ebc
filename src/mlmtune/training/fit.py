"""`mlmtune train`: fit(config) -> results. The recipe, phase by phase:

  0. the folder          its lock, held to the end (run/lock.py); a run an interrupted --overwrite
                         set aside put back; then what the folder holds is checked   (run/ownership.py)
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

Phases 0-3 write nothing but the lock file, which goes with the lock, so bad input, a signal or a
failure there leaves the output folder as it was. Each phase takes what it uses and returns what the next one needs.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from ..config import Config, build_config, parse_duration, resolve, to_command, validate
from ..data.batching import Prefetch
from ..errors import TrainingError
from ..model.device import make_accelerator, shutdown, unwrap
from ..model.load import first_non_finite
from ..model.objective import retie, tied_groups
from ..run.before import write_counts
from ..run.card import write_card
from ..run.checkpoints import load_checkpoint, save_checkpoint
from ..run.files import atomic_write_json, save_model, versions, writing
from ..run.hub import check_hub_access, push
from ..run.layout import UNIGRAM_FILE, complete_checkpoints, remove_temporaries
from ..run.metrics_log import MetricsLog, utc_iso
from ..run.ownership import (
    Folder,
    check_output_content,
    check_output_path,
    discard,
    failure_rules,
    first_missing,
    put_back,
    restore_set_aside,
    run_inputs,
    set_aside_old_run,
    undo_new_run,
)
from ..run.report import write_report
from ..run.sentence import keep_sentence_encoder, write_sentence_files
from ..run.shared import check_shared_folder
from ..run.verdict import run_verdict
from .budget import Totals, plan_totals
from .build import Baseline, Trainable, build_trainable, load_model, score_base_words, score_before_training, warm_start
from .evaluations import Evaluations
from .loop import train_loop
from .peers import PeerWatch
from .prepare import Data, prepare_data, say_data
from .results import TrainResult
from .resume import Resume, check_not_shorter, check_same_strategy, continue_plan, find_resume
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
    check_output_path(out, inputs=run_inputs(cfg))
    created = first_missing(out)  # what a failed new run removes again (as failure_rules does)
    # The folder's lock from here to the end (another process on it is refused); what it holds is read
    # under the lock, after a run an interrupted --overwrite set aside is put back.
    with failure_rules(out, resume=cfg.resume) as folder, AbortOnSignal(), contextlib.ExitStack() as job:
        accelerator = make_accelerator(cfg, out, training=True)
        say, world = accelerator.print, accelerator.num_processes
        job.enter_context(PeerWatch(accelerator, parse_duration(cfg.dist_timeout, "--dist-timeout"),
                                    on_end=lambda: left_behind(accelerator, folder, cfg, created)))
        check_shared_folder(accelerator, out)  # several nodes: one folder they all see, before it is read
        if accelerator.is_main_process:
            restore_set_aside(out, say)
        accelerator.wait_for_everyone()
        record = check_output_content(out, overwrite=cfg.overwrite, resume=cfg.resume)
        resume = find_resume(cfg, out, record) if cfg.resume else None
        if resume is not None:
            check_same_strategy(resume, accelerator.mlmtune_strategy.name)
        started_at = time.time()  # wall clock, for results.json's started_at
        # 1. data
        data = prepare_data(cfg, accelerator, resume, say)
        totals = plan_totals(cfg, data.steps_per_epoch)
        if resume is not None:  # training further is fine, a total below what is done is not
            check_not_shorter(resume, totals, cfg)
        say_data(data, cfg, world=world, say=say)
        prepare_seconds = time.perf_counter() - started
        state, baseline = TrainState(session_start=started), Baseline()
        evaluations = Evaluations(accelerator, data.eval_set, steps_per_epoch=data.steps_per_epoch,
                                  words=data.vocabulary.tuned_words if data.vocabulary else None,
                                  report_to=cfg.report_to, say=say)
        say(evaluation_plan(totals, evaluations))
        # 2. model, optimizer, schedule
        loaded = load_model(cfg, accelerator, data, say)
        if data.vocabulary is not None:  # the base scored on the masked words once, with its own tokenizer
            if resume is None:
                baseline.word = score_base_words(loaded.model, data.vocabulary.base_words, accelerator, evaluations,
                                                 vocabulary_size=data.vocabulary.first_id, say=say)
            add_rows(loaded.model, data.vocabulary, len(data.tokenizer))
        trainable = build_trainable(cfg, loaded, data, totals, processes=world)
        # 3. before training (nothing written yet)
        counts = None
        if resume is None:
            score_before_training(trainable, accelerator, evaluations, state, baseline)
            counts = warm_start(cfg, accelerator, data, loaded, trainable, evaluations, state, baseline, say)
        # 4. the output folder becomes this run's
        log = take_output_dir(cfg, accelerator, folder, trainable,
                              record=lambda: run_record(cfg, accelerator, data, loaded.new_parameters, totals),
                              counts=counts)
        evaluations.attach(log)
        # 5. resume
        if resume is not None:
            state, baseline = restore(cfg, accelerator, resume, trainable, totals, log, say)
            state.session_start = started

        def checkpoint(step: int) -> Path:
            check_finite_weights(dict(unwrap(accelerator, trainable.objective).named_parameters()),
                                 complete_checkpoints(out))
            with writing(f"the checkpoint of step {step}", out):
                return save_checkpoint(accelerator, out, step,
                                       {**state.counters(), **baseline.record(), "config": cfg.to_dict(),
                                        "data": data.summary}, cfg.keep_checkpoints)

        # 6. the loop
        batches = job.enter_context(Prefetch(data.batches(cfg, state.position, rank=accelerator.process_index,
                                                          world=world), pin=accelerator.device.type == "cuda"))
        train_loop(accelerator, trainable.objective, trainable.optimizer, trainable.scheduler, batches, state, totals,
                   cfg, out=out, log=log, checkpoint=checkpoint,
                   evaluate=lambda step, when, interim=False: evaluations(trainable.objective, step, when, state,
                                                                          interim=interim),
                   before_step=trainable.freezer.update if trainable.freezer else None)
        if state.empty_steps:
            say(f"note: {state.empty_steps} global batches had no masked token; they were skipped, not counted as "
                "steps (results.json: empty_steps)")
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


def evaluation_plan(totals: Totals, evaluations: Evaluations) -> str:
    """When the run evaluates, in one line: the curve's points and what they cost."""
    n, subset = len(evaluations.batches), evaluations.subset
    scored = "on the whole evaluation set" if subset >= n else \
        f"on the first quarter of the evaluation set ({subset} of {n} batches per process)"
    cost = ", which count against --max-time" if totals.budget is not None else ""
    return f"evaluations: {totals.evaluations()} {scored}{cost}, and on all of it at the end"


def train(config: Config | dict | None = None, **overrides) -> TrainResult:
    """Python API: `mlmtune.train(model="minilm", data=["bbc-news"], max_steps=100)` -> a TrainResult
    (results.json's figures: a dict, with attributes and a readable repr)."""
    base = config.to_dict() if isinstance(config, Config) else dict(config or {})
    cfg = build_config(base, overrides)
    return TrainResult(fit(cfg), os.path.expanduser(cfg.output_dir))


def results_record(accelerator, state: TrainState, baseline: Baseline, evaluations: Evaluations, totals: Totals,
                   data: Data, *, prepare_seconds: float, started: float, started_at: float) -> dict:
    """results.json's figures (the model's files are added when it is saved)."""
    results = {
        "steps": state.step,
        "empty_steps": state.empty_steps,  # global batches without a masked token: skipped, not counted in steps
        "max_time_seconds": totals.budget,
        "train_tokens": state.tokens,
        "train_seconds": round(state.train_seconds, 3),
        "train_tokens_per_second": state.tokens / max(state.train_seconds, 1e-9),
        "warm_start_seconds": round(state.warm_seconds, 3),
        "budget_seconds_spent": round(state.budget_spent, 3),
        # how far the last step ran past --max-time (0.0 within it; null without a budget)
        "budget_exceeded_seconds": None if totals.budget is None
        else round(max(0.0, state.budget_spent - totals.budget), 3),
        "eval_seconds": round(state.eval_seconds, 3),
        "prepare_seconds": round(prepare_seconds, 3),  # this session: reading, tokenizing, cutting
        "wall_seconds": round(time.perf_counter() - started, 3),  # this session, up to the final save
        "total_wall_seconds": round(state.wall_seconds, 3),  # every session of the run (--resume), to the final save
        "sessions": state.sessions,
        "baseline_perplexity": baseline.perplexity,
        "baseline_accuracy": baseline.accuracy,
        "warm_start_perplexity": baseline.warm_start_perplexity,
        "eval_perplexity": evaluations.last.perplexity,
        "eval_accuracy": evaluations.last.accuracy,
        "eval_masked_tokens": evaluations.last.masked_tokens,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "processes": accelerator.num_processes,
        "strategy": accelerator.mlmtune_strategy.name,
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


def take_output_dir(cfg: Config, accelerator, folder: Folder, trainable: Trainable, record,
                    counts: np.ndarray | None = None) -> MetricsLog:
    """--overwrite sets the earlier run aside (renames) and puts it back if the new run cannot start
    (a tracker that fails, a full disk); it is deleted once run.json is written (and beside it the
    warm start's unigram `counts`, from which run/before.py rebuilds the base as training began).
    Accelerate prepares the objective, optimizer and schedule. Returns the run's metrics.jsonl."""
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
                if counts is not None:
                    write_counts(out / UNIGRAM_FILE, counts)
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
        "strategy": accelerator.mlmtune_strategy.name,  # ddp, fsdp or deepspeed: the checkpoints' layout
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
        # where the run started: its relative paths (--data news, --output-dir runs/x) lead from here, so
        # `--config OUT/run.json` reads them alike from any folder (config.run_paths)
        "started_in": started_in(),
    }


def started_in() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the current folder was deleted
        return None


def restore(cfg: Config, accelerator, resume: Resume, trainable: Trainable, totals: Totals, log: MetricsLog,
            say=print) -> tuple[TrainState, Baseline]:
    """The newest complete checkpoint: weights, optimizer, schedule, RNG states, the counters; the
    metrics after it dropped. A longer plan than run.json's is taken up here (resume.continue_plan)."""
    load_checkpoint(accelerator, resume.checkpoint, trainable.objective, trainable.optimizer)
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
        model_state = retie(model_state, tied_groups(model))  # gathered from shards: each tied tensor once
        check_finite_weights(model_state, complete_checkpoints(out))
        layout = keep_sentence_encoder(cfg.model, model, model_state, say=say)
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
    if main:  # what the curve says, and the command that trains further while it still falls
        say(f"verdict: {run_verdict(out).line()}")
    shutdown(accelerator)
    if main and cfg.push_to_hub:
        push(out, cfg.push_to_hub, say=say)
    return results


def left_behind(accelerator, folder: Folder, cfg: Config, created: Path | None) -> str:
    """A job ended from outside the main thread (a process stopped answering): the output folder as a
    failure leaves it (run/ownership.failure_rules), and what to do next."""
    out = folder.path
    if accelerator.is_main_process and folder.taken:
        remove_temporaries(out)
        if not cfg.resume:
            undo_new_run(out, created)
    kept = complete_checkpoints(out)
    if kept:
        return f"resume from {kept[-1].name} with: mlmtune train --config {out / 'run.json'} --resume"
    if accelerator.is_main_process:
        return "no checkpoint was saved, and the run's files are removed: run the same command again"
    return "no checkpoint was saved: run the command again (with --overwrite if the folder holds the run's files)"


def check_finite_weights(state: dict, checkpoints: list[Path]) -> None:
    """Never save a model with a NaN or infinite weight (a loss can stay finite while one goes bad)."""
    name = first_non_finite(state.items())
    if name is not None:
        where = f"the last good checkpoint is {checkpoints[-1]}" if checkpoints else "no checkpoint was saved"
        raise TrainingError(f"the weight {name} holds NaN or infinity, so it is not saved ({where}): "
                            "lower --lr, --head-lr or --weight-decay, or use --precision fp32")


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
