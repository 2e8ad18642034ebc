"""Warm start of a grown MLM head (`--head-init warm`, the default when the checkpoint has no head).

Sentence encoders (all-MiniLM, mpnet, e5, bge) ship without an MLM head; a fresh head starts near
perplexity 45,000 and a short run spends most of its minutes teaching it. Two cheap steps first:

1. **Unigram bias**: the output bias becomes the log of the smoothed unigram frequency of the
   training tokens, the best guess without context (perplexity ~45,000 -> ~2,000 on bbc-news).
2. **Pre-fit on cached frozen features**: the frozen encoder runs forward once, without gradients
   or dropout, over PREFIT_EXAMPLES masked training examples; the hidden states at the masked positions
   and their targets are kept, and only the new head parameters train on them for `passes` passes
   at a high learning rate. No encoder backward, no encoder forward after the first pass.

Every process does the same work on the same batches, so the heads agree before Accelerate wraps
the model (DDP also broadcasts rank 0's weights when it wraps). The figures that chose the
constants are in benchmarks/README.md (`benchmarks/time_to_quality.py --sweep-warm`).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.masking import IGNORE_INDEX

SMOOTHING = 1.0  # add-one: a token never seen in the corpus still gets a finite bias


# Chosen on bbc-news with minilm (benchmarks/README.md, "The warm start"): 768 examples (48 batches of
# 16 x 128) give ~14.6k masked positions, ~9 s of encoder forward on 2 cores; 4 passes at 3e-3 in
# rows of 1024 then take the eval perplexity from 1,774 (the bias alone) to 907. 8 passes reach 768
# and 96 batches x 8 passes 616, at 2x and 4x the cost; 1e-3 and 1e-2 were worse than 3e-3.
PREFIT_EXAMPLES = 768
PREFIT_PASSES = 4
PREFIT_LR = 3e-3
PREFIT_ROWS = 1024


@dataclass
class WarmStart:
    features: int  # masked positions the head was pre-fit on
    seconds: float
    loss_before: float  # mean NLL on the cached features, after the bias and before the pre-fit
    loss_after: float
    counts: np.ndarray | None = None  # the unigram counts the bias came from (run/before.py builds the base from them)


def unigram_counts(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """How often each token id in 0..vocab_size-1 occurs in `tokens` (int64; ids beyond are left out)."""
    return np.bincount(np.asarray(tokens, dtype=np.int64), minlength=vocab_size)[:vocab_size]


def log_frequency(counts: np.ndarray, never: list[int]) -> torch.Tensor:
    """log((count + 1) / (total + V)) per token id of `counts`; ids in `never` (special tokens, never a
    target) are counted as unseen."""
    counts = np.asarray(counts, dtype=np.float64).copy()
    vocab_size = len(counts)
    counts[[i for i in never if 0 <= i < vocab_size]] = 0
    probs = (counts + SMOOTHING) / (counts.sum() + SMOOTHING * vocab_size)
    return torch.from_numpy(np.log(probs)).float()


def unigram_log_frequency(tokens: np.ndarray, vocab_size: int, never: list[int]) -> torch.Tensor:
    """The warm start's output bias: log_frequency of the unigram counts of `tokens`."""
    return log_frequency(unigram_counts(tokens, vocab_size), never)


def set_unigram_bias(model: torch.nn.Module, counts: np.ndarray, special_ids: list[int]) -> bool:
    """A grown head's output bias := the log unigram frequency of `counts` (cut or padded with zeros to
    the bias's size: a tokenizer with added words counts more ids). False when the model has no bias."""
    bias = output_bias(model)
    if bias is None:
        return False
    counts = np.asarray(counts, dtype=np.int64)[:bias.shape[0]]
    counts = np.pad(counts, (0, bias.shape[0] - len(counts)))
    with torch.no_grad():
        bias.copy_(log_frequency(counts, special_ids).to(bias.device, bias.dtype))
    return True


