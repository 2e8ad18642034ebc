#!/usr/bin/env python
"""Data preparation throughput: tokenize + concatenate-and-cut bbc-news into blocks of 128.

  seed     datasets.map(tokenize_function, batched=True) with the seed's word_ids, then
           datasets.map(group_texts, batched=True) with its `sum(lists, [])` (benchmarks/_seed.py)
  mlmtune  mlmtune.data.blocks.tokenize (batched datasets.map keeping input_ids and word ids as int32)
           + mlmtune.data.blocks.cut (numpy on the flat arrays)

Both read the same texts (read_corpus(['bbc-news']), outside the timing) with the same tokenizer
object in one process; the runs alternate (seed, mlmtune, mlmtune, seed, ...) and the report gives
medians. tokens/s = tokens produced by the tokenizer / seconds.

  python benchmarks/prepare_throughput.py --repeats 3 [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _seed  # noqa: E402

from mlmtune.data.blocks import cut, tokenize  # noqa: E402
from mlmtune.data.sources import read_corpus  # noqa: E402
from mlmtune.model.load import quiet_transformers  # noqa: E402
from mlmtune.model.tokenizer import load_tokenizer

CHUNK = 128


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def run_seed(texts, tokenizer):
    import datasets

    t0 = time.perf_counter()
    tokenized = datasets.Dataset.from_dict({"text": texts}).map(
        _seed.make_tokenize_function(tokenizer), batched=True, remove_columns=["text"])
    t1 = time.perf_counter()
    grouped = tokenized.map(_seed.make_group_texts(CHUNK), batched=True)
    t2 = time.perf_counter()
    return grouped, {"tokenize": t1 - t0, "group": t2 - t1, "total": t2 - t0}


def run_mlmtune(texts, tokenizer):
    t0 = time.perf_counter()
    docs = tokenize(texts, tokenizer)
    t1 = time.perf_counter()
    blocks = cut(docs, CHUNK)
    t2 = time.perf_counter()
    return (docs, blocks), {"tokenize": t1 - t0, "group": t2 - t1, "total": t2 - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs of each path (interleaved)")
    ap.add_argument("--docs", type=int, default=None, help="use only the first N documents")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON (the table goes to stderr)")
    args = ap.parse_args(argv)

    quiet_transformers()
    import datasets

    datasets.disable_progress_bars()
    tokenizer = load_tokenizer("minilm")
    texts = read_corpus(["bbc-news"]).train[: args.docs]
    # one untimed pass of each: imports, tokenizer warm-up, datasets' first-use costs
    _, _ = run_seed(texts[:50], tokenizer)
    _, _ = run_mlmtune(texts[:50], tokenizer)

    times = {"seed": [], "mlmtune": []}
    outputs = {}
    for i in range(args.repeats):
        order = ("seed", "mlmtune") if i % 2 == 0 else ("mlmtune", "seed")
        for name in order:
            out, t = (run_seed if name == "seed" else run_mlmtune)(texts, tokenizer)
            times[name].append(t)
            outputs[name] = out
        log(f"repeat {i + 1}/{args.repeats}: seed {times['seed'][-1]['total']:.2f}s "
            f"(tokenize {times['seed'][-1]['tokenize']:.2f}s, group_texts {times['seed'][-1]['group']:.2f}s), "
            f"mlmtune {times['mlmtune'][-1]['total']:.2f}s (tokenize {times['mlmtune'][-1]['tokenize']:.2f}s, "
            f"cut {times['mlmtune'][-1]['group']:.3f}s)")

    docs, blocks = outputs["mlmtune"]
    grouped = outputs["seed"]
    tokens = docs.num_tokens
    seed_first = np.asarray(grouped[0]["input_ids"])
    same_start = bool(np.array_equal(seed_first, blocks.tokens[:CHUNK]))
    med = lambda name, part: statistics.median(t[part] for t in times[name])
    ratios = [s["total"] / m["total"] for s, m in zip(times["seed"], times["mlmtune"])]
    result = {
        "documents": len(texts),
        "tokens": tokens,
        "chunk_size": CHUNK,
        "repeats": args.repeats,
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM"),
        "seed": {"seconds": med("seed", "total"), "tokenize_seconds": med("seed", "tokenize"),
                 "group_seconds": med("seed", "group"), "tokens_per_second": tokens / med("seed", "total"),
                 "blocks": len(grouped), "runs": [round(t["total"], 3) for t in times["seed"]]},
        "mlmtune": {"seconds": med("mlmtune", "total"), "tokenize_seconds": med("mlmtune", "tokenize"),
                    "cut_seconds": med("mlmtune", "group"), "tokens_per_second": tokens / med("mlmtune", "total"),
                    "blocks": len(blocks), "runs": [round(t["total"], 3) for t in times["mlmtune"]]},
        "speedup": statistics.median(ratios),
        "speedup_runs": [round(r, 2) for r in ratios],
        "first_block_identical": same_start,
    }

    s, m = result["seed"], result["mlmtune"]
    text = "\n".join([
        f"bbc-news: {len(texts):,} documents, {tokens:,} tokens, blocks of {CHUNK}; medians of {args.repeats} "
        f"interleaved runs",
        f"{'path':<8}  {'tokens/s':>10}  {'total s':>8}  {'tokenize s':>10}  {'group/cut s':>11}  {'blocks':>6}",
        f"{'seed':<8}  {s['tokens_per_second']:>10,.0f}  {s['seconds']:>8.2f}  {s['tokenize_seconds']:>10.2f}  "
        f"{s['group_seconds']:>11.3f}  {s['blocks']:>6,}",
        f"{'mlmtune':<8}  {m['tokens_per_second']:>10,.0f}  {m['seconds']:>8.2f}  {m['tokenize_seconds']:>10.2f}  "
        f"{m['cut_seconds']:>11.3f}  {m['blocks']:>6,}",
        f"mlmtune is {result['speedup']:.2f}x the seed's speed (per run: "
        f"{', '.join(f'{r:.2f}' for r in ratios)}); first block identical: {same_start}; the seed drops a "
        f"remainder per map batch of 1,000 documents, mlmtune only the final one",
    ])
    if args.json:
        log(text)
        print(json.dumps(result, indent=2))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
