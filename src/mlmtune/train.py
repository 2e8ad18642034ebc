"""`mlmtune train`: fit(config) -> results. The recipe, in phases:

  1. prepare_data     read, deduplicate, split, cut; mask the evaluation set once
  2. build_model      model, optimizer, schedule (by steps, or by a --max-time budget)
  3. warm_start       score the fresh model, then warm-start a grown head and score it again
  4. take_output_dir  only now is anything written: clear (--overwrite), run.json, Accelerate's prepare
  5. restore          --resume: the newest complete checkpoint
  6. train            the loop; `train_step` is one optimizer step
  7. finish           final evaluation, finite-weight check, the model in the Hugging Face layout, its card;
                      then --push-to-hub uploads the complete folder

Phases 1-3 write nothing, so bad input, a signal or a failure there leaves the output folder as it
was. The components they use live in data (chunking, streaming, batching, masking), modeling,
warmstart, schedule, checkpoints, outputs and runtime.
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch

from .batching import Batch, epoch_order, eval_batches, make_batch, process_batches
from .checkpoints import check_same_data, checkpoint_to_resume, complete_checkpoints, load_checkpoint, save_checkpoint
from .chunking import check_lengths, fingerprint, splits_from_config
from .config import Config, build_config, to_command, validate
from .errors import ConfigError, DataError, Interrupted, OutputError, TrainingError
from .masking import Masker, MaskingSpec
from .metrics import EvalResult, MetricsLog, evaluate_batches, utc_iso
from .modeling import (MaskedLMObjective, load_masked_lm, load_tokenizer, masked_positions_head, max_positions,
                       use_training_attention)
from .outputs import (_read_json, atomic_write_json, check_output_dir, discard, finite_json, first_missing, put_back,
                      remove_created_folders, remove_temporaries, run_inputs, save_model, set_aside_old_run, undo_new_run, versions,
                      write_problem, writing)
from .runtime import (SIGNAL_EXIT, AbortOnSignal, StopFlag, build_optimizer, check_tracker, make_accelerator,
                      peak_rss_mb, shutdown, start_tracker)
from .schedule import build_scheduler, parse_duration, set_progress
from .streaming import StreamingData, open_documents, stream_batches
from . import continuation, warmstart
from .sentence import keep_sentence_encoder, write_sentence_files
from .card import write_card
from .hub import check_hub_access, push

__all__ = ["fit", "train", "build_optimizer", "make_accelerator"]


def fit(cfg: Config) -> dict:
    """Validate, check the output folder, then run the recipe. A new run that fails before it has a
    checkpoint or a final model leaves nothing behind; a failed write is one error line."""
    started = time.perf_counter()
    validate(cfg)
    check_tracker(cfg.report_to)
    check_hub_access(cfg.push_to_hub)  # offline or no token: say so before training, not after
    out = Path(os.path.expanduser(cfg.output_dir))
    check_output_dir(out, overwrite=cfg.overwrite, resume=cfg.resume, inputs=run_inputs(cfg))
    resume_from = checkpoint_to_resume(cfg, out) if cfg.resume else None
    created = first_missing(out)  # what a failed new run removes again
    recipe = None
    try:
        with AbortOnSignal():
            recipe = Recipe(cfg, out, resume_from, started)
            return recipe.run()
    except BaseException as exc:
        if os.environ.get("RANK", "0") == "0" and recipe is not None and recipe.taken:
            remove_temporaries(out)
            if not cfg.resume:
                undo_new_run(out, created)
        elif os.environ.get("RANK", "0") == "0" and out.is_dir():  # not started: only what it created, if empty
            remove_temporaries(out)
            remove_created_folders(out, created)
        problem = write_problem(exc, out) if isinstance(exc, OSError) else None
        if problem is not None:
            raise OutputError(f"cannot write into {out}: {problem}; free space or fix the permissions, or choose "
                              "another --output-dir") from None
        raise


def train(config: Config | dict | None = None, **overrides) -> dict:
    """Python API: `mlmtune.train(model="minilm", data=["bbc-news"], max_steps=100)`."""
    base = config.to_dict() if isinstance(config, Config) else dict(config or {})
    return fit(build_config(base, overrides))


class Recipe:
    """One training run. Each phase is a method; `run` calls them in order."""

    def __init__(self, cfg: Config, out: Path, resume_from: Path | None, started: float):
        self.cfg, self.out, self.resume_from, self.started = cfg, out, resume_from, started
        # --resume: the run.json being continued, read once (its words, budget and plan are checked against it)
        self.saved_run = _read_json(out / "run.json") if cfg.resume else None
        self.accelerator = make_accelerator(cfg, out)
        self.say = self.accelerator.print
        self.main = self.accelerator.is_main_process
        self.world = self.accelerator.num_processes
        self.device = self.accelerator.device
        self.taken = False  # phase 4 reached: the output folder is this run's
        self.budget = parse_duration(cfg.max_time) if cfg.max_time else None
        self.started_at = time.time()  # wall clock, for results.json's started_at
        self.counters = {"tokens": 0, "train_seconds": 0.0, "eval_seconds": 0.0, "warm_seconds": 0.0,
                         "budget_spent": 0.0, "baseline_perplexity": None, "warm_start_perplexity": None,
                         "baseline_accuracy": None, "base_word": None}
        self.pending: list[dict] = []  # evaluations made before the folder was taken
        self.last_eval: EvalResult | None = None
        self.last_eval_step = -1
        self.step = 0
        self.resumed_at: int | None = None
        self.grad_norm = None  # of the last optimizer step
        self.last_word = None  # the last masked-word measure (--add-tokens)

    def run(self) -> dict:
        self.prepare_data()
        self.build_model()
        if self.resume_from is None:
            self.warm_start()
        self.take_output_dir()
        if self.resume_from is not None:
            self.restore()
        self.train()
        return self.finish()

    # --- 1. data -------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        cfg, acc = self.cfg, self.accelerator
        self.tokenizer = load_tokenizer(cfg.model, cfg.tokenizer)
        limit = max_positions(cfg.model, self.tokenizer)
        self.vocabulary = documents = None
        if cfg.add_tokens is not None:  # before tokenizing: the training text is cut with the new words
            documents = self.add_vocabulary(limit)
        self.train_masker = Masker(self.tokenizer, MaskingSpec(cfg.mlm_probability, cfg.mask_replace_prob,
                                                               cfg.random_replace_prob, cfg.whole_word_mask))
        eval_masker = Masker(self.tokenizer, MaskingSpec(cfg.eval_mlm_probability, cfg.mask_replace_prob,
                                                         cfg.random_replace_prob, cfg.whole_word_mask))
        if cfg.report:  # the report fills the probes' masks after training: check them before
            for probe in cfg.probe:
                if "[MASK]" not in probe and self.tokenizer.mask_token not in probe:
                    raise ConfigError(f"--probe {probe!r} has no [MASK]: write [MASK] where a word should be filled in")
        self.stream, self.train_blocks = None, None
        if cfg.streaming:
            check_lengths(cfg, limit)
            self.stream = StreamingData(
                open_documents(cfg.data, split=cfg.data_split, text_column=cfg.text_column, encoding=cfg.encoding,
                               line_by_line=cfg.line_by_line),
                self.tokenizer, chunk_size=cfg.chunk_size, line_by_line=cfg.line_by_line,
                max_length=cfg.max_length or limit, eval_size=cfg.eval_size, seed=cfg.seed,
                eval_stream=open_eval_stream(cfg) if cfg.eval_data else None)
            eval_blocks = self.stream.eval
            self.summary = {"streaming": True, "holdout": "eval-data" if cfg.eval_data else "stream head",
                            "eval_documents": self.stream.eval_documents,
                            "eval_examples": len(eval_blocks), "eval_tokens": eval_blocks.num_tokens,
                            "eval_fingerprint": fingerprint(eval_blocks)}
            self.steps_per_epoch = 0  # unknown: a stream has no length
        else:
            splits = splits_from_config(cfg, self.tokenizer, limit, documents=documents)
            eval_blocks, self.train_blocks, self.summary = splits.eval, splits.train, splits.summary()
            self.steps_per_epoch = len(self.train_blocks) // (cfg.batch_size * self.world) // cfg.gradient_accumulation_steps
            if self.steps_per_epoch == 0:
                needed = cfg.batch_size * self.world * cfg.gradient_accumulation_steps
                fix = (f"raise --train-size to at least {needed} or lower --batch-size"
                       if cfg.train_size is not None and cfg.train_size < needed else "lower --batch-size or add text")
                raise ConfigError(
                    f"{len(self.train_blocks)} training examples make no full optimizer step of {cfg.batch_size} x "
                    f"{self.world} processes x {cfg.gradient_accumulation_steps} accumulation: {fix}")
            if self.summary.get("duplicates_dropped"):
                self.say(f"note: dropped {self.summary['duplicates_dropped']:,} repeated documents before the split, "
                         "so no evaluation text is also training text")
        if cfg.resume:
            check_same_data(self.out, self.resume_from, self.summary)
        # By steps (--max-steps, or --epochs) unless a --max-time budget alone decides.
        if cfg.max_steps is not None:
            self.total_steps = cfg.max_steps
        elif self.budget is not None:
            self.total_steps = None
        else:
            self.total_steps = cfg.epochs * self.steps_per_epoch
        if self.resume_from is not None:  # training further is fine, a total below what is done is not
            from .checkpoints import read_state

            state = read_state(self.resume_from)
            planned = self.saved_run.get("max_time_seconds")
            continuation.check_not_shorter(done_steps=int(state["step"]), total_steps=self.total_steps,
                                           spent=float(state.get("budget_spent", 0.0)), budget=self.budget,
                                           planned_budget=planned, by_time=self.total_steps is None, cfg=cfg)
        self.say(data_line(self.summary, cfg, world=self.world, steps_per_epoch=self.steps_per_epoch))
        if self.summary.get("lines_truncated"):
            where = f"--max-length {cfg.max_length}" if cfg.max_length else f"the model's {limit} tokens"
            self.say(f"note: --line-by-line cut {self.summary['lines_truncated']:,} of {self.summary['documents']:,} "
                     f"lines at {where} (what lies beyond is not trained on)")
        self.prepare_seconds = time.perf_counter() - self.started

        # the evaluation set, masked once and kept
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.multiple = 8 if cfg.line_by_line else 1
        self.eval_set = eval_batches(eval_blocks, eval_masker, seed=cfg.seed,
                                     batch_size=cfg.eval_batch_size or 2 * cfg.batch_size, pad_id=self.pad_id,
                                     pad_to_multiple_of=self.multiple, rank=acc.process_index, world=self.world)
        masked = acc.reduce(torch.tensor(float(sum(b.n_masked for b in self.eval_set)), device=self.device), "sum")
        if masked == 0:
            raise DataError(f"the fixed evaluation masks chose no token of the {eval_blocks.num_tokens:,} evaluation "
                            f"tokens (--eval-mlm-probability {cfg.eval_mlm_probability:g}): raise it (0.15 is the "
                            "standard) or --eval-size")

    def add_vocabulary(self, limit: int):
        """--add-tokens: choose the words on the training documents, add them to the tokenizer, measure the
        pieces per word before and after, and prepare the masked-word evaluation (vocabulary-independent)
        with the old and the new tokenizer. Nothing is written; the model rows follow in build_model.
        Returns the documents it read, which the data step then cuts (not read twice)."""
        from . import vocab, wordeval
        from .chunking import documents_from_config

        cfg = self.cfg
        vocab.check_same_tokenizer(cfg.model, cfg.tokenizer, self.tokenizer)
        cutter = vocab.WordCutter(self.tokenizer)
        vocab.check_wordpiece(self.tokenizer, cfg.model)
        n = vocab.parse_count(cfg.add_tokens)
        chosen = None if n is not None else vocab.read_word_file(os.path.expanduser(cfg.add_tokens), cutter)
        documents = documents_from_config(cfg)  # --data, and --eval-data as its evaluation documents
        training, heldout = vocab.split_texts(documents, eval_fraction=cfg.eval_fraction, seed=cfg.seed)
        counts = vocab.count_words(cutter, training)
        if chosen is None:
            chosen = vocab.choose_words(cutter, counts, n, cfg.min_count)
        before = vocab.summarize(cutter, counts, model=cfg.model, documents=0, top=0, min_count=1).pieces_per_word
        after = vocab.summarize(cutter, counts, model=cfg.model, documents=0, top=0, min_count=1,
                                added={c.word for c in chosen}).pieces_per_word
        base_tokenizer = load_tokenizer(cfg.model, cfg.tokenizer)  # kept as it was: the base is scored with it
        added = vocab.add_to_tokenizer(self.tokenizer, chosen)
        self.vocabulary = {"words": added.words, "pieces": added.pieces, "first_id": added.first_id,
                           "base_size": added.first_id, "pieces_per_word_before": round(before, 4),
                           "pieces_per_word_after": round(after, 4)}
        if cfg.resume:
            self.check_same_vocabulary()
        self.word_sets = wordeval.prepare(heldout, [base_tokenizer, self.tokenizer], seed=cfg.seed, max_length=limit)
        short = f" (only {len(chosen)} words of the {n} asked for are cut into pieces and seen at least " \
                f"{cfg.min_count} times)" if n is not None and len(chosen) < n else ""
        self.say(f"vocabulary: added {len(chosen)} words{short}; pieces per word of the training text "
                 f"{before:.3f} -> {after:.3f} ({(before - after) / before:.1%} fewer tokens)")
        if not heldout or self.word_sets[0].n_words == 0:
            self.say("note: no held-out whole documents, so no masked-word measure: its evaluation needs 10 documents "
                     "or more")
        return documents

    def check_same_vocabulary(self) -> None:
        """--resume needs the same added words, in the same order, as run.json records."""
        recorded = (self.saved_run.get("vocabulary") if isinstance(self.saved_run, dict) else None) or {}
        words = recorded.get("words") if isinstance(recorded, dict) else None
        if words != self.vocabulary["words"]:
            differ = "no list" if words is None else next(
                (f"word {i + 1} was {a!r}, now {b!r}" for i, (a, b) in enumerate(zip(words, self.vocabulary["words"]))
                 if a != b), f"{len(words)} words, now {len(self.vocabulary['words'])}")
            from .errors import CheckpointError

            raise CheckpointError(f"--resume with other added words than the run's (run.json: {differ}): resume with "
                                  "the same --add-tokens words, or start a new run")

    def micro_batches(self, first_step: int, *, rank: int | None = None, world: int | None = None,
                      batch_size: int | None = None, stream_id: int | None = None):
        """Micro-batches from optimizer step `first_step` on, epoch after epoch (this process's slice
        unless rank/world/batch_size say otherwise)."""
        cfg = self.cfg
        rank = self.accelerator.process_index if rank is None else rank
        world = self.world if world is None else world
        batch_size = cfg.batch_size if batch_size is None else batch_size
        accum = cfg.gradient_accumulation_steps
        if self.stream is not None:
            start_block = first_step * accum * batch_size * world
            for blocks, ids in stream_batches(self.stream, start_block=start_block, batch_size=batch_size,
                                              rank=rank, world=world):
                yield make_batch(blocks, np.arange(len(ids)), self.train_masker, seed=cfg.seed,
                                 stream=0 if stream_id is None else stream_id, pad_id=self.pad_id,
                                 pad_to_multiple_of=self.multiple, sample_ids=ids)
            return
        epoch, skip = divmod(first_step, self.steps_per_epoch)
        lengths = self.train_blocks.lengths if cfg.line_by_line else None
        while True:
            order = epoch_order(len(self.train_blocks), seed=cfg.seed, epoch=epoch, lengths=lengths,
                                global_batch=batch_size * world)
            mine = process_batches(order, batch_size=batch_size, rank=rank, world=world)
            for indices in mine[skip * accum:self.steps_per_epoch * accum]:
                yield make_batch(self.train_blocks, indices, self.train_masker, seed=cfg.seed,
                                 stream=epoch if stream_id is None else stream_id, pad_id=self.pad_id,
                                 pad_to_multiple_of=self.multiple)
            epoch, skip = epoch + 1, 0

    # --- 2. model, optimizer, schedule ---------------------------------------------------------

    def build_model(self) -> None:
        cfg = self.cfg
        self.loaded = load_masked_lm(cfg.model, seed=cfg.seed,
                                     tokenizer=self.tokenizer if self.vocabulary is None else None)
        if self.loaded.new_parameters:
            self.say(f"note: {cfg.model} has no MLM head; created one ({len(self.loaded.new_parameters)} new tensors, "
                     f"decoder tied to the word embeddings), trained at --head-lr {cfg.head_lr:g}")
        if cfg.dropout is not None:  # the modules only: config.json keeps the model's own dropout
            for module in self.loaded.model.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = cfg.dropout
        use_training_attention(self.loaded.model, self.device)
        self.loaded.model.to(self.device)
        if self.vocabulary is not None:
            self.add_vocabulary_rows()
        self.objective = MaskedLMObjective(self.loaded.model)
        self.optimizer = build_optimizer(self.objective.model, lr=cfg.lr, head_lr=cfg.head_lr,
                                         weight_decay=cfg.weight_decay, new_parameters=self.loaded.new_parameters)
        if self.vocabulary is not None:  # before the schedule: the groups' lr are still their peak
            from .vocab import NewRowsLearningRate

            self.new_rows_lr = NewRowsLearningRate(self.optimizer, self.loaded.model,
                                                   list(range(self.vocabulary["first_id"], len(self.tokenizer))),
                                                   cfg.new_token_lr if cfg.new_token_lr is not None else cfg.head_lr)
        self.scheduler = build_scheduler(self.optimizer, total_steps=self.total_steps,
                                         warmup_steps=cfg.warmup_steps, warmup_ratio=cfg.warmup_ratio)
        if cfg.compile:
            self.objective = torch.compile(self.objective)

    def add_vocabulary_rows(self) -> None:
        """Score the base model with its own tokenizer on the masked words (once, not on --resume), then
        grow the embeddings, the tied decoder and the bias by the new words, each row the mean of its pieces."""
        from . import vocab, wordeval

        model = self.loaded.model
        if self.resume_from is None and self.word_sets[0].n_words:
            base = wordeval.score(model, self.word_sets[0], self.device, self.accelerator.autocast)
            self.counters["base_word"] = base.record()
            self.pending.append(finite_json({"type": "base_vocabulary", "step": 0, **base.record(),
                                             "vocabulary_size": self.vocabulary["first_id"], "time": time.time()}))
            self.say(f"eval before adding words: masked words {base.bits_per_char:.4f} bits/char, "
                     f"{base.word_accuracy:.1%} exact on {base.masked_words:,} words")
        v = self.vocabulary
        vocab.add_to_model(model, vocab.AddedWords(v["words"], v["pieces"], v["first_id"]), len(self.tokenizer))

    # --- 3. baseline and warm start (nothing written yet) ---------------------------------------

    def warm_start(self) -> None:
        cfg, acc = self.cfg, self.accelerator
        with acc.autocast():  # the same precision the prepared model will evaluate in
            baseline = self.evaluate(0, "before training")
        self.counters["baseline_perplexity"], self.counters["baseline_accuracy"] = baseline.perplexity, baseline.accuracy
        if not self.loaded.new_parameters or cfg.head_init == "random":
            if cfg.head_init in ("warm", "prefit"):
                self.say(f"note: {cfg.model} has its own MLM head, so --head-init {cfg.head_init} leaves it as it is")
            return
        # The bias alone is the default: at equal wall-clock time the pre-fit bought nothing on top
        # of it (minilm, bbc-news, 150 s: perplexity 139.0 with it, 139.1 without; benchmarks/README.md).
        prefit = cfg.head_init == "prefit"
        t0 = time.perf_counter()
        # Every process takes the same whole global batches (rank 0 of 1), so the heads agree and do
        # not depend on how the global batch is split.
        global_batch = cfg.batch_size * self.world
        batches = self.micro_batches(0, rank=0, world=1, batch_size=global_batch, stream_id=10**6)
        n = -(-warmstart.PREFIT_EXAMPLES // global_batch) if prefit and warmstart.PREFIT_PASSES > 0 else 0
        picked = [next(batches) for _ in range(n)]
        if self.train_blocks is not None:
            tokens = self.train_blocks.tokens
        else:  # a stream: count the original tokens of 64 global batches (masked ones from their labels)
            sample = picked + [next(batches) for _ in range(max(0, 64 - len(picked)))]
            tokens = np.concatenate([torch.where(b.labels >= 0, b.labels, b.input_ids)[b.attention_mask.bool()].numpy()
                                     for b in sample])
        model = self.loaded.model
        report = warmstart.warm_start_head(model, masked_positions_head(model), self.loaded.new_parameters, tokens=tokens,
                                 special_ids=list(self.tokenizer.all_special_ids), batches=picked,
                                 device=self.device, autocast=acc.autocast, seed=cfg.seed,
                                 passes=None if prefit else 0)
        self.counters["warm_seconds"] = time.perf_counter() - t0
        self.counters["budget_spent"] = self.counters["warm_seconds"]  # the warm start counts against --max-time
        with acc.autocast():
            result = self.evaluate(0, "after the warm start", kind="warm_start")
        self.counters["warm_start_perplexity"] = result.perplexity
        self.last_eval_step = -1  # the model changed since the fresh head's score: finish scores it again
        detail = (f" and a head pre-fit on {report.features:,} cached features (loss {report.loss_before:.2f} -> "
                  f"{report.loss_after:.2f})") if report.features else ""
        self.say(f"warm start: unigram output bias{detail}, {self.counters['warm_seconds']:.1f} s")

    def evaluate(self, step: int, when: str, kind: str = "eval", log: bool = True) -> EvalResult:
        """Score the fixed evaluation masks; record the result in metrics.jsonl (or keep it until the
        folder is taken)."""
        t0 = time.perf_counter()
        result = evaluate_batches(self.objective, self.eval_set, self.device,
                                  reduce=lambda t: self.accelerator.reduce(t, "sum"))
        seconds = time.perf_counter() - t0
        self.counters["eval_seconds"] += seconds
        epoch = step / self.steps_per_epoch if self.steps_per_epoch else 0.0
        record = {"type": kind, "step": step, "epoch": round(epoch, 4), **result.as_dict(),
                  "seconds": round(seconds, 3), "time": time.time()}
        if self.vocabulary is not None and self.word_sets[1].n_words:  # the vocabulary-independent measure
            record.update(self.word_record())
        if log:
            self.pending.append(finite_json(record))
            self.flush_metrics()
        if self.cfg.report_to != "none" and self.taken:
            self.accelerator.log({"eval/perplexity": result.perplexity, "eval/accuracy": result.accuracy,
                                  "eval/loss": result.loss}, step=step)
        words = (f"; masked words {record['word_bits_per_char']:.4f} bits/char, {record['word_accuracy']:.1%} exact"
                 if "word_bits_per_char" in record else "")
        self.say(f"eval {when}: perplexity {result.perplexity:,.2f}, accuracy {result.accuracy:.1%} "
                 f"on {result.masked_tokens:,} masked tokens{words}")
        if kind == "eval":
            self.last_eval, self.last_eval_step = result, step
        return result

    def word_record(self) -> dict:
        from . import wordeval

        words = wordeval.score(self.bare_objective().model, self.word_sets[1], self.device, self.accelerator.autocast)
        self.last_word = words.record()
        return self.last_word

    def bare_objective(self) -> MaskedLMObjective:
        """The objective without Accelerate's (DDP) or torch.compile's wrapper."""
        return self.accelerator.unwrap_model(self.objective, keep_torch_compile=False)

    def flush_metrics(self) -> None:
        if self.taken:
            for record in self.pending:
                self.metrics.write(record)
            self.pending = []

    # --- 4. the output folder becomes this run's ------------------------------------------------

    def take_output_dir(self) -> None:
        """--overwrite sets the earlier run aside (renames) and puts it back if the new run cannot
        start (a tracker that fails, a full disk); it is deleted once run.json is written."""
        cfg, acc, out = self.cfg, self.accelerator, self.out
        aside = None
        if self.main:
            with writing("the run's files", out):
                out.mkdir(parents=True, exist_ok=True)
                remove_temporaries(out)  # of a save an earlier run had cut short
                if cfg.overwrite:
                    aside = set_aside_old_run(out)
        try:
            acc.wait_for_everyone()
            self.objective, self.optimizer, self.scheduler = acc.prepare(self.objective, self.optimizer,
                                                                         self.scheduler)
            start_tracker(acc, cfg, out.name)
            if self.main and not cfg.resume:
                with writing("run.json", out):
                    atomic_write_json(out / "run.json", self.run_record())
        except BaseException:
            if self.main:
                put_back(aside, out)
            raise
        self.taken = True
        discard(aside)
        self.metrics = MetricsLog(out / "metrics.jsonl", enabled=self.main)
        self.flush_metrics()

    def run_record(self) -> dict:
        return {
            # run.json is a config for later runs (--config): never one that overwrites or resumes by itself
            "config": {**self.cfg.to_dict(), "overwrite": False, "resume": False},
            "versions": versions(),
            "processes": self.world,
            "device": str(self.device),
            "mixed_precision": self.accelerator.mixed_precision,
            "data": self.summary,
            "new_parameters": self.loaded.new_parameters,
            **({"vocabulary": self.vocabulary} if self.vocabulary is not None else {}),
            "total_steps": self.total_steps,
            "max_time_seconds": self.budget,
            "steps_per_epoch": self.steps_per_epoch,
            "command": to_command(self.cfg),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    # --- 5. resume -------------------------------------------------------------------------------

    def restore(self) -> None:
        state = load_checkpoint(self.accelerator, self.resume_from)
        self.step = self.resumed_at = int(state["step"])
        self.counters.update({k: state.get(k, v) for k, v in self.counters.items()})
        self.metrics.truncate_after(self.step)
        goal = f"of {self.total_steps}" if self.total_steps else \
            f"with {max(0.0, self.budget - self.counters['budget_spent']):.0f} s of the budget left"
        self.say(f"resumed from {self.resume_from} at step {self.step} {goal}")
        self.continue_plan()

    def continue_plan(self) -> None:
        """--resume with another total (a larger --max-steps, --epochs or --max-time): the schedule
        built for the new total takes over at the step reached, and run.json records both totals."""
        record = self.saved_run
        if not continuation.plan_changed(record, self.total_steps, self.budget):
            return
        rates = continuation.restart_schedule(self.scheduler, spent=self.counters["budget_spent"], budget=self.budget)
        before = (f"{record.get('total_steps')} steps" if record.get("total_steps") is not None
                  else f"a {record.get('max_time_seconds'):g} s budget")
        now = f"{self.total_steps} steps" if self.total_steps is not None else f"a {self.budget:g} s budget"
        self.say(f"training further: planned for {before}, now {now}; the learning rate follows a linear schedule "
                 f"rebuilt for {now}, {rates[0]:.3g} from here")
        if self.main:
            with writing("run.json", self.out):
                atomic_write_json(self.out / "run.json", continuation.continue_record(
                    record, self.cfg, at_step=self.step, total_steps=self.total_steps, budget=self.budget))

    def checkpoint(self, step: int) -> Path:
        check_finite_weights(dict(self.bare_objective().named_parameters()), complete_checkpoints(self.out))
        with writing(f"the checkpoint of step {step}", self.out):
            return save_checkpoint(self.accelerator, self.out, step,
                                   {**self.counters, "config": self.cfg.to_dict(), "data": self.summary},
                                   self.cfg.keep_checkpoints)

    # --- 6. the loop -----------------------------------------------------------------------------

    def finished(self, step: int) -> bool:
        """Every process must decide alike: the budget is judged on the spent time they agreed on."""
        if self.total_steps is not None and step >= self.total_steps:
            return True
        return self.budget is not None and self.budget_agreed >= self.budget

    def train_step(self, micro: list[Batch], stop: StopFlag, t0: float) -> tuple[float, int, bool]:
        """One optimizer step over `accum` micro-batches. The loss is the NLL summed over the masked
        tokens of all of them on all processes, divided by their number, so it does not depend on
        how the global batch is split. DDP averages gradients over processes and Accelerate divides
        by `accum`, hence `* world * accum`. Returns (summed NLL, masked tokens, stop requested)."""
        acc, objective, optimizer, device = self.accelerator, self.objective, self.optimizer, self.device
        world, accum = self.world, len(micro)
        n_masked = acc.reduce(torch.tensor(float(sum(b.n_masked for b in micro)), device=device), "sum")
        step_nll = torch.zeros((), device=device)
        for b in micro:
            b = b.to(device)
            with acc.accumulate(objective):  # gradients sync on the last micro-batch only
                nll, _ = objective(b.input_ids, b.attention_mask, b.labels)
                acc.backward(nll * (world * accum) / n_masked.clamp(min=1))
            step_nll += nll.detach()
        # Agree on the loss, on stopping (a signal may reach one process only) and on the budget
        # spent; float() waits for the device, once per step, so a NaN never reaches the weights.
        spent = self.counters["budget_spent"] + (time.perf_counter() - t0)
        flags = acc.reduce(torch.stack([step_nll.float(), torch.tensor(float(stop.signum or 0), device=device),
                                        torch.tensor(spent, device=device)]), "sum")
        nll_sum, stop_requested, agreed_spent = float(flags[0]), bool(flags[1] > 0), float(flags[2]) / world
        agreed_at, self.budget_agreed = time.perf_counter(), agreed_spent
        if not math.isfinite(nll_sum):
            optimizer.zero_grad(set_to_none=True)
            kept = complete_checkpoints(self.out)
            where = f"the last good checkpoint is {kept[-1]}" if kept else "no checkpoint was saved"
            raise TrainingError(f"loss is {nll_sum} at step {self.step}; {where}: lower --lr or --head-lr, "
                                "or use --precision fp32")
        # clip_grad_norm_ returns the total norm before clipping (an infinite bound only measures it)
        grad_norm = acc.clip_grad_norm_(objective.parameters(), self.cfg.max_grad_norm or math.inf)
        optimizer.step()
        if self.total_steps is None:  # a time budget: the schedule follows the share spent
            set_progress(self.scheduler, agreed_spent / self.budget)
        if not acc.optimizer_step_was_skipped:  # fp16: the grad scaler skips inf steps
            self.scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        # the optimizer's time counts too; each process adds its own, the next step's reduce averages
        self.counters["budget_spent"] = agreed_spent + (time.perf_counter() - agreed_at)
        self.grad_norm = grad_norm  # a tensor: read when logged, so no extra wait for the device
        return nll_sum, int(n_masked), stop_requested

    def train(self) -> None:
        from tqdm.auto import tqdm

        cfg, out = self.cfg, self.out
        accum, spe = cfg.gradient_accumulation_steps, self.steps_per_epoch
        by_time = self.total_steps is None
        bar = tqdm(total=round(self.budget) if by_time else self.total_steps,
                   initial=min(self.counters["budget_spent"], self.budget) if by_time else self.step,
                   disable=not self.main, desc="train", unit="s" if by_time else "step", dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]" if by_time else None)
        window = {"nll": 0.0, "masked": 0, "tokens": 0, "seconds": 0.0}
        data = self.micro_batches(self.step)
        # the warm start's seconds differ a little between processes: agree on them before the first check
        spent = torch.tensor(float(self.counters["budget_spent"]), device=self.device)
        self.budget_agreed = float(self.accelerator.reduce(spent, "sum")) / self.world
        self.objective.train()
        with StopFlag() as stop, bar:
            while not self.finished(self.step):
                self.step += 1
                step = self.step
                t0 = time.perf_counter()
                before = self.counters["budget_spent"]
                micro = [next(data) for _ in range(accum)]
                nll_sum, n_masked, stop_requested = self.train_step(micro, stop, t0)
                # account and log
                dt = time.perf_counter() - t0
                tokens = sum(b.n_tokens for b in micro) * self.world
                self.counters["tokens"] += tokens
                self.counters["train_seconds"] += dt
                for key, value in (("nll", nll_sum), ("masked", n_masked), ("tokens", tokens), ("seconds", dt)):
                    window[key] += value
                bar.update(min(self.counters["budget_spent"], self.budget) - min(before, self.budget) if by_time else 1)
                last = self.finished(step)
                if step % cfg.log_every == 0 or last:
                    loss = window["nll"] / max(window["masked"], 1)
                    tps = window["tokens"] / max(window["seconds"], 1e-9)
                    bar.set_postfix(step=step, loss=f"{loss:.3f}", tok_s=f"{tps:,.0f}")
                    grad_norm = float(self.grad_norm) if self.grad_norm is not None else None
                    self.metrics.write(finite_json({
                        "type": "train", "step": step, "epoch": round(step / spe, 4) if spe else 0.0,
                        "loss": loss, "lr": self.scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                        "tokens_per_second": tps, "masked_tokens": window["masked"], "time": time.time()}))
                    if cfg.report_to != "none":
                        self.accelerator.log({"train/loss": loss, "train/tokens_per_second": tps,
                                              "train/lr": self.scheduler.get_last_lr()[0],
                                              **({"train/grad_norm": grad_norm} if grad_norm is not None else {})},
                                             step=step)
                    window = {"nll": 0.0, "masked": 0, "tokens": 0, "seconds": 0.0}
                # evaluate and checkpoint when due
                epoch_end = spe > 0 and step % spe == 0
                if epoch_end or last or (cfg.eval_every and step % cfg.eval_every == 0):
                    bar.clear()
                    self.evaluate(step, f"step {step}" + (f" (epoch {step / spe:.2f})" if spe else ""))
                if stop_requested or epoch_end or last or (cfg.save_every and step % cfg.save_every == 0):
                    path = self.checkpoint(step)
                if stop_requested:
                    signum = signal.SIGTERM if (stop.signum or signal.SIGTERM) == signal.SIGTERM else signal.SIGINT
                    raise Interrupted(
                        f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint saved in {path}. "
                        f"Resume with: mlmtune train --config {out / 'run.json'} --resume", SIGNAL_EXIT[signum])

    # --- 7. finish ---------------------------------------------------------------------------------

    def finish(self) -> dict:
        acc, cfg, out, counters = self.accelerator, self.cfg, self.out, self.counters
        if self.last_eval_step != self.step:  # no step ran in this session (a finished run resumed: its last
            # eval is logged already; or a budget the warm start spent: its model is scored and logged here)
            self.evaluate(self.step, f"step {self.step}", log=self.resumed_at is None)
            if self.resumed_at is None:
                self.say("note: the warm start spent the whole --max-time budget, so no training step ran: "
                         "give a larger budget")
        state_dict = acc.get_state_dict(self.objective)
        results = {
            "steps": self.step,
            "max_time_seconds": self.budget,
            "train_tokens": counters["tokens"],
            "train_seconds": round(counters["train_seconds"], 3),
            "train_tokens_per_second": counters["tokens"] / max(counters["train_seconds"], 1e-9),
            "warm_start_seconds": round(counters["warm_seconds"], 3),
            "budget_seconds_spent": round(counters["budget_spent"], 3),
            "eval_seconds": round(counters["eval_seconds"], 3),
            "prepare_seconds": round(self.prepare_seconds, 3),  # this session: reading, tokenizing, cutting
            "wall_seconds": round(time.perf_counter() - self.started, 3),  # this session, up to the final save
            "baseline_perplexity": counters["baseline_perplexity"],
            "baseline_accuracy": counters["baseline_accuracy"],
            "warm_start_perplexity": counters["warm_start_perplexity"],
            "eval_perplexity": self.last_eval.perplexity,
            "eval_accuracy": self.last_eval.accuracy,
            "eval_masked_tokens": self.last_eval.masked_tokens,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "processes": self.world,
            "precision": acc.mixed_precision,
        }
        # this session's start and its end, before the final save (wall_seconds spans the same)
        results.update(started_at=utc_iso(self.started_at), finished_at=utc_iso())
        if self.vocabulary is not None:  # the vocabulary-independent measure, before adding words and now
            results.update({"added_tokens": len(self.vocabulary["words"]),
                            "pieces_per_word_before": self.vocabulary["pieces_per_word_before"],
                            "pieces_per_word_after": self.vocabulary["pieces_per_word_after"],
                            "base_word_bits_per_char": (counters.get("base_word") or {}).get("word_bits_per_char"),
                            "base_word_accuracy": (counters.get("base_word") or {}).get("word_accuracy"),
                            **(self.last_word or {})})
        if self.main:
            inner = self.bare_objective()
            # Keys of the objective's state dict are "model.<hf key>" ("_orig_mod." inserted by compile).
            model_state = {k.replace("_orig_mod.", "").removeprefix("model."): v for k, v in state_dict.items()}
            check_finite_weights(model_state, complete_checkpoints(out))
            layout = keep_sentence_encoder(cfg.model, inner.model, model_state)
            with writing("the final model", out):
                results["files"] = save_model(inner.model, self.tokenizer, out, state_dict=model_state)
                if layout is not None:
                    results["files"] += write_sentence_files(layout, out)
                results["files"] += write_card(out, results=results, repo=cfg.push_to_hub, say=self.say)
                atomic_write_json(out / "results.json", results)
            self.say(f"saved the model to {out} (pipeline('fill-mask', model='{out}') loads it)")
        acc.wait_for_everyone()
        if cfg.report_to != "none":
            acc.end_training()
        if self.main and cfg.report:
            from .report import write_report

            write_report(out, base_model=cfg.model, probes=cfg.probe, say=self.say)
        shutdown(acc)
        if self.main and cfg.push_to_hub:  # the folder is complete: a failed upload loses nothing
            push(out, cfg.push_to_hub, say=self.say)
        return results


def open_eval_stream(cfg: Config):
    """--eval-data as a stream (beside a streamed --data), its reading errors naming --eval-data."""
    from .corpus import as_eval_source

    try:
        return open_documents(cfg.eval_data, split=cfg.data_split, text_column=cfg.text_column,
                              encoding=cfg.encoding, line_by_line=cfg.line_by_line)
    except DataError as exc:
        source = next((s for s in cfg.eval_data if f"--data {s}" in str(exc)), cfg.eval_data[0])
        raise as_eval_source(exc, source) from None


def data_line(summary: dict, cfg: Config, *, world: int, steps_per_epoch: int) -> str:
    """The data summary `train` prints before anything else happens."""
    unit = "lines" if cfg.line_by_line else f"blocks of {cfg.chunk_size} tokens"
    held = {"eval-data": "from --eval-data", "split": f"from --eval-split {cfg.eval_split}",
            "documents": "held out as whole documents", "tail": "the tail of the text",
            "stream head": "the first documents of the stream"}.get(summary.get("holdout"), "")
    global_batch = cfg.batch_size * world * cfg.gradient_accumulation_steps
    batch = (f"global batch of {global_batch} ({cfg.batch_size} per process x {world} process"
             f"{'es' if world > 1 else ''} x {cfg.gradient_accumulation_steps} accumulation)")
    evaluation = (f"{summary['eval_examples']:,} evaluation {unit} ({summary['eval_tokens']:,} tokens, {held})")
    if summary.get("streaming"):
        return f"data: streamed; {evaluation}, from {summary['eval_documents']:,} documents; {batch}"
    repeats = f", {summary['duplicates_dropped']:,} repeats dropped" if summary.get("duplicates_dropped") else ""
    return (f"data: {summary['documents']:,} documents{repeats}; {summary['train_examples']:,} training {unit} "
            f"({summary['train_tokens']:,} tokens), {evaluation}; {steps_per_epoch:,} steps per epoch, {batch}")


def check_finite_weights(state: dict, checkpoints: list[Path]) -> None:
    """Never save a model with a NaN or infinite weight (a loss can stay finite while one goes bad)."""
    for name, tensor in state.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            where = f"the last good checkpoint is {checkpoints[-1]}" if checkpoints else "no checkpoint was saved"
            raise TrainingError(f"the weight {name} holds NaN or infinity, so it is not saved ({where}): "
                                "lower --lr, --head-lr or --weight-decay, or use --precision fp32")

