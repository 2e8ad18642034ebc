#!/usr/bin/env python
"""The table benchmarks/gpu.sh prints: one row per run it made, read from the run folders.

stdin: one line per run, `name|model|compile|processes|status|path` (path: an mlmtune output folder, or
the JSON of benchmarks/train_throughput.py for the seed rows). tokens/s: all processes together, the
median of metrics.jsonl's training windows after the first (compilation and warm-up fall in the first).
MFU: model FLOPs per token x tokens/s over the peak of every GPU used. Model FLOPs per token (training,
forward + backward = 3 x forward): 6 x (encoder parameters without the embeddings) + 6 x the head's
share at the masked positions (15%: hidden^2 + hidden x vocabulary) + 12 x layers x hidden x sequence
(attention scores and values). The peak: PEAK_TFLOPS (per GPU), else the dense bf16/fp16 figure of
the GPU's name below, else MFU is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

# dense bf16/fp16 tensor-core peaks, TFLOPS per GPU (vendor datasheets; fp16 for V100 and T4: no bf16)
PEAKS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "A10G": 125.0, "A10": 125.0, "L40S": 362.0, "L40": 181.0,
         "L4": 121.0, "V100": 125.0, "T4": 65.0, "RTX 4090": 165.0, "RTX 3090": 71.0}
SEQUENCE, MASKED = 128, 0.15


def gpu_peak() -> tuple[float | None, str]:
    if os.environ.get("PEAK_TFLOPS"):
        return float(os.environ["PEAK_TFLOPS"]), "PEAK_TFLOPS"
    try:
        import torch

        if not torch.cuda.is_available():
            return None, "no GPU"
        name = torch.cuda.get_device_name(0)
    except Exception:
        return None, "no GPU"
    for key, peak in PEAKS.items():  # in the order above: "A100" before "A10", "L40S" before "L4"
        if key in name:
            return peak, name
    return None, name


def flops_per_token(config: dict) -> float:
    h, layers = config["hidden_size"], config["num_hidden_layers"]
    inter, vocab = config.get("intermediate_size", 4 * h), config["vocab_size"]
    encoder = layers * (4 * h * h + 2 * h * inter)  # q, k, v, output; the two feed-forward matrices
    head = MASKED * (h * h + h * vocab)
    return 6 * (encoder + head) + 12 * layers * h * SEQUENCE


def model_config(run: Path) -> dict | None:
    for candidate in (run / "config.json", run / "model" / "config.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return None


def run_rate(run: Path) -> float | None:
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        return None
    rates = [r["tokens_per_second"] for r in map(json.loads, metrics.read_text().splitlines())
             if r.get("type") == "train" and r.get("tokens_per_second")]
    rates = rates[1:] or rates
    return statistics.median(rates) if rates else None


def rows(lines: list[str], peak: float | None) -> list[list[str]]:
    out, seed_configs = [], {}
    for line in lines:
        name, model, compile_, n, status, path = line.strip().split("|")
        n, path = int(n), Path(path)
        config = None
        if status != "ok":  # a reused WORK folder may hold an earlier run's figures: not this one's
            out.append([model, "seed loop" if name.startswith("seed-") else "mlmtune train", compile_, str(n), "-", "-",
                        status])
            continue
        if name.startswith("seed-"):
            try:
                result = json.loads(path.read_text())["throughput"]
                pairs = [("seed loop", result["seed"]["tokens_per_second"]),
                         ("mlmtune step", result["mlmtune"]["tokens_per_second"])]
            except (OSError, ValueError, KeyError):
                pairs = [("seed loop", None)]
            config = seed_configs.get(model)
        else:
            pairs = [("mlmtune train", run_rate(path))]
            config = model_config(path)
            if config:
                seed_configs.setdefault(model, config)
        for what, rate in pairs:
            mfu = (f"{100 * rate * flops_per_token(config) / (peak * 1e12 * n):.1f}%"
                   if rate and config and peak else "-")
            out.append([model, what, compile_, str(n), f"{rate:,.0f}" if rate else "-", mfu,
                        status if status != "ok" or rate else "no figure"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="", help="the work folder (named under the table)")
    args = ap.parse_args()
    peak, gpu = gpu_peak()
    table = rows([line for line in sys.stdin if line.strip()], peak)
    head = ["model", "loop", "compile", "GPUs", "tokens/s", "MFU", "status"]
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("-|-".join("-" * w for w in widths))
    for r in table:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(f"\nGPU: {gpu}; peak {peak if peak else '?'} TFLOPS per GPU; logs and runs in {args.work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
