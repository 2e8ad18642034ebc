"""Memory of tokenizing one long document (issue 21): the same text as one line and as documents.

    python benchmarks/long_document.py                  # 20 MB: vocab counting and tokenizing, in windows
    python benchmarks/long_document.py --whole          # ... and the same whole (as before windows), for the ratio
    python benchmarks/long_document.py --mb 100 --check # 100 MB, and the one line's tokens against the whole's

The text is bbc-news (newlines made spaces) repeated to `--mb` megabytes. Each measurement runs in a
fresh process that loads the minilm tokenizer and builds the text, then counts the words as `mlmtune
vocab` does (model/vocabulary.count_words) or tokenizes as training does (data/blocks.tokenize): the
text as one line, or as its ~10,000 articles. Printed: the process's peak resident memory during the work and
its growth over the memory held before the work began (the text itself, the tokenizer, the libraries).
`--whole` also measures the one line tokenized whole (window_chars past its length), the behaviour
before windows; `--check` compares the one line's tokens and word indices, in windows and whole.
Memory is what this measures, not time: timings on a shared machine are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))  # this checkout's mlmtune, here and in the children
WHOLE = 10 ** 12  # a window longer than any text: the document tokenized whole


def documents(mb: float) -> list[str]:
    from mlmtune.data.sources import bbc_news_folder

    articles = [" ".join(p.read_text(encoding="latin-1").split()) for p in sorted(bbc_news_folder().rglob("*.txt"))]
    out, size = [], 0
    while size < mb * 1e6:
        for text in articles:
            out.append(text)
            size += len(text) + 1
            if size >= mb * 1e6:
                break
    return out


def reset_peak() -> None:
    """Start the peak (VmHWM) over from now, so it is the work's, not the text's building (Linux)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1e3


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def measure(what: str, layout: str, window: int, mb: float) -> dict:
    """In this process: the work, and its memory."""
    from mlmtune.model.tokenizer import load_tokenizer

    tokenizer = load_tokenizer("minilm")
    docs = documents(mb)
    texts = [" ".join(docs)] if layout == "one-line" else docs
    del docs
    before = rss_mb()
    reset_peak()
    if what == "vocab":
        from mlmtune.model.vocabulary import WordCutter, count_words

        counts = count_words(WordCutter(tokenizer, "mlmtune vocab"), texts, window_chars=window)
        result = {"words": sum(counts.values())}
    else:
        from mlmtune.data.blocks import tokenize

        blocks = tokenize(texts, tokenizer, progress=False, window_chars=window)
        result = {"tokens": blocks.num_tokens}
    peak = peak_mb()
    return {"what": what, "layout": layout, "window": "whole" if window == WHOLE else window,
            "chars": sum(map(len, texts)), **result, "peak_mb": round(peak), "growth_mb": round(peak - before)}


def check(mb: float) -> dict:
    """The one line's tokens and word indices, in windows and whole (a few GB for the whole)."""
    import numpy as np

    from mlmtune.data.blocks import tokenize
    from mlmtune.model.tokenizer import load_tokenizer

    tokenizer = load_tokenizer("minilm")
    line = [" ".join(documents(mb))]
    windowed = tokenize(line, tokenizer, progress=False)
    whole = tokenize(line, tokenizer, progress=False, window_chars=WHOLE)
    return {"check": "one line in windows == whole", "tokens": windowed.num_tokens,
            "same_tokens": bool(np.array_equal(windowed.tokens, whole.tokens)),
            "same_words": bool(np.array_equal(windowed.words, whole.words))}


def in_child(*argv: str) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, __file__, *argv], env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"error: {' '.join(argv)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20.0, help="megabytes of text (default: 20)")
    parser.add_argument("--whole", action="store_true", help="also the one line tokenized whole (before windows)")
    parser.add_argument("--check", action="store_true", help="also compare the one line's tokens in windows and whole")
    parser.add_argument("--only", nargs=3, metavar=("WHAT", "LAYOUT", "WINDOW"), help=argparse.SUPPRESS)
    parser.add_argument("--only-check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        what, layout, window = args.only
        print(json.dumps(measure(what, layout, int(window), args.mb)))
        return 0
    if args.only_check:
        print(json.dumps(check(args.mb)))
        return 0

    from mlmtune.data.windows import WINDOW_CHARS

    runs = [(what, layout, WINDOW_CHARS) for what in ("vocab", "tokenize") for layout in ("documents", "one-line")]
    if args.whole:
        runs += [(what, "one-line", WHOLE) for what in ("vocab", "tokenize")]
    for what, layout, window in runs:
        print(json.dumps(in_child("--mb", str(args.mb), "--only", what, layout, str(window))), flush=True)
    if args.check:
        result = in_child("--mb", str(args.mb), "--only-check")
        print(json.dumps(result), flush=True)
        if not (result["same_tokens"] and result["same_words"]):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
