"""Accuracy, speed and memory of the position-bias estimators (``labeling/propensity.py``).

    .venv/bin/python benchmarks/scripts/bench_propensity.py
    .venv/bin/python benchmarks/scripts/bench_propensity.py --seeds 1 --skip-large

Accuracy: for position_bias 0.5, 1.0 and 2.0 on the ``default`` simulator preset (20k
requests x 10), the estimate of each estimator against the simulator's true examination
curve: the per-position table for seed 0 and the max relative error at positions 1-10, with
its mean and worst case over ``--seeds`` seeds. The intervention estimator reads the default
log (10% of requests randomized by ``rand_pair``); regression-EM reads the same preset with
``intervention_rate=0``. Targets: 10% with interventions, 20% without.

Two diagnostic sections follow (``--no-diagnostics`` skips them): the intervention estimator
under other randomization designs (how much randomization the 10% target takes), and
regression-EM given an oracle pair key that includes the true relevance (what is left of its
error once the personalization confounding of (query, product) pairs is removed).

Speed and memory: the ``large`` preset (1M requests x 20 = 20M impressions) is generated
chunk by chunk in memory, keeping only the columns the estimators read; then each estimator
is timed alone, with its peak RSS sampled every 5 ms. Targets: >= 2M impressions/s on 2 cores
(``--cores``, default 2, pins the process and polars' thread pool) and < 4 GiB peak memory.
"""

from __future__ import annotations

import argparse
import os
import sys


