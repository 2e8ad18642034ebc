#!/usr/bin/env python
"""Step speed of each masked-LM family at equal parameter count, through mlmtune's own training step.

Every family of tests/families.py (the test matrix's: BERT, DistilBERT, ELECTRA's generator, MPNet, RoBERTa,
ModernBERT, XLM-RoBERTa, CamemBERT, ALBERT, DeBERTa-v2/v3; DistilRoBERTa is RoBERTa at this size) is built
at hidden 384, 6 heads, feed-forward 1536, with the number of layers that brings it closest to --params
(20M by default) and a vocabulary of --vocab pieces its tokenizer learns from bbc-news (WordPiece, byte-level
BPE or SentencePiece Unigram, each family's own tokenizer class). ALBERT shares one layer's weights across
all of them, so no layer count reaches 20M: it takes BERT's shape and its own, smaller, parameter count.

Each step is mlmtune.training.step.train_step itself (the function the training loop calls) on batches of
16 x 128 bbc-news tokens masked by mlmtune's Masker: make_accelerator (--precision, default auto: bf16 where
the CPU has it), the attention fit() trains with (eager on a CPU), MaskedLMObjective (the MLM head on the
masked positions, or the full logits where a family has no sparse head), AdamW as build_optimizer makes it,
clip 1.0. After --warmup steps of each, --blocks rounds of --steps steps of each family, the order rotating
from round to round so that load on a shared machine spreads over all of them; the medians over rounds.
--full-head adds, per family, the same step with the MLM head at every position (what a family without a
masked-position head pays).

  python benchmarks/families.py                        # the README's table (steps/s of each family)
  python benchmarks/families.py --blocks 5 --steps 3 --full-head --json
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from families import FAMILIES, Ids, Size, Vocabularies, build_model, family_tokenizer, model_config, training_texts  # noqa: E402
from train_throughput import emit, fresh_accelerator, interleaved, log, machine, table  # noqa: E402

from mlmtune.config import build_config  # noqa: E402
from mlmtune.data.batching import make_batch  # noqa: E402
from mlmtune.data.blocks import cut, tokenize  # noqa: E402
from mlmtune.data.masking import Masker, MaskingSpec  # noqa: E402
from mlmtune.model.device import make_accelerator  # noqa: E402
from mlmtune.model.load import quiet_transformers, use_training_attention  # noqa: E402
from mlmtune.model.objective import HEAD_MODULES, MaskedLMObjective  # noqa: E402
from mlmtune.training.optimizer import build_optimizer, build_scheduler  # noqa: E402
from mlmtune.training.step import TrainState, train_step  # noqa: E402

BATCH, CHUNK, SEED = 16, 128, 42
BENCHED = [n for n in FAMILIES if n != "distilroberta"]  # DistilRoBERTa is a RoBERTa: the same at equal size


def parameters(family, ids: Ids, size: Size) -> int:
    with torch.device("meta"):  # no memory, no initialisation: only the shapes
        model = build_model(family, model_config(family, ids, size))
    return sum(p.numel() for p in model.parameters())


def equal_size(family, ids: Ids, target: int, hidden: int, heads: int, intermediate: int,
               bert_layers: int | None) -> tuple[Size, int]:
    """The layer count (1..48) whose model is closest to `target` parameters; ALBERT takes BERT's layers."""
    sizes = [Size(hidden, layers, heads, intermediate, CHUNK) for layers in range(1, 49)]
    if family.name == "albert":
        size = sizes[bert_layers - 1]
        return size, parameters(family, ids, size)
    counted = [(abs(parameters(family, ids, s) - target), s) for s in sizes[:24]]
    size = min(counted, key=lambda c: c[0])[1]
    return size, parameters(family, ids, size)


