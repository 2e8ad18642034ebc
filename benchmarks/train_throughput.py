#!/usr/bin/env python
"""Training throughput and learning parity: the seed's loop against mlmtune's training step.

In one process, on the same model, the same data (bbc-news blocks of 128 from mlmtune's prepare)
and the same batch (16 x 128):

  seed     the seed's loop (benchmarks/_seed.py): AutoModelForMaskedLM(**batch, labels=...) with
           logits over the whole vocabulary at every position, fp32, DataCollatorForLanguageModeling,
           torch.optim.AdamW with its defaults, linear schedule, accelerator.backward.
  mlmtune  mlmtune's own step, mlmtune.training.step.train_step (the function the training loop
           calls): make_accelerator (precision auto, bf16 autocast on a CPU with AVX512-BF16),
           MaskedLMObjective (MLM head at masked positions only), build_optimizer (fused AdamW,
           4 groups), make_batch with mlmtune's Masker, the loss normalised by masked tokens,
           clip_grad_norm 1.0, optimizer and scheduler step.

1. throughput: after --warmup steps of each, --blocks blocks of --steps steps of each, the order
   rotating per block; tokens/s per block, medians, and the median of the per-block ratios.
2. parity: fresh copies of the same initial weights (a grown head is initialised once and copied),
   --parity-steps steps each over the same batches, then both are scored by mlmtune's fixed-mask
   evaluation (eval_batches + evaluate_batches, fp32 for both). mlmtune must stay within 3% of the
   seed's perplexity.
3. --ablate: the variants between the two, so each change has its price tag; --extras: candidate
   changes to mlmtune's step (not what mlmtune does), each against mlmtune's step.
4. --breakdown N: mlmtune's step timed by phase (batch making by the clock; backward and the optimizer
   step from torch.profiler's autograd and optimizer events, the forward the rest), and its top operators.

Learning rates: lr (1e-4) for the encoder and, when the model grows a head (minilm), head-lr
(1e-3) for the new head parameters, in BOTH loops; linear schedule with --lr-warmup (0, as the seed)
in both. See benchmarks/README.md for the measured figures.

  python benchmarks/train_throughput.py --shape minilm --blocks 3 --steps 8 --warmup 2 --parity-steps 60
  python benchmarks/train_throughput.py --shape minilm --ablate --blocks 6 --steps 2 --warmup 3 --parity-steps 0
  python benchmarks/train_throughput.py --shape minilm --extras --blocks 6 --steps 3 --warmup 3 --parity-steps 0 --breakdown 6
  python benchmarks/train_throughput.py --shape bert-base --blocks 4 --steps 2 --warmup 2 --parity-steps 0 --json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _seed  # noqa: E402

from mlmtune.config import build_config  # noqa: E402
from mlmtune.data.batching import epoch_order, eval_batches, make_batch, process_batches  # noqa: E402
from mlmtune.data.blocks import prepare  # noqa: E402
from mlmtune.data.masking import Masker, MaskingSpec  # noqa: E402
from mlmtune.data.sources import read_corpus  # noqa: E402
from mlmtune.eval.metrics import evaluate_batches  # noqa: E402
from mlmtune.model.device import make_accelerator, resolve_precision  # noqa: E402
from mlmtune.model.load import load_masked_lm, quiet_transformers, use_training_attention  # noqa: E402
from mlmtune.model.objective import MaskedLMObjective  # noqa: E402
from mlmtune.model.tokenizer import load_tokenizer  # noqa: E402
from mlmtune.training.optimizer import build_optimizer  # noqa: E402
from mlmtune.training.step import TrainState, train_step  # noqa: E402

BATCH, CHUNK, SEED = 16, 128, 42
PARITY_TOLERANCE = 1.03


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def emit(text: str, result: dict, as_json: bool) -> None:
    """The report on stdout; with --json the JSON result on stdout and the report on stderr."""
    if as_json:
        log(text)
        print(json.dumps(result, indent=2))
    else:
        print(text)


# --- setup ----------------------------------------------------------------------------------

def load_template(shape: str, tokenizer):
    """(model, new parameter names): the initial weights every runner copies."""
    if shape == "minilm":
        loaded = load_masked_lm("minilm", seed=SEED)  # grows the MLM head from SEED, once
        return loaded.model, loaded.new_parameters
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(vocab_size=len(tokenizer), hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(SEED)
    return BertForMaskedLM(config), []


def batch_plan(n_examples: int, steps: int) -> list[tuple[int, np.ndarray]]:
    """(epoch, indices) of the first `steps` batches of mlmtune's order (fit() with 1 process)."""
    plan, epoch = [], 0
    while len(plan) < steps:
        order = epoch_order(n_examples, seed=SEED, epoch=epoch)
        plan += [(epoch, b) for b in process_batches(order, batch_size=BATCH, rank=0, world=1)]
        epoch += 1
    return plan[:steps]


