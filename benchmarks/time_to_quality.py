"""Time to quality: what an adaptation run buys per second of compute, minilm on bbc-news.

  python benchmarks/time_to_quality.py --sweep-warm              # choose the warm start's constants
  python benchmarks/time_to_quality.py --budgets 150 360         # recipes x budgets (the table)

--sweep-warm: the eval perplexity right after the warm start (unigram bias, then the head pre-fit on
cached frozen features) for K batches x passes x learning rate, and the seconds it cost. The
constants in src/mlmtune/warmstart.py come from this table.

--budgets: for each recipe and budget, a full `mlmtune train --max-time B` run (the schedule follows
the budget), then eval perplexity and masked accuracy on the same fixed masks, and cloze top-1/top-5
on benchmarks/cloze_news.tsv: recipes are chosen on the first half of its sentences ("dev") and
reported on the second ("test"). Recipes: the seed's loop (`"seed's loop"`: benchmarks/_seed.py, fp32,
its step schedule sized to the budget from a timed step), a random head (mlmtune before the warm start),
the unigram bias alone, the pre-fit alone, both (the default). Prints a markdown table and writes
JSON lines to --out. Say which CPU it ran on: `lscpu | grep -o avx512_bf16`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

DEMO = dict(model="minilm", data=["bbc-news"], chunk_size=128, eval_size=300, batch_size=16, seed=42)


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def cpu_kind() -> str:
    try:
        flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    return "avx512_bf16" if "avx512_bf16" in flags else "no avx512_bf16"


def read_cloze(path: Path) -> list[tuple[str, set[str]]]:
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            sentence, answers = line.split("\t")
            items.append((sentence, {a.strip().lower() for a in answers.split("|")}))
    return items


def cloze_scores(model_dir: str, items) -> dict:
    from mlmtune.model.fill_mask import FillMask

    fm = FillMask(model_dir)
    preds = fm.predict([s for s, _ in items], top_k=5)
    top1 = [p[0][0].word.lower() in answers for p, (_, answers) in zip(preds, items)]
    top5 = [any(x.word.lower() in answers for x in p[0]) for p, (_, answers) in zip(preds, items)]
    return {"top1": float(np.mean(top1)), "top5": float(np.mean(top5)), "n": len(items)}


# --- the warm start's constants -------------------------------------------------------------------

def sweep_warm(args) -> None:
    from mlmtune.config import build_config
    from mlmtune.data.batching import eval_batches, make_batch
    from mlmtune.data.blocks import splits_from_config
    from mlmtune.data.masking import Masker, MaskingSpec
    from mlmtune.eval.metrics import evaluate_batches
    from mlmtune.model.device import make_accelerator
    from mlmtune.model.load import load_masked_lm, max_positions
    from mlmtune.model.objective import MaskedLMObjective, masked_positions_head
    from mlmtune.model.tokenizer import load_tokenizer
    from mlmtune.model.warmstart import cache_features, output_bias, unigram_log_frequency, warm_start_head

    cfg = build_config(DEMO, {"eval_size": args.eval_blocks})
    acc = make_accelerator(cfg)
    tok = load_tokenizer("minilm")
    splits = splits_from_config(cfg, tok, max_positions("minilm", tok))
    masker = Masker(tok, MaskingSpec(0.15, 0.8, 0.1, False))
    eval_set = eval_batches(splits.eval, masker, seed=42, batch_size=32, pad_id=tok.pad_token_id, rank=0, world=1)
    loaded = load_masked_lm("minilm", seed=42)
    model = loaded.model
    objective = MaskedLMObjective(model)
    head = masked_positions_head(model)
    fresh = {n: p.detach().clone() for n, p in model.named_parameters() if n in loaded.new_parameters}

    def ppl() -> float:
        with acc.autocast():
            return evaluate_batches(objective, eval_set, acc.device).perplexity

    def reset() -> None:
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in fresh:
                    p.copy_(fresh[n])

    rows = [{"recipe": "fresh head", "perplexity": ppl(), "seconds": 0.0}]
    t0 = time.perf_counter()
    bias = output_bias(model)
    with torch.no_grad():
        bias.copy_(unigram_log_frequency(splits.train.tokens, bias.shape[0], list(tok.all_special_ids)))
    rows.append({"recipe": "unigram bias", "perplexity": ppl(), "seconds": time.perf_counter() - t0})
    rng = np.random.default_rng(0)
    order = rng.permutation(len(splits.train))
    k_max = max(args.k)
    batches = [make_batch(splits.train, order[i * 16:(i + 1) * 16], masker, seed=42, stream=10**6,
                          pad_id=tok.pad_token_id) for i in range(k_max)]
    t0 = time.perf_counter()
    cache_features(model, batches, acc.device, acc.autocast)
    per_batch = (time.perf_counter() - t0) / k_max
    log(f"features: {per_batch:.3f} s per batch of 16 x 128")
    for k in args.k:
        for passes in args.passes:
            for lr in args.lrs:
                reset()
                t0 = time.perf_counter()
                report = warm_start_head(model, head, loaded.new_parameters, tokens=splits.train.tokens,
                                         special_ids=list(tok.all_special_ids), batches=batches[:k], device=acc.device,
                                         autocast=acc.autocast, seed=42, passes=passes, lr=lr)
                row = {"recipe": f"bias + pre-fit K={k} passes={passes} lr={lr:g}", "k": k, "passes": passes, "lr": lr,
                       "features": report.features, "seconds": time.perf_counter() - t0, "perplexity": ppl()}
                log(json.dumps(row))
                rows.append(row)
    print(f"CPU: {cpu_kind()}, precision {acc.mixed_precision}, eval blocks {args.eval_blocks}\n")
    print("| warm start | features | seconds | eval perplexity |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['recipe']} | {r.get('features', '')} | {r['seconds']:.1f} | {r['perplexity']:,.0f} |")


# --- recipes x budgets ----------------------------------------------------------------------------

RECIPES = {  # name -> config overrides on top of the demo's
    "random head": {"head_init": "random"}, "bias only": {"head_init": "warm"},
    "pre-fit only": {"head_init": "prefit"}, "warm (both)": {"head_init": "prefit"},
    "warm, no dropout": {"head_init": "prefit", "dropout": 0.0},
    "warm, no dropout, mask 0.3": {"head_init": "prefit", "dropout": 0.0, "mlm_probability": 0.3},
    "bias only, no dropout": {"head_init": "warm", "dropout": 0.0},
    "random head, no dropout": {"head_init": "random", "dropout": 0.0},
}


def run_recipe(name: str, budget: float, out: Path) -> dict:
    """One `mlmtune.train` run in a child process (a fresh process per run: no state carries over)."""
    extra = RECIPES[name]
    code = f"""
