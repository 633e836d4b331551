"""How long ``rankbench --help`` takes: the command line imports torch, polars and the models
only in the command that needs them.

    .venv/bin/python benchmarks/scripts/bench_cli_startup.py [--repeats 5]

Runs ``rankbench --help`` and ``rankbench bench --help`` in fresh processes and prints the
median wall time of each, beside that of ``python -c pass`` (the interpreter alone) and of
``python -c "import torch"`` for scale.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def median_seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "benchmarks.cli"]
    rows = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("rankbench --help", [*cli, "--help"]),
        ("rankbench bench --help", [*cli, "bench", "--help"]),
        ("python -c 'import torch'", [sys.executable, "-c", "import torch"]),
    ]
    print(f"median of {args.repeats} fresh processes")
    for name, command in rows:
        print(f"  {name:28s} {median_seconds(command, args.repeats):6.2f} s")


if __name__ == "__main__":
    main()