def fresh_accelerator(make):
    """Accelerate keeps one shared state per process and refuses a second mixed-precision setting.
    Everything precision-dependent is fixed when objects are prepared (autocast is baked into the
    prepared model's forward), so resetting the shared state between runners is safe."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    return make()


class SeedRunner:
    def __init__(self, template, new_parameters, dataset, plan, tokenizer, *, lr, head_lr, total_steps, warmup,
                 max_grad_norm=None, name="seed"):
        self.name, self.max_grad_norm = name, max_grad_norm
        model = copy.deepcopy(template).train()
        self.model = model
        (self.accelerator, self.prepared, self.optimizer, self.loader, self.scheduler) = fresh_accelerator(
            lambda: _seed.seed_setup(model, dataset, [b for _, b in plan], tokenizer, lr=lr, head_lr=head_lr,
                                     new_parameters=new_parameters, total_steps=total_steps, warmup=warmup))
        self.batches = iter(self.loader)

    def step(self) -> tuple[float, int]:
        batch = next(self.batches)
        return _seed.seed_step(self.accelerator, self.prepared, batch, self.optimizer, self.scheduler,
                               self.max_grad_norm)


class MlmtuneRunner:
    """One optimizer step of mlmtune's training loop (1 process, no accumulation): the batches made as
    the loop makes them, then mlmtune.training.step.train_step itself, with the attention implementation
    fit() trains with (use_training_attention: eager on a CPU)."""

    def __init__(self, template, new_parameters, train_blocks, plan, tokenizer, *, lr, head_lr, total_steps,
                 warmup, max_grad_norm=1.0, compile=False, objective_cls=None, attention_dropout=None,
                 threads=None, attention=None, name="mlmtune"):
        from transformers import get_scheduler

        self.name = name
        cfg = build_config({"precision": "auto", "lr": lr, "head_lr": head_lr, "max_grad_norm": max_grad_norm})
        self.cfg = cfg
        self.accelerator = fresh_accelerator(lambda: make_accelerator(cfg, None))
        self.model = copy.deepcopy(template)
        if attention_dropout is not None:  # --extras only
            set_attention_dropout(self.model, attention_dropout)
        use_training_attention(self.model, self.accelerator.device)  # as fit() does: eager on a CPU
        if attention is not None:  # --extras only: transformers' default 'sdpa' instead of mlmtune's choice
            self.model.set_attn_implementation(attention)
        objective = (objective_cls or MaskedLMObjective)(self.model)
        optimizer = build_optimizer(objective.model, lr=cfg.lr, head_lr=cfg.head_lr, weight_decay=cfg.weight_decay,
                                    new_parameters=new_parameters)
        scheduler = get_scheduler("linear", optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
        if compile:
            objective = torch.compile(objective)
        self.objective, self.optimizer, self.scheduler = self.accelerator.prepare(objective, optimizer, scheduler)
        self.objective.train()
        masker = Masker(tokenizer, MaskingSpec(cfg.mlm_probability, cfg.mask_replace_prob, cfg.random_replace_prob,
                                               cfg.whole_word_mask))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.data = (make_batch(train_blocks, indices, masker, seed=SEED, stream=epoch, pad_id=pad_id)
                     for epoch, indices in plan)
        self.threads = threads
        self.marks = None
        self.state = TrainState()

    def step(self) -> tuple[float, int]:
        if self.threads is None:
            return self._step()
        before = torch.get_num_threads()  # --extras: this runner's steps on fewer threads
        torch.set_num_threads(self.threads)
        try:
            return self._step()
        finally:
            torch.set_num_threads(before)

    def _step(self) -> tuple[float, int]:
        t0 = time.perf_counter()
        micro = [next(self.data) for _ in range(self.cfg.gradient_accumulation_steps)]
        t1 = time.perf_counter()
        result = train_step(self.accelerator, self.objective, self.optimizer, self.scheduler, micro, self.state,
                            max_grad_norm=self.cfg.max_grad_norm)
        if self.marks is not None:  # --breakdown: the batches, and the step
            self.marks.append((t1 - t0, time.perf_counter() - t1))
        return result.nll / max(float(result.masked), 1.0), sum(b.n_tokens for b in micro)


def set_attention_dropout(model, p: float) -> int:
    """--extras: the dropout on attention probabilities (BERT's *SelfAttention modules pass
    self.dropout.p to SDPA). Returns how many modules changed."""
    changed = 0
    for module in model.modules():
        if type(module).__name__.endswith("SelfAttention") and isinstance(getattr(module, "dropout", None),
                                                                           torch.nn.Dropout):
            module.dropout.p = p
            changed += 1
    assert changed, "no self-attention dropout found"
    return changed


class VariantRunner:
    """An intermediate step for --ablate: the seed's batches (collator), and one knob at a time.

    head:      'full' = model(**batch).loss over the whole vocabulary at every position;
               'masked' = MaskedLMObjective, the loss = NLL sum / masked tokens (same value).
    precision: 'no' (fp32) or 'bf16' (Accelerate autocast).
    optim:     'loop' (torch's default on CPU: a Python loop over tensors), 'foreach' or 'fused';
               always the seed's two groups and defaults otherwise.
    """

    def __init__(self, name, template, new_parameters, dataset, plan, tokenizer, *, lr, head_lr, total_steps,
                 warmup, head, precision, optim):
        from accelerate import Accelerator
        from transformers import get_scheduler

        self.name, self.head = name, head
        self.model = copy.deepcopy(template).train()
        module = MaskedLMObjective(self.model) if head == "masked" else self.model
        kwargs = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[optim]
        new = set(new_parameters)
        named = list(self.model.named_parameters())
        groups = [{"params": [p for n, p in named if n not in new], "lr": lr}]
        if new:
            groups.append({"params": [p for n, p in named if n in new], "lr": head_lr})
        optimizer = torch.optim.AdamW(groups, lr=lr, **kwargs)
        loader = _seed.seed_dataloader(dataset, [b for _, b in plan], tokenizer)
        self.accelerator = fresh_accelerator(lambda: Accelerator(mixed_precision=precision))
        self.module, self.optimizer, loader = self.accelerator.prepare(module, optimizer, loader)
        self.scheduler = get_scheduler("linear", optimizer=self.optimizer, num_warmup_steps=warmup,
                                       num_training_steps=total_steps)
        self.batches = iter(loader)

    def step(self) -> tuple[float, int]:
        batch = next(self.batches)
        if self.head == "full":
            loss = self.module(**batch).loss
        else:
            nll, _ = self.module(batch["input_ids"], batch["attention_mask"], batch["labels"])
            loss = nll / (batch["labels"] != -100).sum().clamp(min=1)
        self.accelerator.backward(loss)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        return loss.item(), int(batch["attention_mask"].sum())


# --- measuring ------------------------------------------------------------------------------

def interleaved(runners: list, *, warmup: int, blocks: int, steps: int) -> dict[str, list[float]]:
    """tokens/s of each runner per block; the order of runners rotates from block to block."""
    for r in runners:
        t0 = time.perf_counter()
        n = max(warmup, getattr(r, "min_warmup", 0))
        for _ in range(n):
            r.step()
        log(f"  warm-up {r.name}: {n} steps in {time.perf_counter() - t0:.1f}s")
    rates: dict[str, list[float]] = {r.name: [] for r in runners}
    for b in range(blocks):
        k = b % len(runners)
        for r in runners[k:] + runners[:k]:
            tokens, t0 = 0, time.perf_counter()
            for _ in range(steps):
                tokens += r.step()[1]
            rates[r.name].append(tokens / (time.perf_counter() - t0))
        log(f"  block {b + 1}/{blocks}: " + ", ".join(f"{n} {v[-1]:,.0f} tok/s" for n, v in rates.items()))
    return rates


def summarise(rates: dict[str, list[float]], refs: dict[str, str] | None = None) -> dict:
    """Medians over blocks; ratios are medians of per-block ratios (a block of one runner against the
    block of the other in the same rotation, so machine load changes cancel as far as they can)."""
    out = {}
    for name, values in rates.items():
        ratios = [v / s for v, s in zip(values, rates["seed"])]
        out[name] = {"tokens_per_second": statistics.median(values), "best_block": max(values),
                     "blocks": [round(v, 1) for v in values],
                     "ratio_to_seed": statistics.median(ratios), "ratio_blocks": [round(r, 3) for r in ratios]}
        ref = (refs or {}).get(name)
        if ref:
            out[name]["reference"] = ref
            out[name]["ratio_to_reference"] = statistics.median(v / r for v, r in zip(values, rates[ref]))
    return out


def breakdown(runner: "MlmtuneRunner", steps: int, top: int = 12) -> dict:
    """Where mlmtune's step spends its time, median ms per step over `steps` steps: making the batches
    (by the clock), then under torch.profiler the backward (its autograd engine events), the optimizer
    step (torch's Optimizer.step event) and the forward with the rest of train_step (the remainder);
    and the operators with the most self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(2):
        runner.step()
    runner.marks = []
    for _ in range(steps):
        runner.step()
    marks, runner.marks = runner.marks, None
    batch_ms = statistics.median(1000 * b for b, _ in marks)
    step_ms = statistics.median(1000 * t for _, t in marks)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            runner.step()
    events = prof.key_averages()
    backward = sum(e.cpu_time_total for e in events if e.key.startswith("autograd::engine::evaluate_function"))
    optimizer = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step#"))
    profiled = sum(e.self_cpu_time_total for e in events)
    share = {"backward": backward / profiled, "optimizer.step": optimizer / profiled}
    phases = {"make_batch (Masker)": batch_ms, "forward and the rest of train_step":
              step_ms * (1 - share["backward"] - share["optimizer.step"]),
              "backward": step_ms * share["backward"], "optimizer.step": step_ms * share["optimizer.step"]}
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)
    return {
        "steps": steps,
        "step_ms": batch_ms + step_ms,
        "phases_ms": phases,
        "top_ops": [{"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 1000 / steps,
                     "share": e.self_cpu_time_total / profiled, "calls_per_step": e.count / steps}
                    for e in ranked[:top]],
    }


def fp32_perplexity(model, eval_set) -> float:
    return evaluate_batches(MaskedLMObjective(model), eval_set, torch.device("cpu")).perplexity


def parity(template, new_parameters, splits, dataset, tokenizer, eval_set, args) -> dict:
    steps = args.parity_steps
    plan = batch_plan(len(splits.train), steps)
    common = dict(lr=args.lr, head_lr=args.head_lr, total_steps=steps, warmup=args.lr_warmup)
    torch.manual_seed(SEED)
    runners = [SeedRunner(template, new_parameters, dataset, plan, tokenizer, **common),
               MlmtuneRunner(template, new_parameters, splits.train, plan, tokenizer, **common)]
    if args.parity_control:  # the seed plus mlmtune's clipping: separates learning from speed changes
        runners.append(SeedRunner(template, new_parameters, dataset, plan, tokenizer, **common, max_grad_norm=1.0,
                                  name="seed + clip_grad_norm 1.0"))
    first = list(runners[0].model.state_dict().values())
    for r in runners[1:]:
        assert all(torch.equal(a, b) for a, b in zip(first, r.model.state_dict().values())), \
            "the runners must start from the same weights"
    before = fp32_perplexity(template, eval_set)
    log(f"parity: {steps} steps each from the same weights; eval perplexity before: {before:,.2f}")
    losses = {r.name: [] for r in runners}
    seconds = {r.name: 0.0 for r in runners}
    chunk = 10
    for start in range(0, steps, chunk):  # interleaved in chunks: machine load hits all alike
        k = (start // chunk) % len(runners)
        for r in runners[k:] + runners[:k]:
            t0 = time.perf_counter()
            for _ in range(min(chunk, steps - start)):
                losses[r.name].append(r.step()[0])
            seconds[r.name] += time.perf_counter() - t0
        log(f"  step {min(start + chunk, steps)}/{steps}: " + ", ".join(f"{n} loss {v[-1]:.3f}" for n, v in losses.items()))
    t0 = time.perf_counter()
    ppl = {r.name: fp32_perplexity(r.model, eval_set) for r in runners}
    log(f"  evaluated in {time.perf_counter() - t0:.1f}s")
    tail = max(1, min(10, steps))
    return {
        "steps": steps,
        "eval_blocks": sum(int(b.input_ids.shape[0]) for b in eval_set),
        "eval_masked_tokens": sum(b.n_masked for b in eval_set),
        "perplexity_before": before,
        "seed_perplexity": ppl["seed"],
        "mlmtune_perplexity": ppl["mlmtune"],
        "mlmtune_over_seed": ppl["mlmtune"] / ppl["seed"],
        "ok": ppl["mlmtune"] <= PARITY_TOLERANCE * ppl["seed"],
        "runs": {n: {"perplexity": ppl[n], "train_loss_last10": statistics.mean(losses[n][-tail:]),
                     "tokens_per_second": steps * BATCH * CHUNK / seconds[n]} for n in ppl},
    }


def machine() -> dict:
    flags = ""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in load] if load else None,
            "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
            "python": platform.python_version(), "mlmtune_precision": resolve_precision("auto")}


