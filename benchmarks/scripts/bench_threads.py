"""Fit time of XGBoost and DCN-V2 on an idle and on a busy machine, by thread setting.

    .venv/bin/python benchmarks/scripts/bench_threads.py [--preset ci] [--repeats 3]

"Busy" is another training job running beside the fits: a small MLP trained by torch with
its default threads, started before and stopped after. For each cell of ``--cells`` (an
OpenMP wait policy: passive, active, libgomp's own default or a libgomp spin count; and a
thread count: every available core, the default, or one), a fresh process prepares the
preset's data once and fits each model ``--repeats`` times with seed 0; the script prints
the median fit time per cell and the busy / idle ratio. All cells run in one invocation, so
the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("xgboost", "dcn_v2")

OTHER_JOB = """
import torch
net = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1))
opt = torch.optim.AdamW(net.parameters())
x, y = torch.randn(4096, 512), torch.randn(4096, 1)
while True:
    opt.zero_grad(); ((net(x) - y) ** 2).mean().backward(); opt.step()
"""

FITS = """
import json, sys, time
from datamodules.threads import apply_threads
from benchmarks.config import load_spec
from benchmarks.runner import prepare_datamodule
from models import create_ranker
preset, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
apply_threads(threads)
datamodule = prepare_datamodule(load_spec(overrides={"preset": preset}), False, lambda *_: 0)
times = {}
for model in sys.argv[4:]:
    for _ in range(repeats):
        ranker = create_ranker(model, {}, 0)
        ranker.progress = False
        start = time.perf_counter()
        ranker.fit(datamodule)
        times.setdefault(model, []).append(time.perf_counter() - start)
print(json.dumps(times))
"""


def fit_times(preset: str, threads: int, policy: str, repeats: int) -> dict[str, float]:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("GOMP_SPINCOUNT", None)
    if policy.startswith("spin"):  # libgomp spins this many times, then sleeps
        env["GOMP_SPINCOUNT"] = policy.removeprefix("spin")
    elif policy != "unset":
        env["OMP_WAIT_POLICY"] = policy.upper()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    out = subprocess.run(
        [sys.executable, "-c", FITS, preset, str(threads), str(repeats), *MODELS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    times = json.loads(out.strip().splitlines()[-1])
    return {model: statistics.median(values) for model, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="ci")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cells",
        default="active:0,passive:0,passive:1",
        help="wait policy:threads pairs (policy passive | active | unset | spinN, libgomp's "
        "spin count; threads 0 = every available core)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from datamodules.threads import available_cores

    cores = available_cores()
    cells = []
    for cell in args.cells.split(","):
        policy, threads = cell.split(":")
        cells.append((policy, int(threads) or cores))
    results = {}
    for load in ("idle", "busy"):
        job = None
        if load == "busy":
            job = subprocess.Popen([sys.executable, "-c", OTHER_JOB])
            time.sleep(3)
        try:
            for policy, threads in cells:
                results[load, policy, threads] = fit_times(
                    args.preset, threads, policy, args.repeats
                )
        finally:
            if job is not None:
                job.kill()
                job.wait()
    print(
        f"{args.preset} preset, seed 0, median of {args.repeats} fits; {cores} cores; "
        "busy = another torch training job running"
    )
    print("| wait policy | threads | model | idle s | busy s | busy / idle |")
    print("|---|---|---|---|---|---|")
    for policy, threads in cells:
        for model in MODELS:
            idle = results["idle", policy, threads][model]
            busy = results["busy", policy, threads][model]
            print(
                f"| {policy} | {threads} | {model} | {idle:.2f} | {busy:.2f} | {busy / idle:.1f}x |"
            )


if __name__ == "__main__":
    main()
