"""Time to quality: what an adaptation run buys per second of compute, minilm on bbc-news.

Issue 22 ("twice the model per CPU minute"): every figure of benchmarks/README.md's "Time to quality"
section comes from one command of this script. Say which CPU it ran on (`lscpu | grep -o avx512_bf16`;
the script prints it). Every run is a full `mlmtune train` (fit()) in a fresh child process, scored on the
demo's 300 fixed-mask evaluation blocks (5,685 masked tokens) and on the 60 cloze sentences of
benchmarks/cloze_news.tsv (top-1/top-5; the first 30 "dev", the last 30 "test").

Arms are named recipes: `baseline` is `make demo` as it was before issue 22 (the code *and* the
examples/demo.yaml of commit BASE_COMMIT, extracted with `git archive`), `demo` is this tree's code with
this tree's examples/demo.yaml, and the other arms are `demo` with a few options changed (ARMS).

  --steps 120 240 --arms baseline demo     equal optimizer steps (--max-steps N, a step schedule): quality
                                           per step, which a loaded machine cannot distort
  --step-cost --arms baseline demo ...     CPU seconds per step, one thread, the arms rotating per block,
                                           and FLOPs per step (torch's FlopCounterMode): cost ratios
  --budgets 270 540 --arms baseline demo   timed runs (--max-time): only on a quiet machine
  --curve                                  the demo's recipe at 4.5, 9, 18 and 36 min (--budgets 270 540 1080 2160)
  --sweep-warm                             issue 12: the warm start's constants
  --protocol                               issue 22's timed runs in one command (PROTOCOL, ~3 h on 2 cores):
                                           baseline at 270 s and 540 s twice, each lever at 270 s twice, the
                                           demo's curve to 36 min, baseline and demo at 270/540 s in bf16 (auto)

An arm can change options on the command line: "demo+freeze_layers=4,freeze_until=0.625". Timed modes
refuse to start while the load average is above --max-load (1.5).

--precision fp32 (the default) is what a CPU without AVX512-BF16 runs; on a CPU with it, fp32 emulates
such a CPU's arithmetic (not its speed: the ratios between arms carry over better than the seconds).
--repeat R runs each arm R times. Rows are appended as JSON lines to --out; --table-only prints the
table of --out again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

BASE_COMMIT = "0db7845"  # the branch point of issue 22: `make demo` as it was
DEMO = dict(model="minilm", data=["bbc-news"], chunk_size=128, eval_size=300, batch_size=16, seed=42)

# name -> (options on top of the arm's base recipe, base: "demo" = this tree's examples/demo.yaml,
# "issue12" = the issue-12 recipe the old --budgets rows used)
ISSUE12 = dict(lr=2e-4, head_lr=1e-3, warmup_ratio=0.06, log_every=25)
ARMS: dict[str, tuple[dict, str]] = {
    "demo": ({}, "demo"),
    # issue 22: the lower 4 of minilm's 6 layers frozen for the first half (--freeze-layers, off by default)
    "freeze 4, half": ({"freeze_layers": 4, "freeze_until": 0.5}, "demo"),
    # issue 12's recipes (benchmarks/README.md, "Recipes at equal wall-clock time")
    "random head": ({"head_init": "random"}, "issue12"),
    "bias only": ({"head_init": "warm"}, "issue12"),
    "warm (both)": ({"head_init": "prefit"}, "issue12"),
    "warm, no dropout": ({"head_init": "prefit", "dropout": 0.0}, "issue12"),
    "warm, no dropout, mask 0.3": ({"head_init": "prefit", "dropout": 0.0, "mlm_probability": 0.3}, "issue12"),
    "bias only, no dropout": ({"head_init": "warm", "dropout": 0.0}, "issue12"),
}


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def cpu_kind() -> str:
    try:
        flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    return "avx512_bf16" if "avx512_bf16" in flags else "avx2 only" if "avx2" in flags else "no avx2"


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


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


# --- the arms ---------------------------------------------------------------------------------------

def base_tree(work: Path) -> Path:
    """src/ and examples/demo.yaml of BASE_COMMIT, extracted once under `work`."""
    where = work / f"base-{BASE_COMMIT}"
    if not (where / "src" / "mlmtune").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASE_COMMIT, "src", "examples/demo.yaml"],
                                 capture_output=True, check=True).stdout
        with tempfile.NamedTemporaryFile(suffix=".tar") as fh:
            fh.write(archive)
            fh.flush()
            with tarfile.open(fh.name) as tar:
                tar.extractall(where, filter="data")
    return where


def demo_recipe(path: Path) -> dict:
    """The options of a demo.yaml, less its output folder and the budget (each run sets its own)."""
    recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {k: v for k, v in recipe.items() if k not in ("output_dir", "max_time")}


def arm_setup(name: str, work: Path) -> tuple[Path, dict]:
    """(the src folder the arm runs, its config options)."""
    if name == "baseline":
        tree = base_tree(work)
        return tree / "src", demo_recipe(tree / "examples" / "demo.yaml")
    name, _, tweaks = name.partition("+")  # "demo+freeze_layers=4,freeze_until=0.6": an arm with options changed
    if name not in ARMS:
        raise SystemExit(f"unknown arm {name!r}: one of baseline, {', '.join(ARMS)} (+key=value,...)")
    extra, base = ARMS[name]
    extra = {**extra, **{k.strip(): yaml.safe_load(v) for k, v in (t.split("=", 1) for t in tweaks.split(",") if t)}}
    recipe = demo_recipe(ROOT / "examples" / "demo.yaml") if base == "demo" else {**DEMO, **ISSUE12}
    return ROOT / "src", {**recipe, **extra}


CHILD = """
import json, sys
sys.path.insert(0, {src!r})
from mlmtune.training.fit import fit
from mlmtune.config import build_config
print(json.dumps(fit(build_config({options!r}))))
"""


def run_arm(name: str, out: Path, work: Path, *, precision: str, steps: int | None = None,
            budget: float | None = None) -> dict:
    """One full training run of the arm in a fresh process (no state carries over), with --max-steps
    `steps` or --max-time `budget`; fit()'s results with the process's wall time and the load."""
    src, options = arm_setup(name, work)
    options = {**options, "output_dir": str(out), "overwrite": True, "report": False, "precision": precision}
    if steps is not None:
        options.update(max_steps=steps, max_time=None)
    else:
        options.update(max_time=f"{budget:g}s", max_steps=None)
    load_before, t0 = load_average(), time.perf_counter()
    child_log = out.parent / f"{out.name}.log"  # the run's own output, to follow it while it runs
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(child_log, "w", encoding="utf-8") as err:
        done = subprocess.run([sys.executable, "-c", CHILD.format(src=str(src), options=options)],
                              stdout=subprocess.PIPE, stderr=err, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed: see {child_log}")
    results = json.loads(done.stdout.strip().splitlines()[-1])
    results.update(process_seconds=time.perf_counter() - t0, load_before=load_before, load_after=load_average(),
                   options=options)
    return results


def score_runs(args, plan: list[dict]) -> None:
    """Train and score each (arm, steps or budget, repeat) of `plan`, appending rows to --out."""
    items = read_cloze(HERE / "cloze_news.tsv")
    half = len(items) // 2
    work = Path(args.work)
    for spec in plan:
        what = f"{spec['steps']} steps" if spec.get("steps") else f"{spec['budget']:g} s"
        precision = spec.get("precision", args.precision)
        log(f"== {spec['arm']}, {what}, {precision}, run {spec['repeat']} (load {load_average()})")
        slug = "".join(c if c.isalnum() or c in "-._" else "-" for c in spec["arm"])
        out = work / f"{slug}-{precision}-{spec.get('steps') or spec['budget']}-{spec['repeat']}"
        r = run_arm(spec["arm"], out, work, precision=precision, steps=spec.get("steps"), budget=spec.get("budget"))
        row = {"arm": spec["arm"], "steps_asked": spec.get("steps"), "budget": spec.get("budget"),
               "repeat": spec["repeat"], "precision": precision, "cpu": cpu_kind(), "steps": r["steps"],
               "fresh": r["baseline_perplexity"], "warm": r["warm_start_perplexity"],
               "perplexity": r["eval_perplexity"], "accuracy": r["eval_accuracy"],
               "warm_seconds": r["warm_start_seconds"], "train_seconds": r["train_seconds"],
               "eval_seconds": r.get("eval_seconds"), "wall_seconds": r.get("wall_seconds"),
               "process_seconds": round(r["process_seconds"], 1), "load_before": r["load_before"],
               "load_after": r["load_after"], "cloze_all": cloze_scores(str(out), items),
               "cloze_dev": cloze_scores(str(out), items[:half]), "cloze_test": cloze_scores(str(out), items[half:]),
               "options": r["options"]}
        log(json.dumps({k: v for k, v in row.items() if k != "options"}))
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
    print_table(args.out)


def print_table(path: str) -> None:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    print(f"CPU: {cpu_kind()} (this machine; each row says where it ran); cloze: 60 sentences of "
          "benchmarks/cloze_news.tsv\n")
    print("| arm | precision, CPU | steps or budget | steps | start ppl | eval ppl | masked acc. | cloze top-1 | "
          "top-5 (dev / test) | train s | wall s | load |\n|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|")
    for r in rows:
        start = r["warm"] if r["warm"] is not None else r["fresh"]
        asked = f"{r['steps_asked']} steps" if r.get("steps_asked") else f"{r['budget']:g} s"
        print(f"| {r['arm']} | {r['precision']}, {r['cpu']} | {asked} | {r['steps']} | "
              f"{start:,.0f} | {r['perplexity']:,.1f} | {r['accuracy']:.1%} | {r['cloze_all']['top1']:.2f} | "
              f"{r['cloze_all']['top5']:.2f} ({r['cloze_dev']['top5']:.2f} / {r['cloze_test']['top5']:.2f}) | "
              f"{r['train_seconds']:.0f} | {r['wall_seconds'] or 0:.0f} | {r['load_before']}-{r['load_after']} |")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["arm"], r["precision"], r["cpu"], r.get("steps_asked"), r.get("budget")), []).append(r)
    if any(len(g) > 1 for g in groups.values()):
        print("\nmeans over repeats\n\n| arm | precision, CPU | steps or budget | runs | steps | eval ppl | cloze top-5 |"
              "\n|---|---|---|---:|---:|---:|---:|")
        for (arm, precision, cpu, steps, budget), g in groups.items():
            asked = f"{steps} steps" if steps else f"{budget:g} s"
            print(f"| {arm} | {precision}, {cpu} | {asked} | {len(g)} | {statistics.mean(r['steps'] for r in g):.0f} | "
                  f"{statistics.mean(r['perplexity'] for r in g):,.1f} | "
                  f"{statistics.mean(r['cloze_all']['top5'] for r in g):.2f} |")


# --- step cost ----------------------------------------------------------------------------------------

COST_CHILD = """
import contextlib, json, os, sys, time
sys.path.insert(0, {src!r})
import torch
torch.set_num_threads({threads})
from torch.utils.flop_counter import FlopCounterMode
from mlmtune.config import build_config
from mlmtune.training import fit as fitmod
ready = {{}}
def stop_before_loop(accelerator, objective, optimizer, scheduler, batches, state, totals, cfg, **kw):
    ready.update(accelerator=accelerator, objective=objective, optimizer=optimizer, scheduler=scheduler,
                 batches=batches, state=state, totals=totals, cfg=cfg, before_step=kw.get("before_step"))
    raise KeyboardInterrupt