def output_bias(model: torch.nn.Module) -> torch.nn.Parameter | None:
    """The vocabulary bias of a *ForMaskedLM (BERT's cls.predictions.bias is its decoder's bias), or None:
    the output embeddings' bias, else a bias of the head with one entry per token. DeBERTa's newer head
    names its dense layer (hidden x hidden) as the output embeddings and keeps its vocabulary bias apart."""
    rows = model.get_input_embeddings().num_embeddings
    out = model.get_output_embeddings()
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    candidates = [getattr(out, "bias", None) if out is not None else None]
    candidates += [p for n, p in model.named_parameters() if n.endswith("bias") and not n.startswith(prefix)]
    return next((b for b in candidates if b is not None and tuple(b.shape) == (rows,)), None)


@contextlib.contextmanager
def only_trainable(model: torch.nn.Module, names: set[str]):
    """requires_grad on the named parameters alone, for the duration."""
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    try:
        yield [p for n, p in model.named_parameters() if n in names]
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(before[n])


@torch.no_grad()
def cache_features(model: torch.nn.Module, batches, device, autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states of the frozen encoder at the masked positions of `batches`, and their targets."""
    was_training = model.training
    model.eval()  # no dropout: the features are what the encoder computes at evaluation
    feats, targets = [], []
    try:
        for b in batches:
            b = b.to(device)
            picked = b.labels != IGNORE_INDEX
            with autocast():
                hidden = model.base_model(input_ids=b.input_ids, attention_mask=b.attention_mask)[0]
            feats.append(hidden[picked].float())
            targets.append(b.labels[picked])
    finally:
        model.train(was_training)
    return torch.cat(feats), torch.cat(targets)


def prefit(model: torch.nn.Module, head, new_parameters: list[str], feats: torch.Tensor, targets: torch.Tensor, *,
           passes: int, lr: float, rows: int, seed: int, autocast=contextlib.nullcontext) -> list[float]:
    """Train the new head parameters alone on cached (features, targets): `passes` shuffled passes in rows
    of `rows`, AdamW at `lr` decaying linearly to 0. The loss of each row batch, in order."""
    generator = torch.Generator().manual_seed(seed)
    losses = []
    with only_trainable(model, set(new_parameters)) as params:
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        total = passes * max(1, -(-len(feats) // rows))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0 - i / total)  # linear to 0
        for _ in range(passes):
            order = torch.randperm(len(feats), generator=generator).to(feats.device)
            for idx in order.split(rows):
                with autocast():
                    logits = head(feats[idx])
                loss = F.cross_entropy(logits.float(), targets[idx])
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
    return losses


def warm_start_head(model: torch.nn.Module, head, new_parameters: list[str], *, tokens: np.ndarray,
                    special_ids: list[int], batches, device, autocast, seed: int,
                    passes: int | None = None, lr: float | None = None, rows: int | None = None) -> WarmStart:
    """Set the unigram bias, then pre-fit the new head parameters on cached frozen features
    (`passes` 0: the bias alone). Defaults: the module's constants, read at call time."""
    passes = PREFIT_PASSES if passes is None else passes
    lr = PREFIT_LR if lr is None else lr
    rows = PREFIT_ROWS if rows is None else rows
    t0 = time.perf_counter()
    bias = output_bias(model)
    counts = unigram_counts(tokens, bias.shape[0]) if bias is not None else None
    if counts is not None:
        set_unigram_bias(model, counts, special_ids)
    if passes <= 0 or not batches:
        return WarmStart(features=0, seconds=time.perf_counter() - t0, loss_before=float("nan"),
                         loss_after=float("nan"), counts=counts)
    feats, targets = cache_features(model, batches, device, autocast)
    losses = prefit(model, head, new_parameters, feats, targets, passes=passes, lr=lr, rows=rows, seed=seed,
                    autocast=autocast)
    n_batches = max(1, -(-len(feats) // rows))
    before = losses[0] if losses else float("nan")
    after = float(np.mean(losses[-n_batches:])) if losses else float("nan")
    return WarmStart(features=len(feats), seconds=time.perf_counter() - t0, loss_before=before, loss_after=after,
                     counts=counts)
