"""Speed and memory of the search-log simulator.

    .venv/bin/python benchmarks/scripts/bench_simulator.py --preset large --out /tmp/simlarge
    .venv/bin/python benchmarks/scripts/bench_simulator.py --preset large --no-write

Generates a preset (optionally with ``--requests`` overriding its size), streams it to
parquet with ``write_log`` (or only generates it with ``--no-write``) and prints impressions,
seconds, impressions/s and peak RSS. Unless ``--no-compare``, it then runs the same preset at a
tenth of the requests in a fresh process, whose peak RSS shows that memory is bounded by the
chunk size, not by the number of requests. The target is >= 1M impressions/s.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from datamodules.simulator import preset, simulate_chunks, write_log  # noqa: E402

TARGET_IMPRESSIONS_PER_S = 1_000_000


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(args: argparse.Namespace) -> dict:
    overrides = {}
    if args.requests:
        overrides["n_requests"] = args.requests
    if args.chunk_requests:
        overrides["chunk_requests"] = args.chunk_requests
    config = preset(args.preset, **overrides)
    rss_before = psutil.Process().memory_info().rss / 2**20
    started = time.perf_counter()
    if args.no_write:
        _, chunks = simulate_chunks(config, progress=args.progress)
        rows = sum(chunk.impressions.height for chunk in chunks)
    else:
        rows = write_log(config, Path(args.out), progress=args.progress)["impressions"]
    seconds = time.perf_counter() - started
    return {
        "preset": args.preset,
        "requests": config.n_requests,
        "chunk_requests": config.chunk_requests,
        "mode": "generate only" if args.no_write else f"generate + write {args.out}",
        "impressions": rows,
        "seconds": seconds,
        "impressions_per_s": rows / seconds,
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
    }


def report(result: dict) -> str:
    return (
        f"{result['preset']} preset, {result['requests']:,} requests "
        f"(chunks of {result['chunk_requests']:,}), {result['mode']}\n"
        f"  impressions:   {result['impressions']:,}\n"
        f"  seconds:       {result['seconds']:.2f}\n"
        f"  impressions/s: {result['impressions_per_s']:,.0f}"
        f"  (target >= {TARGET_IMPRESSIONS_PER_S:,}: "
        f"{'met' if result['impressions_per_s'] >= TARGET_IMPRESSIONS_PER_S else 'NOT met'})\n"
        f"  peak RSS:      {result['peak_rss_mib']:,.0f} MiB "
        f"(RSS after imports {result['rss_before_mib']:,.0f} MiB)"
    )


def run_tenth(args: argparse.Namespace, requests: int) -> dict:
    """The same benchmark at a tenth of the requests, in a fresh process (fresh peak RSS)."""
    command = [
        sys.executable,
        __file__,
        "--preset",
        args.preset,
        "--requests",
        str(max(1, requests // 10)),
        "--no-compare",
        "--json",
    ]
    if args.chunk_requests:
        command += ["--chunk-requests", str(args.chunk_requests)]
    command += ["--no-write"] if args.no_write else ["--out", f"{args.out}-tenth"]
    finished = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="large")
    parser.add_argument("--requests", type=int, help="override the preset's n_requests")
    parser.add_argument("--chunk-requests", type=int, help="override the preset's chunk size")
    parser.add_argument("--out", default="/tmp/simlarge", help="output folder for write_log")
    parser.add_argument("--no-write", action="store_true", help="time generation only")
    parser.add_argument("--no-compare", action="store_true", help="skip the 1/10-size run")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    result = measure(args)
    if args.json:
        print(json.dumps(result))
        return
    print(report(result))
    if not args.no_compare and result["requests"] >= 10:
        tenth = run_tenth(args, result["requests"])
        print(report(tenth))
        print(
            f"peak RSS ratio (full / tenth): {result['peak_rss_mib'] / tenth['peak_rss_mib']:.2f}"
            f" for {result['requests'] / tenth['requests']:.0f}x the requests"
        )


if __name__ == "__main__":
    main()