fitmod.train_loop = stop_before_loop
# no prefetch thread: fit()'s exit (the interrupt above) stops it, and the steps below draw from the batches
fitmod.Prefetch = lambda batches, **kw: contextlib.nullcontext(batches)
try:
    fitmod.fit(build_config({options!r}))
except KeyboardInterrupt:
    pass
from mlmtune.training.step import train_step
r = ready
r["objective"].train()
def step():
    if r["before_step"] is not None:  # --freeze-layers: the first share of a run, where the layers are frozen
        r["before_step"](0.0)
    micro = [next(r["batches"]) for _ in range(r["cfg"].gradient_accumulation_steps)]
    train_step(r["accelerator"], r["objective"], r["optimizer"], r["scheduler"], micro, r["state"],
               max_grad_norm=r["cfg"].max_grad_norm)
for _ in range({warmup}):
    step()
with FlopCounterMode(display=False) as fc:
    step()
print(json.dumps({{"flops": fc.get_total_flops()}}), flush=True)
for line in sys.stdin:  # one line per block: run it, answer its CPU seconds per step
    n = int(line)
    t0 = time.process_time()
    for _ in range(n):
        step()
    print(json.dumps({{"cpu_seconds_per_step": (time.process_time() - t0) / n}}), flush=True)
"""


def answer(proc, key: str):
    """The next line of the child's stdout that is a JSON object holding `key` (fit() prints its own lines)."""
    for line in proc.stdout:
        if line.startswith("{") and key in (record := json.loads(line)):
            return record[key]
    raise SystemExit(f"an arm's process ended early (exit code {proc.wait()})")