class FamilyRunner:
    """One family's training steps: train_step on its own masked batches, as fit() runs it."""

    def __init__(self, name: str, model, tokenizer, accelerator, cfg, *, full_head: bool = False):
        self.name = f"{name} (full head)" if full_head else name
        self.accelerator, self.cfg = accelerator, cfg
        use_training_attention(model, accelerator.device)
        objective = MaskedLMObjective(model)
        self.sparse = objective.head is not None
        if full_head:
            objective.head = None  # masked_logits then takes the model's full logits
        optimizer = build_optimizer(objective.model, lr=cfg.lr, head_lr=cfg.head_lr, weight_decay=cfg.weight_decay,
                                    new_parameters=[])
        scheduler = build_scheduler(optimizer, total_steps=10_000, warmup_steps=0, warmup_ratio=0.0)
        self.objective, self.optimizer, self.scheduler = accelerator.prepare(objective, optimizer, scheduler)
        self.objective.train()
        texts = training_texts(120, seed=2)
        self.blocks = cut(tokenize(texts, tokenizer, progress=False), CHUNK)
        self.masker = Masker(tokenizer, MaskingSpec(cfg.mlm_probability))
        self.pad_id = tokenizer.pad_token_id
        self.state, self.next = TrainState(), 0

    def step(self) -> tuple[float, int]:
        n = len(self.blocks)
        indices = (np.arange(BATCH) + self.next * BATCH) % n
        batch = make_batch(self.blocks, indices, self.masker, seed=SEED, stream=self.next, pad_id=self.pad_id)
        self.next += 1
        result = train_step(self.accelerator, self.objective, self.optimizer, self.scheduler, [batch], self.state,
                            max_grad_norm=self.cfg.max_grad_norm)
        return result.nll / max(result.masked, 1), batch.n_tokens


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", nargs="*", default=BENCHED, choices=list(FAMILIES))
    ap.add_argument("--params", type=float, default=20e6, help="parameter count to match (default 20M)")
    ap.add_argument("--vocab", type=int, default=8000, help="pieces each tokenizer learns (default 8,000)")
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--intermediate", type=int, default=1536)
    ap.add_argument("--steps", type=int, default=3, help="steps per family per round")
    ap.add_argument("--blocks", type=int, default=3, help="rounds")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps of each family first")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--full-head", action="store_true", help="also time each family with its head at every position")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON (the table goes to stderr)")
    args = ap.parse_args(argv)
    if "albert" in args.families and "bert" not in args.families:
        ap.error("--families albert needs bert too: ALBERT takes BERT's shape")
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_transformers()
    t0 = time.perf_counter()
    texts = training_texts(300, seed=1)
    vocabularies = Vocabularies(texts, args.vocab)
    cfg = build_config({"precision": args.precision})
    accelerator = fresh_accelerator(lambda: make_accelerator(cfg, None))
    runners, rows, bert_layers = [], {}, None
    for name in sorted(args.families, key=lambda n: n != "bert"):  # BERT first: ALBERT takes its shape
        family = FAMILIES[name]
        tokenizer = family_tokenizer(family, vocabularies[family.tokenizer], CHUNK)
        ids = Ids.of(tokenizer)
        size, count = equal_size(family, ids, int(args.params), args.hidden, args.heads, args.intermediate, bert_layers)
        if name == "bert":
            bert_layers = size.layers
        torch.manual_seed(SEED)
        model = build_model(family, model_config(family, ids, size))
        for full in ([False, True] if args.full_head else [False]):
            runner = FamilyRunner(name, copy.deepcopy(model) if full else model, tokenizer, accelerator, cfg,
                                  full_head=full)
            runners.append(runner)
        rows[name] = {"parameters": count, "layers": size.layers, "hidden": size.hidden, "vocab": len(tokenizer),
                      "tokenizer": family.tokenizer, "sparse_head": runners[-1 - int(args.full_head)].sparse,
                      "known_head": model.config.model_type in HEAD_MODULES or name == "deberta-v2"}
        log(f"{name}: {count / 1e6:.1f}M parameters, {size.layers} layers x {size.hidden}, {len(tokenizer):,} tokens")
    log(f"setup {time.perf_counter() - t0:.0f} s; {len(runners)} runners, precision {accelerator.mixed_precision}")
    rates = interleaved(runners, warmup=args.warmup, blocks=args.blocks, steps=args.steps)
    tokens_per_step = BATCH * CHUNK
    bert = statistics.median(rates["bert"]) if "bert" in rates else None
    for runner in runners:
        median = statistics.median(rates[runner.name])
        entry = rows[runner.name.split(" ")[0]]
        key = "full_head_" if runner.name.endswith("(full head)") else ""
        entry[f"{key}steps_per_second"] = median / tokens_per_step
        entry[f"{key}blocks"] = [round(r / tokens_per_step, 4) for r in rates[runner.name]]
        if bert and not key:
            entry["vs_bert"] = median / bert
    result = {"batch": BATCH, "chunk": CHUNK, "precision": accelerator.mixed_precision, "families": rows,
              "rounds": args.blocks, "steps": args.steps, "warmup": args.warmup, "machine": machine(),
              "seconds": round(time.perf_counter() - t0, 1)}
    emit(report(result), result, args.json)
    return 0


def report(result: dict) -> str:
    m = result["machine"]
    head = (f"batch {result['batch']} x {result['chunk']}, precision {result['precision']}, torch {m['torch']}, "
            f"{m['threads']} threads on {m['cpus']} CPUs (avx512_bf16 {m['avx512_bf16']}, amx_bf16 {m['amx_bf16']}), "
            f"load average at the end {m['load_average_at_end']}; medians of {result['rounds']} rounds of "
            f"{result['steps']} steps")
    full = any("full_head_steps_per_second" in r for r in result["families"].values())
    rows = []
    for name, r in result["families"].items():
        row = [name, r["tokenizer"], f"{r['parameters'] / 1e6:.1f}M", f"{r['layers']} x {r['hidden']}",
               "yes" if r["sparse_head"] else "no", f"{r['steps_per_second']:.3f}", f"{r.get('vs_bert', 1.0):.2f}x"]
        if full:
            row.append(f"{r['steps_per_second'] / r['full_head_steps_per_second']:.2f}x")
        rows.append(tuple(row))
    header = ("family", "tokenizer", "params", "layers x hidden", "sparse head", "steps/s", "vs bert")
    return head + "\n" + table(rows, header + (("sparse / full head",) if full else ()))


if __name__ == "__main__":
    sys.exit(main())
