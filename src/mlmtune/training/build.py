"""Phases 2 and 3 of a run: the model, its optimizer and schedule; then, before training, the score of
the model as loaded and the warm start of a grown head. Nothing is written."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..config import Config
from ..data.streaming import StreamingData
from ..errors import ConfigError
from ..eval import words as wordeval
from ..model import warmstart
from ..model.load import LoadedModel, load_masked_lm, use_training_attention
from ..model.objective import MaskedLMObjective, full_logits_note, masked_positions_head
from ..model.vocabulary import NewRowsLearningRate
from .budget import Totals
from .evaluations import Evaluations
from .freeze import LowerLayersFrozen
from .optimizer import build_optimizer, build_scheduler
from .peers import first_process
from .prepare import Data
from .step import TrainState


@dataclass
class Trainable:
    """What the loop trains (Accelerate's `prepare` replaces the three with its wrappers)."""

    objective: MaskedLMObjective
    optimizer: torch.optim.Optimizer
    scheduler: object
    new_rows_lr: NewRowsLearningRate | None = None  # --new-token-lr's hooks on the optimizer
    freezer: LowerLayersFrozen | None = None  # --freeze-layers: told the run's progress before each step


@dataclass
class Baseline:
    """The scores before training, kept in checkpoints and results.json."""

    perplexity: float | None = None  # the model as loaded (a grown head: fresh)
    accuracy: float | None = None
    warm_start_perplexity: float | None = None  # a grown head after its warm start
    word: dict | None = None  # --add-tokens: the base on the masked words, with its own tokenizer

    def record(self) -> dict:
        return {"baseline_perplexity": self.perplexity, "warm_start_perplexity": self.warm_start_perplexity,
                "baseline_accuracy": self.accuracy, "base_word": self.word}

    @classmethod
    def restored(cls, saved: dict) -> "Baseline":
        return cls(saved.get("baseline_perplexity"), saved.get("baseline_accuracy"),
                   saved.get("warm_start_perplexity"), saved.get("base_word"))


def load_model(cfg: Config, accelerator, data: Data, say=print) -> LoadedModel:
    """The masked LM on the device; a missing MLM head grown (and said), --dropout applied."""
    loaded = load_masked_lm(cfg.model, seed=cfg.seed, tokenizer=data.tokenizer if data.vocabulary is None else None)
    if loaded.new_parameters:
        say(f"note: {cfg.model} has no MLM head; created one ({len(loaded.new_parameters)} new tensors, "
            f"decoder tied to the word embeddings), trained at --head-lr {cfg.head_lr:g}")
    if cfg.dropout is not None:  # the modules only: config.json keeps the model's own dropout
        for module in loaded.model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = cfg.dropout
    use_training_attention(loaded.model, accelerator.device)
    loaded.model.to(accelerator.device)
    note = full_logits_note(loaded.model)
    if note:
        say(note)
    return loaded


def score_base_words(model, words: wordeval.WordSet, accelerator, evaluations: Evaluations, *, vocabulary_size: int,
                     say=print) -> dict | None:
    """--add-tokens: the base model on the masked words, with its own tokenizer, before its rows grow."""
    if not words.n_words:
        return None
    base = wordeval.score(model, words, accelerator.device, accelerator.autocast)
    evaluations.record({"type": "base_vocabulary", "step": 0, **base.record(), "vocabulary_size": vocabulary_size,
                        "time": time.time()})
    say(f"eval before adding words: masked words {base.bits_per_char:.4f} bits/char, "
        f"{base.word_accuracy:.1%} exact on {base.masked_words:,} words")
    return base.record()


def stream_sample(cfg: Config, data: Data, global_batch: int, n: int) -> tuple[list, np.ndarray]:
    """A stream's warm-start sample: the prefit's first `n` global batches, and the original tokens of 64
    global batches (masked ones from their labels) for the unigram bias."""
    batches = data.batches(cfg, 0, rank=0, world=1, batch_size=global_batch, stream_id=10**6,
                           examples=data.train.unshared())
    picked = [next(batches) for _ in range(n)]
    sample = picked + [next(batches) for _ in range(max(0, 64 - len(picked)))]
    tokens = np.concatenate([torch.where(b.labels >= 0, b.labels, b.input_ids)[b.attention_mask.bool()].numpy()
                             for b in sample])
    return picked, tokens


def build_trainable(cfg: Config, loaded: LoadedModel, data: Data, totals: Totals, *, processes: int = 1) -> Trainable:
    """The objective (the masked-position forward), AdamW in its groups, the schedule by steps or by time."""
    if cfg.freeze_layers and processes > 1:  # DDP syncs only the parameters that took gradients when it wrapped
        raise ConfigError(f"--freeze-layers trains with one process, and this run has {processes}: drop "
                          "--freeze-layers or run one process")
    objective = MaskedLMObjective(loaded.model)
    optimizer = build_optimizer(objective.model, lr=cfg.lr, head_lr=cfg.head_lr, weight_decay=cfg.weight_decay,
                                new_parameters=loaded.new_parameters)
    new_rows_lr = None
    if data.vocabulary is not None:  # before the schedule: the groups' lr are still their peak
        new_rows_lr = NewRowsLearningRate(optimizer, loaded.model,
                                          list(range(data.vocabulary.first_id, len(data.tokenizer))), cfg.new_token_lr)
    scheduler = build_scheduler(optimizer, total_steps=totals.total_steps, warmup_steps=cfg.warmup_steps,
                                warmup_ratio=cfg.warmup_ratio)
    # after the optimizer, which takes every parameter: the frozen ones join in once thawed
    freezer = LowerLayersFrozen(loaded.model, cfg.freeze_layers, cfg.freeze_until) if cfg.freeze_layers else None
    if cfg.compile:
        objective = torch.compile(objective)
    return Trainable(objective, optimizer, scheduler, new_rows_lr, freezer)


def score_before_training(trainable: Trainable, accelerator, evaluations: Evaluations, state: TrainState,
                          baseline: Baseline) -> None:
    with accelerator.autocast():  # the same precision the prepared model will evaluate in
        result = evaluations(trainable.objective, 0, "before training", state)
    baseline.perplexity, baseline.accuracy = result.perplexity, result.accuracy


def warm_start(cfg: Config, accelerator, data: Data, loaded: LoadedModel, trainable: Trainable,
               evaluations: Evaluations, state: TrainState, baseline: Baseline, say=print) -> np.ndarray | None:
    """A grown head's output bias set to the log unigram frequency of the training tokens (and with
    --head-init prefit, the head pre-fit on cached frozen features); then scored again. Its seconds
    count against --max-time. Returns the unigram counts the bias came from (None: no warm start)."""
    if not loaded.new_parameters or cfg.head_init == "random":
        if cfg.head_init == "prefit":
            say(f"note: {cfg.model} has its own MLM head, so --head-init {cfg.head_init} leaves it as it is")
        return None
    # The bias alone is the default: at equal wall-clock time the pre-fit bought nothing on top
    # of it (minilm, bbc-news, 150 s: perplexity 139.0 with it, 139.1 without; benchmarks/README.md).
    model = loaded.model
    head = masked_positions_head(model)
    prefit = cfg.head_init == "prefit"
    if prefit and head is None:  # the pre-fit applies the head to cached hidden states
        say(f"note: --head-init prefit needs a masked-position head, which {type(model).__name__} lacks: "
            "the unigram bias alone")
        prefit = False
    t0 = time.perf_counter()
    # Every process takes the same whole global batches (rank 0 of 1), so the heads agree and do
    # not depend on how the global batch is split.
    global_batch = cfg.batch_size * accelerator.num_processes
    n = -(-warmstart.PREFIT_EXAMPLES // global_batch) if prefit and warmstart.PREFIT_PASSES > 0 else 0
    if not isinstance(data.train, StreamingData):
        batches = data.batches(cfg, 0, rank=0, world=1, batch_size=global_batch, stream_id=10**6)
        picked, tokens = [next(batches) for _ in range(n)], data.train.tokens
    else:  # drawn by the first process from the whole stream, handed to the others
        picked, tokens = first_process(accelerator, "warm-start", per_node=False)(
            lambda: stream_sample(cfg, data, global_batch, n))
    report = warmstart.warm_start_head(model, head, loaded.new_parameters, tokens=tokens,
                                       special_ids=list(data.tokenizer.all_special_ids), batches=picked,
                                       device=accelerator.device, autocast=accelerator.autocast, seed=cfg.seed,
                                       passes=None if prefit else 0)
    state.warm_seconds = time.perf_counter() - t0
    state.budget_spent = state.warm_seconds  # the warm start counts against --max-time
    with accelerator.autocast():
        result = evaluations(trainable.objective, 0, "after the warm start", state, kind="warm_start")
    baseline.warm_start_perplexity = result.perplexity
    evaluations.last_step = -1  # the model changed since the fresh head's score: finish scores it again
    detail = (f" and a head pre-fit on {report.features:,} cached features (loss {report.loss_before:.2f} -> "
              f"{report.loss_after:.2f})") if report.features else ""
    say(f"warm start: unigram output bias{detail}, {state.warm_seconds:.1f} s")
    return report.counts