def step_cost(args) -> None:
    """Each arm in its own process, set up by fit() itself up to the loop (its phases 1-5, so what fit()
    changes is in place), then --blocks blocks of --block-steps steps per arm, the arms rotating from
    block to block; one thread, so a block's CPU seconds are its work, not the machine's other users."""
    work = Path(args.work)
    procs = {}
    for name in args.arms:
        src, options = arm_setup(name, work)
        options = {**options, "output_dir": str(work / f"cost-{name.replace(' ', '-')}"), "overwrite": True,
                   "report": False, "precision": args.precision, "max_steps": 10**6, "max_time": None}
        code = COST_CHILD.format(src=str(src), options=options, threads=args.threads, warmup=args.warmup)
        procs[name] = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True, bufsize=1)
    flops = {}
    for name, p in procs.items():
        flops[name] = answer(p, "flops")
        log(f"{name}: {flops[name] / 1e9:.1f} GFLOP per step")
    seconds: dict[str, list[float]] = {n: [] for n in procs}
    names = list(procs)
    for b in range(args.blocks):
        k = b % len(names)
        for name in names[k:] + names[:k]:  # one arm at a time: the others wait on stdin
            procs[name].stdin.write(f"{args.block_steps}\n")
            procs[name].stdin.flush()
            seconds[name].append(answer(procs[name], "cpu_seconds_per_step"))
        log(f"block {b + 1}/{args.blocks}: " + ", ".join(f"{n} {v[-1]:.2f}" for n, v in seconds.items()))
    for p in procs.values():
        p.stdin.close()
        p.wait()
    ref = names[0]
    row = {"mode": "step cost", "cpu": cpu_kind(), "precision": args.precision, "threads": args.threads,
           "load": load_average(), "arms": {}}
    print(f"\nCPU {cpu_kind()}, {args.precision}, {args.threads} thread(s), {args.blocks} blocks x {args.block_steps} "
          f"steps, load at the end {load_average()}\n")
    print(f"| arm | GFLOP per step | CPU s per step (median) | cost vs {ref} (median of per-block ratios) | per block |"
          "\n|---|---:|---:|---:|---|")
    for name in names:
        ratios = [a / r for a, r in zip(seconds[name], seconds[ref])]
        row["arms"][name] = {"gflop": flops[name] / 1e9, "cpu_seconds": seconds[name],
                             "ratio": statistics.median(ratios)}
        print(f"| {name} | {flops[name] / 1e9:.1f} | {statistics.median(seconds[name]):.2f} | "
              f"{statistics.median(ratios):.3f} | {' '.join(f'{x:.2f}' for x in ratios)} |")
    with open(args.out, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


# --- the warm start's constants (issue 12) ----------------------------------------------------------

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


# the timed protocol of issue 22 (only on a quiet machine): (arm, budget in s, repeats, precision)
PROTOCOL = [
    *[("baseline", b, 2, "fp32") for b in (270, 540)],  # today's demo at 1x and 2x the budget: the target
    *[(arm, 270, 2, "fp32") for arm in ("demo", "freeze 4, half")],  # each lever at the demo's budget
    *[("demo", b, 1, "fp32") for b in (1080, 2160)],  # the curve at 4.5, 9, 18, 36 min (with demo's 270/540)
    ("demo", 540, 1, "fp32"),
    *[(arm, b, 1, "auto") for arm in ("baseline", "demo") for b in (270, 540)],  # a bf16 CPU: no worse
]


def protocol_plan() -> list[dict]:
    return [{"arm": arm, "budget": budget, "repeat": r, "precision": precision}
            for arm, budget, repeats, precision in PROTOCOL for r in range(1, repeats + 1)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--steps", type=int, nargs="+", help="equal optimizer steps: --max-steps N per arm")
    mode.add_argument("--budgets", type=float, nargs="+", help="timed runs: --max-time S seconds per arm")
    mode.add_argument("--curve", action="store_true", help="the demo recipe at 270, 540, 1080 and 2160 s")
    mode.add_argument("--protocol", action="store_true", help="issue 22's timed runs, all of them (PROTOCOL: ~3 h)")
    mode.add_argument("--step-cost", action="store_true", help="CPU seconds and FLOPs per step of each arm")
    mode.add_argument("--sweep-warm", action="store_true", help="issue 12: the warm start's constants")
    mode.add_argument("--table-only", action="store_true", help="print the table of --out again")
    p.add_argument("--arms", nargs="+", default=["baseline", "demo"], help=f"baseline, {', '.join(ARMS)}")
    p.add_argument("--precision", default="fp32", choices=["fp32", "auto", "bf16"])
    p.add_argument("--repeat", type=int, default=1, help="runs of each arm (each a fresh process)")
    p.add_argument("--threads", type=int, default=1, help="--step-cost: torch threads per arm")
    p.add_argument("--blocks", type=int, default=6, help="--step-cost: timed blocks per arm")
    p.add_argument("--block-steps", type=int, default=2, help="--step-cost: steps per block")
    p.add_argument("--warmup", type=int, default=2, help="--step-cost: untimed steps of each arm first")
    p.add_argument("--eval-blocks", type=int, default=100, help="--sweep-warm")
    p.add_argument("--k", type=int, nargs="+", default=[24, 48, 96], help="--sweep-warm")
    p.add_argument("--passes", type=int, nargs="+", default=[2, 4, 8], help="--sweep-warm")
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2], help="--sweep-warm")
    p.add_argument("--max-load", type=float, default=1.5,
                   help="timed modes refuse to start above this 1-minute load average (a loaded machine's seconds "
                        "say nothing); 0: do not check")
    p.add_argument("--work", default="/tmp/mlmtune-ttq")
    p.add_argument("--out", default="/tmp/mlmtune-ttq.jsonl")
    args = p.parse_args()
    torch.manual_seed(0)
    if args.sweep_warm:
        sweep_warm(args)
    elif args.table_only:
        print_table(args.out)
    elif args.step_cost:
        step_cost(args)
    else:
        timed = not args.steps
        if timed and args.max_load and load_average() > args.max_load:
            raise SystemExit(f"load average {load_average()} > --max-load {args.max_load}: timed runs need a quiet "
                             "machine (or --max-load 0 to run anyway, and say so)")
        if args.protocol:
            plan = protocol_plan()
            for spec in plan:
                arm_setup(spec["arm"], Path(args.work))
            return score_runs(args, plan)
        sizes = [{"steps": n} for n in args.steps] if args.steps else \
            [{"budget": b} for b in ([270, 540, 1080, 2160] if args.curve else args.budgets)]
        arms = ["demo"] if args.curve else args.arms
        for name in arms:
            arm_setup(name, Path(args.work))  # an unknown arm fails before any run
        plan = [{"arm": a, "repeat": r, **s} for s in sizes for r in range(1, args.repeat + 1) for a in arms]
        score_runs(args, plan)


if __name__ == "__main__":
    main()