def _pin_cores(argv: list[str]) -> int | None:
    """Pin to the first N cores before numpy and polars start their thread pools."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--cores", type=int, default=2)
    cores = parser.parse_known_args(argv)[0].cores
    if cores and hasattr(os, "sched_setaffinity"):
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(available[:cores]))
        for name in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = str(min(cores, len(available)))
        return min(cores, len(available))
    return None


PINNED = _pin_cores(sys.argv[1:])

import gc  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import psutil  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from datamodules.simulator import preset, simulate, simulate_chunks  # noqa: E402
from labeling.propensity import estimate_propensities  # noqa: E402

BIASES = (0.5, 1.0, 2.0)
TOP = 10  # positions scored
TARGETS = {"intervention": 0.10, "regression_em": 0.20}
THROUGHPUT_TARGET = 2_000_000
MEMORY_TARGET_GIB = 4.0
COLUMNS = ("query", "product_id", "position", "click", "randomized", "ranker_position")


def errors(estimate, truth: np.ndarray) -> np.ndarray:
    p = estimate.curve["propensity"].to_numpy()[:TOP]
    return np.abs(p / truth[:TOP] - 1)


def run(method: str, eta: float, seed: int, **overrides):
    """(estimate, truth, seconds) for one simulated default-preset log."""
    rate = {"intervention_rate": 0.0} if method == "regression_em" else {}
    config = preset("default", position_bias=eta, seed=seed, **{**rate, **overrides})
    log = simulate(config)
    truth = log.truth.examination["examination"].to_numpy()
    started = time.perf_counter()
    estimate = estimate_propensities(log.impressions, method=method)
    return estimate, truth, time.perf_counter() - started


def accuracy(seeds: int) -> None:
    print("== accuracy on the default preset (20,000 requests x 10) ==")
    summary = []
    for eta in BIASES:
        first, spread = {}, {}
        for method in TARGETS:
            worst = []
            for seed in range(seeds):
                estimate, truth, _ = run(method, eta, seed)
                worst.append(errors(estimate, truth).max())
                if seed == 0:
                    first[method] = (estimate, truth)
            spread[method] = worst
        truth = first["intervention"][1]
        print(f"\nposition_bias {eta}: seed 0, propensity (relative error)")
        print(f"{'position':>8} {'truth':>7} {'intervention':>26} {'regression_em':>26}")
        for k in range(TOP):
            cells = []
            for method in TARGETS:
                estimate, t = first[method]
                p = estimate.curve["propensity"][k]
                evidence = estimate.curve["evidence"][k]
                cells.append(
                    "null" if p is None else f"{p:.3f} ({p / t[k] - 1:+6.1%}) n={evidence}"
                )
            print(f"{k + 1:>8} {truth[k]:7.3f} {cells[0]:>26} {cells[1]:>26}")
        for method, target in TARGETS.items():
            worst = np.array(spread[method])
            verdict = "met" if worst[0] <= target else "MISSED"
            summary.append((method, eta, worst[0], worst.mean(), worst.max(), target, verdict))
            print(
                f"  {method:>13}: max |rel err| 1-{TOP}: seed 0 {worst[0]:.1%} "
                f"(target {target:.0%}: {verdict}); over {seeds} seed(s) mean {worst.mean():.1%}, "
                f"worst {worst.max():.1%}"
            )
    print("\nsummary: max relative error at positions 1-10")
    print(f"{'estimator':>13} {'bias':>5} {'seed 0':>8} {'mean':>8} {'worst':>8} {'target':>7}")
    for method, eta, zero, mean, worst, target, verdict in summary:
        print(
            f"{method:>13} {eta:5.1f} {zero:8.1%} {mean:8.1%} {worst:8.1%} {target:7.0%}  {verdict}"
        )


def diagnostics(seeds: int) -> None:
    print("\n== diagnostics ==")
    print(
        "intervention estimator under other randomization designs, max |rel err| 1-10 "
        f"(mean over {seeds} seed(s))"
    )
    designs = [
        ("rand_pair", 0.1),
        ("rand_pair", 0.5),
        ("rand_pair", 1.0),
        ("rand_top", 0.1),
        ("rand_top", 0.5),
    ]
    print(f"{'design':>16} " + " ".join(f"{f'bias {eta}':>9}" for eta in BIASES))
    for kind, rate in designs:
        cells = []
        for eta in BIASES:
            worst = [
                errors(
                    *run("intervention", eta, s, intervention=kind, intervention_rate=rate)[:2]
                ).max()
                for s in range(seeds)
            ]
            cells.append(f"{np.mean(worst):9.1%}")
        print(f"{f'{kind} {rate:.0%}':>16} " + " ".join(cells))

    print(
        "\nregression-EM (no interventions) by pair key, max |rel err| 1-10 "
        f"(mean over {seeds} seed(s)); the oracle key is a diagnostic only"
    )
    keys = {
        "query, product": ("query", "product_id"),
        "+ true relevance": ("query", "product_id", "true_relevance"),
    }
    print(f"{'pair key':>18} " + " ".join(f"{f'bias {eta}':>9}" for eta in BIASES))
    for name, key in keys.items():
        cells = []
        for eta in BIASES:
            worst = []
            for seed in range(seeds):
                log = simulate(preset("default", position_bias=eta, seed=seed, intervention_rate=0))
                rows = log.impressions.join(log.truth.relevance, on=["request_id", "product_id"])
                truth = log.truth.examination["examination"].to_numpy()
                estimate = estimate_propensities(rows, method="regression_em", pair_columns=key)
                worst.append(errors(estimate, truth).max())
            cells.append(f"{np.mean(worst):9.1%}")
        print(f"{name:>18} " + " ".join(cells))


class PeakRSS:
    """The largest resident set size seen while the block runs (sampled every 5 ms)."""

    def __init__(self):
        self.process = psutil.Process()
        self.before = self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        gc.collect()
        self.before = self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def large() -> None:
    print(f"\n== speed and memory on the large preset (cores: {PINNED or os.cpu_count()}) ==")
    started = time.perf_counter()
    catalog, chunks = simulate_chunks(preset("large"))
    impressions = pl.concat([chunk.impressions.select(COLUMNS) for chunk in chunks]).rechunk()
    truth = catalog.examination["examination"].to_numpy()
    gc.collect()
    print(
        f"generated {impressions.height:,} impressions in {time.perf_counter() - started:.1f} s "
        f"({impressions.estimated_size() / 2**30:.2f} GiB in memory: {', '.join(COLUMNS)})"
    )
    for method in ("auto", "intervention", "regression_em"):
        with PeakRSS() as memory:
            began = time.perf_counter()
            estimate = estimate_propensities(impressions, method=method)
            seconds = time.perf_counter() - began
        rate = impressions.height / seconds
        peak_gib = memory.peak / 2**30
        error = errors(estimate, truth)
        fast = "met" if rate >= THROUGHPUT_TARGET else "MISSED"
        print(
            f"{method:>13} -> {estimate.method}: {seconds:6.2f} s, {rate:12,.0f} impressions/s "
            f"(target >= {THROUGHPUT_TARGET:,}: {fast}); "
            f"peak RSS {peak_gib:.2f} GiB (+{(memory.peak - memory.before) / 2**30:.2f} GiB over "
            f"the log; target < {MEMORY_TARGET_GIB:g} GiB: "
            f"{'met' if peak_gib < MEMORY_TARGET_GIB else 'MISSED'}); "
            f"max |rel err| 1-{TOP} {error.max():.1%}"
        )
        for note in estimate.notes:
            print(f"{'':>17}{note}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per accuracy cell")
    parser.add_argument("--cores", type=int, default=2, help="pin to this many cores (0: all)")
    parser.add_argument("--skip-large", action="store_true", help="skip speed and memory")
    parser.add_argument("--no-diagnostics", action="store_true", help="skip the diagnostics")
    args = parser.parse_args(argv)
    accuracy(args.seeds)
    if not args.no_diagnostics:
        diagnostics(args.seeds)
    if not args.skip_large:
        large()


if __name__ == "__main__":
    main()
