"""Load test for `mlmtune serve`: a bounded, closed-loop load on loopback.

    python benchmarks/serve_load.py                           # minilm, no compare, 8 clients for 30 s
    python benchmarks/serve_load.py --model runs/demo --compare minilm --concurrency 4 --seconds 10 --json
    python benchmarks/serve_load.py --concurrency 1 --large-clients 2 --seconds 60   # small requests beside large ones

Starts `python -m mlmtune serve --port 0` (a free loopback port) in a subprocess, waits for
/health, warms up, then runs `--concurrency` clients, each sending its next POST /v1/fill-mask as
soon as the previous one answered, for `--seconds`. Prints requests/s, latency percentiles and
errors; exits 1 when any request failed (a non-200 answer or a transport error).
`--url http://host:port/` loads a server that is already running instead.

`--large-clients N` (issue 21): how long a small request waits while large ones run. Two phases of
`--seconds` each on the same server: the small clients alone, then the same small clients beside N
clients that each send LARGE requests back to back (16 texts of ~2,000 characters, one mask each, top_k
25: the 400 predictions a request may ask for). Prints the small requests' p50/p99 in both phases and
their ratio, and the large requests' latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import spawn, stop  # the tests start `mlmtune serve` the same way

TEXTS = [
    "The [MASK] is happy.",
    "The government announced a new [MASK] on Tuesday.",
    "Shares in the company [MASK] sharply after the report.",
    "She scored the winning [MASK] in the final minute.",
    "The prime [MASK] met European [MASK] in Brussels.",
    "Oil prices [MASK] after the cartel agreed to cut output, traders said on [MASK].",
    "The film won three [MASK] at the ceremony, including best [MASK] for its lead actress.",
    "Analysts expect the central bank to raise interest [MASK] again next month as inflation stays above its target.",
]


# The large request: as much as the server takes in one request (16 texts x 1 mask x top_k 25 = 400
# predictions), each text ~2,000 characters (~400 tokens), so both the forward passes and the decoding
# of the 400 sequences are at their heaviest.
LARGE_TEXT = ((TEXTS[7].replace("[MASK]", "rates") + " ") * 18)[:1980] + " [MASK]."
LARGE = {"inputs": [f"{i}: {LARGE_TEXT}" for i in range(16)], "parameters": {"top_k": 25}}


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def start_server(model: str, compare: str | None, log_path: Path, timeout: float = 300) -> tuple[subprocess.Popen, str]:
    with log_path.open("w") as log:
        try:
            return spawn(model, compare, stderr=log, timeout=timeout,
                         env={"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")})
        except RuntimeError:
            sys.exit(f"error: mlmtune serve did not start; its log ({log_path}):\n{log_path.read_text()[-2000:]}")


def wait_healthy(url: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.get(url + "health", timeout=5)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"error: {url}health did not answer within {timeout:.0f} s")
        time.sleep(0.2)


def latency_figures(latencies: list[float]) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    return {
        "p50": round(percentile(ms, 50), 1),
        "p90": round(percentile(ms, 90), 1),
        "p99": round(percentile(ms, 99), 1),
        "max": round(ms[-1], 1) if ms else float("nan"),
        "mean": round(sum(ms) / len(ms), 1) if ms else float("nan"),
    }


async def run_load(url: str, concurrency: int, seconds: float, top_k: int, warmup: int, large_clients: int = 0) -> dict:
    limits = httpx.Limits(max_connections=concurrency + large_clients,
                          max_keepalive_connections=concurrency + large_clients)
    latencies: list[float] = []
    large_latencies: list[float] = []
    errors: list[str] = []
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as client:
        for i in range(warmup):  # first forward passes are slower (allocations, kernels)
            await client.post("v1/fill-mask", json={"text": TEXTS[i % len(TEXTS)], "top_k": top_k})

        started = time.perf_counter()
        deadline = started + seconds

        async def worker(w: int) -> None:
            i = w
            while time.perf_counter() < deadline:
                text = TEXTS[i % len(TEXTS)]
                i += concurrency
                t0 = time.perf_counter()
                try:
                    r = await client.post("v1/fill-mask", json={"text": text, "top_k": top_k})
                    if r.status_code != 200:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                        continue
                    body = r.json()
                    if not body["models"] or not all(len(m["masks"]) == text.count("[MASK]") for m in body["models"]):
                        errors.append(f"malformed answer for {text!r}")
                        continue
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                latencies.append(time.perf_counter() - t0)

        async def large_worker() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    r = await client.post("v1/fill-mask", json=LARGE)
                    if r.status_code != 200 or len(r.json()) != len(LARGE["inputs"]):
                        errors.append(f"large request: {r.status_code}: {r.text[:200]}")
                        continue
                except (httpx.HTTPError, ValueError) as exc:
                    errors.append(f"large request: {type(exc).__name__}: {exc}")
                    continue
                large_latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker(w) for w in range(concurrency)), *(large_worker() for _ in range(large_clients)))
        elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies) + len(errors),
        "ok": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "elapsed_seconds": round(elapsed, 3),
        "requests_per_second": round(len(latencies) / elapsed, 2) if elapsed else 0.0,
        "latency_ms": latency_figures(latencies),
        **({"large_requests": len(large_latencies), "large_latency_ms": latency_figures(large_latencies)}
           if large_clients else {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm", help="tuned model served (default: minilm)")
    parser.add_argument("--compare", default=None, help="base model served beside it (default: none)")
    parser.add_argument("--concurrency", type=int, default=8, help="clients, each with one request in flight (default: 8)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to load the server (default: 30)")
    parser.add_argument("--top-k", type=int, default=5, help="top_k of every request (default: 5)")
    parser.add_argument("--warmup", type=int, default=8, help="untimed requests before the load (default: 8)")
    parser.add_argument("--large-clients", type=int, default=0, metavar="N",
                        help="measure the small requests alone, then beside N clients sending large requests (default: 0)")
    parser.add_argument("--url", help="load this running server instead of starting one")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.seconds <= 0 or not 1 <= args.top_k <= 50 or args.large_clients < 0:
        parser.error("--concurrency must be >= 1, --seconds > 0, --top-k in 1..50, --large-clients >= 0")

    proc = None
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"mlmtune-serve-load-{os.getpid()}.log"
    try:
        if args.url:
            url = args.url if args.url.endswith("/") else args.url + "/"
        else:
            print(f"starting mlmtune serve --model {args.model}" + (f" --compare {args.compare}" if args.compare else ""),
                  file=sys.stderr, flush=True)
            proc, url = start_server(args.model, args.compare, log_path)
        health = wait_healthy(url)
        print(f"loading {url} with {args.concurrency} clients for {args.seconds:g} s ...", file=sys.stderr, flush=True)
        figures = asyncio.run(run_load(url, args.concurrency, args.seconds, args.top_k, args.warmup))
        if args.large_clients:
            print(f"... and again beside {args.large_clients} clients sending large requests", file=sys.stderr, flush=True)
            alone = figures
            figures = asyncio.run(run_load(url, args.concurrency, args.seconds, args.top_k, 0, args.large_clients))
            figures["alone"] = {k: alone[k] for k in ("requests", "errors", "requests_per_second", "latency_ms")}
            figures["errors"] += alone["errors"]
            figures["error_samples"] = alone["error_samples"] + figures["error_samples"]
    finally:
        if proc is not None:
            stop(proc)
            log_path.unlink(missing_ok=True)

    result = {"url": url, "models": [(m["name"], m["role"]) for m in health["models"]],
              "concurrency": args.concurrency, "seconds": args.seconds, "top_k": args.top_k, **figures}
    if args.json:
        print(json.dumps(result))
    else:
        lat = figures["latency_ms"]
        models = " + ".join(f"{name} ({role})" for name, role in result["models"])
        print(f"models       {models}")
        print(f"load         {args.concurrency} concurrent clients for {figures['elapsed_seconds']:.1f} s, top_k {args.top_k}")
        print(f"requests     {figures['requests']:,} ({figures['ok']:,} ok)")
        print(f"throughput   {figures['requests_per_second']:,.1f} requests/s")
        print(f"latency      p50 {lat['p50']:,.1f} ms   p90 {lat['p90']:,.1f} ms   p99 {lat['p99']:,.1f} ms   "
              f"max {lat['max']:,.1f} ms")
        if args.large_clients:
            before, big = figures["alone"]["latency_ms"], figures["large_latency_ms"]
            print(f"small alone  p50 {before['p50']:,.1f} ms   p99 {before['p99']:,.1f} ms   "
                  f"({figures['alone']['requests']:,} requests)")
            print(f"beside large p50 {lat['p50']:,.1f} ms   p99 {lat['p99']:,.1f} ms   "
                  f"(x{lat['p50'] / before['p50']:.2f} and x{lat['p99'] / before['p99']:.2f})")
            print(f"large        {figures['large_requests']:,} requests by {args.large_clients} clients, "
                  f"p50 {big['p50']:,.1f} ms   max {big['max']:,.1f} ms")
        print(f"errors       {figures['errors']}")
    for sample in figures["error_samples"]:
        print(f"error sample: {sample}", file=sys.stderr)
    return 1 if figures["errors"] or not figures["ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
