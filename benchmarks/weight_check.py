"""What the finite-weight check costs on every load (issue 21, item 4): model/load.first_non_finite on
minilm's weights, against loading them and against the obvious torch.isfinite(t).all() per tensor.

    /work/main/.venv/bin/python benchmarks/weight_check.py [--model minilm] [--repeat 5]

Prints the best of --repeat runs of each; the ratios matter (a loaded machine slows all alike).
"""

from __future__ import annotations

import argparse
import time

import torch

from mlmtune.model.load import first_non_finite, load_masked_lm


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    load = best(lambda: load_masked_lm(args.model), 2)
    model = load_masked_lm(args.model).model
    tensors = [*model.named_parameters(), *model.named_buffers()]
    check = best(lambda: first_non_finite(tensors), args.repeat)
    mask = best(lambda: [bool(torch.isfinite(t).all()) for _, t in tensors if t.is_floating_point()], args.repeat)
    size = sum(t.numel() for _, t in tensors if t.is_floating_point())
    print(f"{args.model}: {size / 1e6:.1f} M values, {torch.get_num_threads()} threads")
    print(f"  load_masked_lm (with the check)  {load:8.3f} s")
    print(f"  first_non_finite (sum per tensor) {check:8.4f} s  ({check / load:.1%} of the load)")
    print(f"  torch.isfinite(t).all() per tensor {mask:8.4f} s  ({mask / check:.1f}x the sum)")


if __name__ == "__main__":
    main()
