"""Domain vocabulary (issue 14): what adding the words a tokenizer cuts buys, minilm, equal wall-clock time.

  python benchmarks/vocab.py                                   # bbc-news and pydocs, N = 0, 100, 500, 90 s each
  python benchmarks/vocab.py --corpora pydocs --counts 0 500 --budget 60
  python benchmarks/vocab.py --steps 40 --counts 0 500           # equal steps instead of equal time (load-proof)
  python benchmarks/vocab.py --steps 60 --counts 0 500 --resample 42 1 2 3 --table-only   # other masked words
  python benchmarks/vocab.py --table-only                      # the tables again, from --out and the run folders

For each corpus and N (`train --add-tokens N`, 0: none):
  1. pieces per word of the training text before and after (the cut words counted as one piece);
  2. one `mlmtune train --max-time BUDGET` run (time_to_quality.py's settings: lr 2e-4, head lr 1e-3,
     warm-up 6%, no dropout), in a child process: its training tokens/s, and words/s (tokens/s divided
     by the pieces per word: how much text a second of training reads);
  3. all runs of the corpus scored side by side by `mlmtune.compare`: the masked-word measure (the
     same whole words of the held-out documents masked for every vocabulary; bits per character,
     lower is better, and the share of words predicted exactly) and each run's perplexity on its own
     tokens (not comparable across N; shown for reference).

Corpora: bbc-news (news, the offline corpus), and `pydocs`: the docstrings of the Python standard
library this interpreter ships (one document per module with 200 words or more; tests excluded),
real technical text whose terms WordPiece cuts (tuple -> tu ##ple, kwargs, subclass, ...). It is
built into --work on the fly. Prints markdown tables, appends JSON lines to --out. The machine is
shared: compare ratios within one run. Say which CPU it ran on (the script prints
`lscpu | grep -o avx512_bf16`).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import sysconfig
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from time_to_quality import cpu_kind, fit_in_child, log  # noqa: E402

SETTINGS = dict(model="minilm", chunk_size=128, eval_size=200, batch_size=16, seed=42, lr=2e-4, head_lr=1e-3,
                warmup_ratio=0.06, dropout=0.0, log_every=25, report=False, overwrite=True, min_count=20)
SKIP = {"test", "tests", "idle_test", "site-packages", "lib2to3", "turtledemo"}


def build_pydocs(path: Path) -> Path:
    """The standard library's docstrings, one JSON line per module (200 words or more)."""
    if path.exists():
        return path
    root = Path(sysconfig.get_paths()["stdlib"])
    lines = []
    for p in sorted(root.rglob("*.py")):
        if SKIP & set(p.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(p.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        parts = [d for node in ast.walk(tree)
                 if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                 and (d := ast.get_docstring(node))]
        text = "\n\n".join(parts)
        if len(text.split()) >= 200:
            lines.append(json.dumps({"text": text}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pieces_per_word(data: str, counts: list[int]) -> dict[int, tuple[float, float, int]]:
    """N -> (pieces per word before, after, words added) on the training documents of `data`."""
    from mlmtune.data.sources import read_corpus
    from mlmtune.data.split import training_texts
    from mlmtune.model import vocabulary as vocab
    from mlmtune.model.tokenizer import load_tokenizer

    cutter = vocab.WordCutter(load_tokenizer("minilm"))
    docs = read_corpus([data])
    words = vocab.count_words(cutter, training_texts(docs, eval_fraction=0.1, seed=SETTINGS["seed"]))
    out = {}
    for n in counts:
        chosen = {c.word for c in vocab.cut_words(cutter, words, n, SETTINGS["min_count"])} if n else set()
        before = vocab.summarize(cutter, words, model="minilm", documents=0, top=0, min_count=1).pieces_per_word
        after = vocab.summarize(cutter, words, model="minilm", documents=0, top=0, min_count=1,
                                added=chosen).pieces_per_word
        out[n] = (before, after, len(chosen))
    return out


def run_arm(data: str, n: int, budget: float, out: Path, steps: int | None = None) -> dict:
    """One training run in a child process (no state carries over between arms): `budget` seconds,
    or `steps` optimizer steps (the same work for every arm, whatever the machine's load)."""
    extra = {"add_tokens": str(n)} if n else {}
    extra.update({"max_steps": steps} if steps else {"max_time": f"{budget}s"})
    code = f"""
import json, sys
sys.path.insert(0, {str(HERE.parent / 'src')!r})
from mlmtune.training.fit import fit
from mlmtune.config import build_config
cfg = build_config({SETTINGS!r}, dict(data=[{data!r}], output_dir={str(out)!r}, **{extra!r}))
print(json.dumps(fit(cfg)))
"""
    return fit_in_child(code, f"{data} N={n}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpora", nargs="+", default=["bbc-news", "pydocs"])
    p.add_argument("--counts", type=int, nargs="+", default=[0, 100, 500])
    p.add_argument("--budget", type=float, default=90)
    p.add_argument("--work", default="/tmp/mlmtune-vocab")
    p.add_argument("--out", default="/tmp/mlmtune-vocab.jsonl")
    p.add_argument("--steps", type=int, help="optimizer steps per run instead of --budget seconds")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--resample", type=int, nargs="+", metavar="SEED",
                   help="score the first and last run of each corpus again on the masked words drawn with these seeds")
    args = p.parse_args()
    work = Path(args.work)
    rows = []
    if args.table_only:
        rows = [json.loads(line) for line in Path(args.out).read_text().splitlines() if line.strip()]
        args.corpora = list(dict.fromkeys(r["corpus"] for r in rows))
        args.counts = sorted({r["n"] for r in rows})
    for corpus in args.corpora if not args.table_only else []:
        data = str(build_pydocs(work / "pydocs.jsonl")) if corpus == "pydocs" else corpus
        ppw = pieces_per_word(data, args.counts)
        models = []
        for n in args.counts:
            out = work / f"{corpus}-{n}"
            log(f"== {corpus}, --add-tokens {n}, " + (f"{args.steps} steps" if args.steps else f"budget {args.budget:g} s"))
            r = run_arm(data, n, args.budget, out, args.steps)
            models.append(str(out))
            before, after, added = ppw[n]
            rows.append({"corpus": corpus, "n": n, "added": added, "ppw_before": before, "ppw_after": after,
                         "steps": r["steps"], "tokens_per_second": r["train_tokens_per_second"],
                         "words_per_second": r["train_tokens_per_second"] / after,
                         "train_seconds": r["train_seconds"], "own_perplexity": r["eval_perplexity"]})
            log(json.dumps(rows[-1]))
        from mlmtune.eval.compare import compare

        scored = compare(models, data, eval_size=SETTINGS["eval_size"], chunk_size=SETTINGS["chunk_size"],
                         seed=SETTINGS["seed"], say=log)
        for row, s in zip(rows[-len(models):], scored):
            row.update({"word_bits_per_char": s["word_bits_per_char"], "word_accuracy": s["word_accuracy"],
                        "masked_words": s["masked_words"]})
            with open(args.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
    print_tables(rows, args.counts)
    if args.resample:
        resample(args.corpora, args.counts, work, args.resample)


def resample(corpora: list[str], counts: list[int], work: Path, seeds: list[int]) -> None:
    """How much the masked-word figures move with the sample of words: the same two models, other windows."""
    import torch

    from mlmtune.data.sources import read_corpus
    from mlmtune.data.split import heldout_texts
    from mlmtune.eval import words as wordeval
    from mlmtune.model.device import resolve_precision
    from mlmtune.model.load import load_masked_lm
    from mlmtune.model.tokenizer import load_tokenizer

    print("\n| corpus | seed | words | bits/char first | last | ratio | exact first | last |\n|---|---|---|---|---|---|---|---|")
    for corpus in corpora:
        data = str(work / "pydocs.jsonl") if corpus == "pydocs" else corpus
        runs = [work / f"{corpus}-{counts[0]}", work / f"{corpus}-{counts[-1]}"]
        toks = [load_tokenizer(str(r)) for r in runs]
        models = [load_masked_lm(str(r)).model for r in runs]
        texts = heldout_texts(read_corpus([data]), eval_fraction=0.1, seed=SETTINGS["seed"])
        bf16 = resolve_precision("auto") == "bf16"
        for seed in seeds:
            sets = wordeval.prepare(texts, toks, seed=seed, max_length=512)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                a, b = (wordeval.score(m, s, "cpu") for m, s in zip(models, sets))
            print(f"| {corpus} | {seed} | {a.masked_words:,} | {a.bits_per_char:.4f} | {b.bits_per_char:.4f} | "
                  f"{b.bits_per_char / a.bits_per_char:.3f} | {a.word_accuracy:.1%} | {b.word_accuracy:.1%} |")


def print_tables(rows: list[dict], counts: list[int]) -> None:
    print(f"CPU: {cpu_kind()}; minilm; every run with the same budget (--budget seconds, warm start included, or "
          "--steps)\n")
    print("| corpus | --add-tokens | words added | pieces/word | steps | tokens/s | words/s (ratio to N=0) | "
          "masked-word bits/char (ratio) | masked words exact | perplexity, own tokens |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        base = next(b for b in rows if b["corpus"] == r["corpus"] and b["n"] == counts[0])
        print(f"| {r['corpus']} | {r['n']} | {r['added']} | {r['ppw_before']:.3f} -> {r['ppw_after']:.3f} | "
              f"{r['steps']} | {r['tokens_per_second']:,.0f} | {r['words_per_second']:,.0f} "
              f"({r['words_per_second'] / base['words_per_second']:.2f}) | {r['word_bits_per_char']:.4f} "
              f"({r['word_bits_per_char'] / base['word_bits_per_char']:.3f}) | {r['word_accuracy']:.1%} of "
              f"{r['masked_words']:,} | {r['own_perplexity']:,.1f} |")


if __name__ == "__main__":
    main()