def table(rows: list[tuple], header: tuple) -> str:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]])


def report(result: dict) -> str:
    out = [f"shape {result['shape']}, batch {BATCH} x {CHUNK}, torch {result['machine']['torch']}, "
           f"{result['machine']['threads']} threads, mlmtune precision {result['machine']['mlmtune_precision']}, "
           f"load average at the end {result['machine']['load_average_at_end']} on {result['machine']['cpus']} CPUs"]
    if "throughput" in result:
        t = result["throughput"]
        out += ["", f"throughput ({result['blocks']} blocks x {result['steps']} steps after {result['warmup']} warm-up "
                f"steps; medians over blocks)",
                table([(n, f"{v['tokens_per_second']:,.0f}", f"{v['best_block']:,.0f}", f"{v['ratio_to_seed']:.2f}x",
                        " ".join(f"{x:,.0f}" for x in v["blocks"])) for n, v in t.items()],
                      ("loop", "median tok/s", "best block", "vs seed", "per block"))]
    if "ablation" in result:
        a = result["ablation"]
        out += ["", "ablation: each row is compared with its reference row (down to 'mlmtune step (full)' each row adds "
                "one change,\nthe fused row replacing foreach; the 'mlmtune, ...' rows change one thing of mlmtune's step); "
                "ratios are medians of per-block ratios",
                table([(n, f"{v['tokens_per_second']:,.0f}", f"{v['best_block']:,.0f}", f"{v['ratio_to_seed']:.2f}x",
                        f"{v['ratio_to_reference']:.2f}x vs {v['reference']}" if "reference" in v else "",
                        " ".join(f"{x:.2f}" for x in v["ratio_blocks"])) for n, v in a.items()],
                      ("variant", "median tok/s", "best block", "vs seed", "vs reference row", "vs seed per block"))]
    if "breakdown" in result:
        b = result["breakdown"]
        out += ["", f"mlmtune's step by phase (median of {b['steps']} steps, {b['step_ms']:,.0f} ms per step)",
                table([(k, f"{v:,.1f}", f"{v / b['step_ms']:.1%}") for k, v in b["phases_ms"].items()],
                      ("phase", "ms", "share")),
                "", f"top operators by self CPU time (torch.profiler, {b['steps']} steps)",
                table([(o["op"], f"{o['self_ms_per_step']:,.1f}", f"{o['share']:.1%}", f"{o['calls_per_step']:g}")
                       for o in b["top_ops"]], ("operator", "ms/step", "share", "calls/step"))]
    if "parity" in result:
        p = result["parity"]
        out += ["", f"parity ({p['steps']} steps each, same initial weights and batches; fp32 evaluation on "
                f"{p['eval_blocks']} blocks, {p['eval_masked_tokens']:,} masked tokens; before {p['perplexity_before']:,.2f})",
                table([(n, f"{v['perplexity']:.3f}", f"{v['perplexity'] / p['seed_perplexity']:.4f}",
                        f"{v['train_loss_last10']:.3f}", f"{v['tokens_per_second']:,.0f}") for n, v in p["runs"].items()],
                      ("loop", "eval ppl", "vs seed", "train loss (last 10)", "tokens/s")),
                f"mlmtune / seed perplexity: {p['mlmtune_over_seed']:.4f} "
                f"({'ok' if p['ok'] else 'FAIL'}: limit {PARITY_TOLERANCE:.2f})"]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=["minilm", "bert-base"], default="minilm")
    ap.add_argument("--steps", type=int, default=8, help="steps per timed block")
    ap.add_argument("--blocks", type=int, default=3, help="timed blocks per loop")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps of each loop first")
    ap.add_argument("--parity-steps", type=int, default=60, help="steps of the learning comparison (0: skip it)")
    ap.add_argument("--parity-control", action="store_true",
                    help="also train 'seed + clip_grad_norm 1.0' in the parity check (the seed does not clip, mlmtune does)")
    ap.add_argument("--eval-size", type=int, default=500, help="evaluation blocks for the parity check")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--head-lr", type=float, default=1e-3, help="for a grown head's parameters, in both loops")
    ap.add_argument("--lr-warmup", type=int, default=0, help="linear warm-up steps of the schedule, both loops")
    ap.add_argument("--ablate", action="store_true", help="time the intermediate variants instead of seed vs mlmtune")
    ap.add_argument("--extras", action="store_true",
                    help="time candidate changes against seed and mlmtune's step: no clipping, "
                         "SDPA attention, attention dropout 0, 1 thread, torch.compile (not mlmtune's "
                         "behaviour); "
                         "with --ablate after the ablation rows")
    ap.add_argument("--breakdown", type=int, default=0, metavar="N",
                    help="also time N of mlmtune's steps by phase and profile N more (top operators)")
    ap.add_argument("--no-throughput", action="store_true", help="skip the seed-vs-mlmtune timing")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the whole run "
                    "(default: torch's choice, one per core)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON (the table goes to stderr)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    quiet_transformers()
    import datasets

    datasets.disable_progress_bars()
    t0 = time.perf_counter()
    tokenizer = load_tokenizer("minilm")
    splits = prepare(read_corpus(["bbc-news"]), tokenizer, chunk_size=CHUNK, eval_size=args.eval_size, seed=SEED)
    template, new_parameters = load_template(args.shape, tokenizer)
    dataset = _seed.seed_train_dataset(splits.train)
    pad_id = tokenizer.pad_token_id
    eval_masker = Masker(tokenizer, MaskingSpec())
    eval_set = eval_batches(splits.eval, eval_masker, seed=SEED, batch_size=2 * BATCH, pad_id=pad_id)
    log(f"setup {time.perf_counter() - t0:.1f}s: {len(splits.train):,} training blocks, {len(splits.eval)} eval blocks, "
        f"{sum(p.numel() for p in template.parameters()) / 1e6:.1f}M parameters, new: {len(new_parameters)} tensors, "
        f"attention {template.config._attn_implementation}")

    result = {"shape": args.shape, "batch_size": BATCH, "chunk_size": CHUNK, "steps": args.steps,
              "blocks": args.blocks, "warmup": args.warmup, "lr": args.lr,
              "head_lr": args.head_lr if new_parameters else None, "machine": machine()}
    timed_steps = args.warmup + args.blocks * args.steps
    plan = batch_plan(len(splits.train), timed_steps + 5)  # + the longer warm-up of the compiled extra
    common = dict(lr=args.lr, head_lr=args.head_lr, total_steps=timed_steps + 5, warmup=args.lr_warmup)
    torch.manual_seed(SEED)
    if args.ablate or args.extras:
        log("ablation:")
        variant = lambda name, **kw: VariantRunner(name, template, new_parameters, dataset, plan, tokenizer,
                                                   **common, **kw)
        mlmtune = lambda name, **kw: MlmtuneRunner(template, new_parameters, splits.train, plan, tokenizer,
                                                   **common, name=name, **kw)
        chain = [  # (runner, the row it is compared with)
            (SeedRunner(template, new_parameters, dataset, plan, tokenizer, **common), None),
        ]
        if args.ablate:
            chain += [
                (variant("+ masked-only logits (fp32)", head="masked", precision="no", optim="loop"), "seed"),
                (variant("+ bf16 autocast", head="masked", precision="bf16", optim="loop"),
                 "+ masked-only logits (fp32)"),
                (variant("+ foreach AdamW", head="masked", precision="bf16", optim="foreach"), "+ bf16 autocast"),
                (variant("+ fused AdamW (instead)", head="masked", precision="bf16", optim="fused"),
                 "+ bf16 autocast"),
            ]
        chain.append((mlmtune("mlmtune step (full)"), "+ fused AdamW (instead)" if args.ablate else "seed"))
        if args.extras:
            full = "mlmtune step (full)"
            chain += [
                (mlmtune("mlmtune, no clip_grad_norm", max_grad_norm=None), full),
                (mlmtune("mlmtune, SDPA attention (transformers' default)", attention="sdpa"), full),
                (mlmtune("mlmtune, attention dropout 0", attention_dropout=0.0), full),
                (mlmtune("mlmtune, 1 thread", threads=1), full),
                (mlmtune("mlmtune + torch.compile", compile=True), full),
            ]
            chain[-1][0].min_warmup = 5  # compiles, then recompiles once for the dynamic masked count
        runners = [r for r, _ in chain]
        assert len({r.name for r in runners}) == len(runners)
        rates = interleaved(runners, warmup=args.warmup, blocks=args.blocks, steps=args.steps)
        result["ablation"] = summarise(rates, {r.name: ref for r, ref in chain if ref})
        del runners, chain
    elif not args.no_throughput:
        log("throughput:")
        runners = [SeedRunner(template, new_parameters, dataset, plan, tokenizer, **common),
                   MlmtuneRunner(template, new_parameters, splits.train, plan, tokenizer, **common)]
        result["throughput"] = summarise(interleaved(runners, warmup=args.warmup, blocks=args.blocks, steps=args.steps))
        del runners
    if args.breakdown:
        log(f"breakdown: {args.breakdown} steps of mlmtune's step timed by phase, then {args.breakdown} profiled")
        runner = MlmtuneRunner(template, new_parameters, splits.train, batch_plan(len(splits.train), 2 * args.breakdown + 2),
                               tokenizer, **{**common, "total_steps": 2 * args.breakdown + 2})
        result["breakdown"] = breakdown(runner, args.breakdown)
        del runner
    if args.parity_steps > 0:
        result["parity"] = parity(template, new_parameters, splits, dataset, tokenizer, eval_set, args)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["machine"] = machine()

    emit(report(result), result, args.json)
    return 0 if result.get("parity", {}).get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