import json, sys
sys.path.insert(0, {str(HERE.parent / 'src')!r})
import mlmtune.model.warmstart as w
import torch
recipe = {name!r}
if recipe == "pre-fit only":
    w.unigram_log_frequency = lambda tokens, v, never: torch.zeros(v)
import mlmtune
from mlmtune.training.fit import fit
from mlmtune.config import build_config
extra = {extra!r}
cfg = build_config({DEMO!r}, dict(output_dir={str(out)!r}, overwrite=True, report=False, max_time="{budget}s",
                   lr=2e-4, head_lr=1e-3,
                   warmup_ratio=0.06, log_every=25, **extra))
print(json.dumps(fit(cfg)))
"""
    return fit_in_child(code, name)


def fit_in_child(code: str, what: str) -> dict:
    """Run `code` (which prints fit()'s results as its last line) in a fresh Python process: its
    results, with the process's wall time as process_seconds."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
    results = json.loads(done.stdout.strip().splitlines()[-1])
    results["process_seconds"] = time.perf_counter() - t0
    return results


SEED_RUN = """
import json, sys, time
sys.path.insert(0, {src!r}); sys.path.insert(0, {bench!r})
import numpy as np, torch
import _seed
from mlmtune.data.batching import epoch_order, eval_batches, process_batches
from mlmtune.data.blocks import splits_from_config
from mlmtune.config import build_config
from mlmtune.data.masking import Masker, MaskingSpec
from mlmtune.eval.metrics import evaluate_batches
from mlmtune.model.objective import MaskedLMObjective
from mlmtune.model.load import load_masked_lm, max_positions
from mlmtune.model.tokenizer import load_tokenizer
from mlmtune.run.files import save_model
budget, out = {budget!r}, {out!r}
cfg = build_config({demo!r})
tok = load_tokenizer("minilm")
splits = splits_from_config(cfg, tok, max_positions("minilm", tok))
eval_set = eval_batches(splits.eval, Masker(tok, MaskingSpec(0.15, 0.8, 0.1, False)), seed=42, batch_size=32,
                        pad_id=tok.pad_token_id, rank=0, world=1)
loaded = load_masked_lm("minilm", seed=42)
model = loaded.model
before = evaluate_batches(MaskedLMObjective(model), eval_set, torch.device("cpu")).perplexity
order = epoch_order(len(splits.train), seed=42, epoch=0, global_batch=16)
batches = process_batches(order, batch_size=16, rank=0, world=1)
dataset = _seed.seed_train_dataset(splits.train)
# the seed's schedule counts steps: size it to what the budget allows, from a first timed step
probe_acc, probe_model, probe_opt, probe_loader, probe_sched = _seed.seed_setup(
    load_masked_lm("minilm", seed=42).model, dataset, batches[:3], tok, lr=2e-4, head_lr=1e-3,
    new_parameters=loaded.new_parameters, total_steps=3)
it = iter(probe_loader); _seed.seed_step(probe_acc, probe_model, next(it), probe_opt, probe_sched)
t0 = time.perf_counter(); _seed.seed_step(probe_acc, probe_model, next(it), probe_opt, probe_sched)
total = max(1, int(budget / (time.perf_counter() - t0)))
from accelerate.state import AcceleratorState
AcceleratorState._reset_state()
acc, prepared, opt, loader, sched = _seed.seed_setup(model, dataset, batches[:total], tok, lr=2e-4, head_lr=1e-3,
                                                     new_parameters=loaded.new_parameters, total_steps=total,
                                                     warmup=max(1, int(0.06 * total)))
steps, start = 0, time.perf_counter()
for batch in loader:
    _seed.seed_step(acc, prepared, batch, opt, sched)
    steps += 1
    if time.perf_counter() - start >= budget:
        break
model = acc.unwrap_model(prepared)
result = evaluate_batches(MaskedLMObjective(model), eval_set, torch.device("cpu"))
save_model(model, tok, out)
print(json.dumps({{"steps": steps, "baseline_perplexity": before, "warm_start_perplexity": None,
                  "eval_perplexity": result.perplexity, "eval_accuracy": result.accuracy, "warm_start_seconds": 0.0,
                  "train_seconds": time.perf_counter() - start}}))
"""


def run_seed(budget: float, out: Path) -> dict:
    """The seed's loop (benchmarks/_seed.py: fp32, logits at every position, no clipping) for the budget,
    scored on mlmtune's fixed masks in fp32 (the seed trains in fp32)."""
    code = SEED_RUN.format(src=str(HERE.parent / "src"), bench=str(HERE), budget=budget, out=str(out), demo=DEMO)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the seed's loop failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def budgets(args) -> None:
    items = read_cloze(HERE / "cloze_news.tsv")
    half = len(items) // 2
    dev, test = items[:half], items[half:]
    rows = []
    for budget in args.budgets:
        for name in args.recipes:
            out = Path(args.work) / f"{name.replace(' ', '-')}-{budget}"
            log(f"== {name}, budget {budget} s")
            r = run_seed(budget, out) if name == "seed's loop" else run_recipe(name, budget, out)
            row = {"recipe": name, "budget": budget, "steps": r["steps"], "fresh": r["baseline_perplexity"],
                   "warm": r["warm_start_perplexity"], "perplexity": r["eval_perplexity"],
                   "accuracy": r["eval_accuracy"], "warm_seconds": r["warm_start_seconds"],
                   "train_seconds": r["train_seconds"], "cloze_dev": cloze_scores(str(out), dev),
                   "cloze_test": cloze_scores(str(out), test)}
            log(json.dumps(row))
            rows.append(row)
            with open(args.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
    print(f"CPU: {cpu_kind()}; cloze: {len(dev)} dev / {len(test)} test sentences of benchmarks/cloze_news.tsv\n")
    print("| budget | recipe | steps | perplexity at step 0 | eval perplexity | masked acc. | cloze top-5 dev | "
          "cloze top-5 test | top-1 test |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        start = r["warm"] if r["warm"] is not None else r["fresh"]
        print(f"| {r['budget']} s | {r['recipe']} | {r['steps']} | {start:,.0f} | {r['perplexity']:,.1f} | "
              f"{r['accuracy']:.1%} | {r['cloze_dev']['top5']:.2f} | {r['cloze_test']['top5']:.2f} | "
              f"{r['cloze_test']['top1']:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep-warm", action="store_true")
    p.add_argument("--eval-blocks", type=int, default=100)
    p.add_argument("--k", type=int, nargs="+", default=[24, 48, 96])
    p.add_argument("--passes", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    p.add_argument("--budgets", type=float, nargs="+", default=[150, 360])
    p.add_argument("--recipes", nargs="+", default=["random head", "bias only", "pre-fit only", "warm (both)"])
    p.add_argument("--work", default="/tmp/mlmtune-ttq")
    p.add_argument("--out", default="/tmp/mlmtune-ttq.jsonl")
    args = p.parse_args()
    torch.manual_seed(0)
    if args.sweep_warm:
        sweep_warm(args)
    else:
        budgets(args)


if __name__ == "__main__":
    main()
